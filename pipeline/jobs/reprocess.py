"""`reprocess_list` and `reprocess_page`: a replay of a crawl's stored pages, no request to the site.

A replay (`pipeline reprocess CRAWL_ID`, `Pipeline.reprocess`; started in
`pipeline.crawl.reprocess`) is a crawl whose list job pages through the stored pages of the
crawl it replays, in URL order, and queues one `reprocess_page` per page through the frontier
(queue bound, backlog, exactly-once settling, counters), and whose item job reads the page's
body from the blob store, parses and crunches it again in the process pool, and updates the
page's document. A page that cannot be replayed (its body is gone, say) is recorded in
`failures` with the reason, like a page that could not be fetched.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING

from pipeline.crawl.options import PIPELINES, REPROCESS, CrawlOptions
from pipeline.download.response import is_html
from pipeline.errors import BlobNotFound, CpuFunctionError, CpuPoolBroken, CpuTimeout, PermanentFailure
from pipeline.schedule.discover import Found
from pipeline.schedule.frontier import Discovery
from pipeline.settle.outcome import Attempt, check_payload, finish
from pipeline.settle.retries import ride_out, settle
from pipeline.store.documents import reprocessed_document
from pipeline.worker.context import WorkerContext
from pipeline.worker.resources import Resources

LIST_JOB, ITEM_JOB, _ = PIPELINES[REPROCESS]
# Stored pages one list job queues: its memory, and its share of the queue bound, stay small
# however many pages the crawl stored.
BATCH = 500
_STORED_PAGE = {"_id": 0, "blob_key": 1, "content_type": 1, "charset": 1}


async def reprocess_list(ctx: WorkerContext, crawl_id: str, url: str, depth: int = 0) -> None:
    """Queue the replayed crawl's stored pages from `url` on (in URL order), a batch of them, and
    the next batch as another `reprocess_list` at the first URL past this one.

    Each batch is its own job, like a list page of a crawl: the frontier settles each once, and
    parks what the queue has no room for.
    """
    crawl_id, url, depth = check_payload(crawl_id, url, depth, canonical=False)

    async def work(res: Resources, attempt: Attempt) -> None:
        options = await res.crawl_options(crawl_id)
        batch = max(1, min(BATCH, options.max_queued // 2))
        pages = (
            await res.store.pages.find(
                {"crawl_id": _source(options), "url": {"$gte": url}}, {"_id": 0, "url": 1, "depth": 1}
            )
            .sort("url", ASCENDING)
            .limit(batch + 1)
            .to_list()
        )
        found = Found(await res.crawl_scope(crawl_id))
        found.items = [Discovery(str(page["url"]), "page", _depth(page), ITEM_JOB) for page in pages[:batch]]
        if len(pages) > batch:
            found.items.append(Discovery(str(pages[batch]["url"]), "list", 0, LIST_JOB))
        await res.backlog.schedule(crawl_id, options, found)
        await finish(res, crawl_id, "list", url, stored=True, fetched=False, attempt=attempt)

    await settle(ctx, crawl_id, "list", url, work, depth=depth)


async def reprocess_page(ctx: WorkerContext, crawl_id: str, url: str, depth: int) -> None:
    """Read the stored body of page `url`, parse and crunch it again in the pool, update its document.

    The document keeps its `crawl_id` (the crawl that fetched it) and gains `reprocessed_at` and
    `reprocess_id`; its title, description, fields and crunch results are those of this replay.
    """
    crawl_id, url, depth = check_payload(crawl_id, url, depth, canonical=False)

    async def work(res: Resources, attempt: Attempt) -> None:
        options = await res.crawl_options(crawl_id)
        source = _source(options)
        page = await res.store.pages.find_one({"url": url, "crawl_id": source}, _STORED_PAGE)
        if page is None:
            raise PermanentFailure(f"crawl {source} no longer has a page stored at this URL")
        key = page.get("blob_key")
        if not isinstance(key, str) or not key:
            raise PermanentFailure("no body was stored for this page")
        try:
            body = await res.blobs.get(key)
        except BlobNotFound as exc:
            raise PermanentFailure(f"stored body missing: {exc}") from None
        reparsed = None
        if is_html(str(page.get("content_type") or "")):
            reparsed = await reparse(res, options, body, page.get("charset"))
        document = reprocessed_document(crawl_id, reparsed, options.crunch, bool(options.fields))
        # An update, never an insert: a page another crawl has stored since is not this replay's.
        key_of = {"url": url, "crawl_id": source}
        await ride_out(lambda: res.store.save_document("pages", key_of, document, upsert=False), res.settings)
        await finish(res, crawl_id, "page", url, stored=True, fetched=False, attempt=attempt)

    await settle(ctx, crawl_id, "page", url, work, depth=depth)


async def reparse(res: Resources, options: CrawlOptions, body: bytes, charset: Any) -> dict[str, Any]:
    """Parse, fields and crunch of one body as one task in the pool (or on a CPU worker).

    As on a crawl, a crunch function the worker does not run, or one that raises, fails the page
    with the reason; a pool that broke or timed out is retried.
    """
    try:
        function = res.reprocess_function(options.crunch)
    except LookupError as exc:
        raise PermanentFailure(str(exc)) from None
    try:
        result: dict[str, Any] = await res.compute(
            function, body, charset if isinstance(charset, str) else None, options.link_selector, dict(options.fields)
        )
    except (CpuTimeout, CpuPoolBroken):
        raise
    except CpuFunctionError as exc:
        raise PermanentFailure(f"reprocess with crunch {options.crunch} raised {exc}"[:1000]) from exc
    except Exception as exc:  # a user's crunch function can raise anything
        raise PermanentFailure(
            f"reprocess with crunch {options.crunch} raised {type(exc).__name__}: {exc}"[:1000]
        ) from exc
    return result


def _source(options: CrawlOptions) -> str:
    if not options.source_crawl:
        raise PermanentFailure("this crawl is not a replay: its options name no source crawl")
    return options.source_crawl


def _depth(page: dict[str, Any]) -> int:
    depth = page.get("depth")
    return depth if isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0 else 0
