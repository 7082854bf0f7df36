"""Every exception the pipeline raises on purpose, in one module that imports nothing.

Kept apart so that any module (and a program catching them) can import them without pulling in
a client library, and so that pool processes, which import next to nothing, could too.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of the exceptions below."""


# --- bad input: the caller can fix these -------------------------------------------------------


class ConfigError(PipelineError, ValueError):
    """A setting has a value the program cannot run with."""


class InvalidURL(PipelineError, ValueError):
    """A string that is not an absolute http(s) URL this pipeline can fetch."""


class InvalidSelector(PipelineError, ValueError):
    """A CSS selector selectolax cannot parse."""


class InvalidPattern(PipelineError, ValueError):
    """A scope pattern (`allow`, `deny`) that is not a valid regular expression."""


class CrawlNotFound(PipelineError, LookupError):
    """No crawl (or schedule) has that id (or name)."""


class InvalidTransition(PipelineError, ValueError):
    """The crawl (or schedule) is in a state the action does not apply to: pausing a finished
    crawl, resuming a running one, retrying one that has no failures..."""


class PageNotFound(PipelineError, LookupError):
    """No crawl has stored a page at that URL."""


class InvalidExport(PipelineError, ValueError):
    """An export that cannot be made as asked: an unknown format or column, Parquet to a stream,
    Parquet without pyarrow installed."""


class InvalidPayload(PipelineError, TypeError):
    """A job's arguments do not fit its function: the job fails, the worker carries on."""


# --- outcomes of a page ------------------------------------------------------------------------


class PermanentFailure(PipelineError):
    """A URL that no retry will fix (404, not HTML where HTML is needed, blocked address...)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class InvalidSitemap(PermanentFailure):
    """A sitemap that cannot be read: bad XML, not a sitemap, corrupt gzip, over the size cap."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid sitemap: {reason}")


class FetchError(PipelineError):
    """A fetch that produced no usable response.

    `retryable` is true for faults that may pass (connection errors, timeouts, 429, 5xx);
    `retry_after` carries the server's `Retry-After` in seconds when it sent one.
    """

    def __init__(
        self, reason: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class DisallowedByRobots(PipelineError):
    """robots.txt disallows the URL (or a redirect hop of it) for our user agent: never requested."""

    def __init__(self, url: str) -> None:
        super().__init__(f"disallowed by robots.txt: {url}")
        self.url = url


class HostBusy(PipelineError):
    """The host is at its limit (permits, start spacing, a pause, an unread robots.txt) for a while.

    Raised only before a job has sent anything, so the job can give its slot back and run again
    in `delay` seconds instead of waiting in it.
    """

    def __init__(self, delay: float, reason: str) -> None:
        super().__init__(f"{reason}; again in {delay:.2f}s")
        self.delay = delay
        self.reason = reason


class BlockedAddress(PipelineError, OSError):
    """The destination resolves to an address the configuration does not allow (the SSRF guard).

    An `OSError` because aiohttp's connector expects its resolver to fail with one.
    """


class RetryLater(PipelineError):
    """The job should run again after `delay` seconds (the worker turns this into arq's retry)."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"retry in {delay:.2f}s")
        self.delay = delay


class Deferred(RetryLater):
    """The job should run again after `delay` seconds without counting it as a try: it sent nothing."""


# --- our own infrastructure --------------------------------------------------------------------


class CpuTimeout(PipelineError):
    """A CPU task ran past its timeout; its process was killed."""


class CpuPoolBroken(PipelineError):
    """A pool process died under the task; the pool was rebuilt and the task may be retried."""


class CpuFunctionError(PipelineError):
    """A CPU function raised on a CPU worker (its message says what); not the pool's fault."""


class BlobStoreError(PipelineError):
    """S3 refused or failed a write; transient as far as the job is concerned (it is retried)."""


class ExportFailed(PipelineError):
    """An export could not be written or a body could not be read; nothing was left at the
    destination that could pass for a whole export."""


class BlobNotFound(PipelineError, LookupError):
    """No body is stored under the key: deleted, or written to another store. Not transient."""


class ServiceError(PipelineError, RuntimeError):
    """A local service could not be found, started, reused or stopped."""
