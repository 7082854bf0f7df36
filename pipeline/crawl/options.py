"""A crawl's options: `CrawlSettings` (the `[crawl]` section) plus the start URL.

Every option is declared once, in `pipeline.settings.CrawlSettings`, with its default, bounds and
help. `CrawlOptions.build` is the one place a crawl's options are put together: the API, the
CLI and the schedules all call it, so they accept the same names and check them the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError
from pipeline.settings import CrawlSettings, Settings, check_crunch_registered, crawl_option_values
from pipeline.urls import normalise_url

# Each pipeline's list job, item job and completion jobs (None: the `on_complete` default).
# `reprocess` is not chosen by a crawl's `pipeline` option: `pipeline reprocess` starts it, on
# the pages another crawl stored (see `CrawlOptions.replay`).
REPROCESS = "reprocess"
PIPELINES: dict[str, tuple[str, str, tuple[str, ...] | None]] = {
    "web": ("crawl", "fetch_page", None),
    "api": ("collect_list", "collect_object", ("collect_summary",)),
    REPROCESS: ("reprocess_list", "reprocess_page", ()),
}
# What a replay may change of the crawl it replays: how pages are read, never what is fetched.
REPLAY_OPTIONS = ("fields", "crunch")


@dataclass(frozen=True)
class CrawlOptions(CrawlSettings):
    """How one crawl walks its site: every `[crawl]` option, its start URL and its schedule."""

    start_url: str = ""
    schedule: str | None = None  # the `[[schedule]]` that started it, if any
    source_crawl: str | None = None  # a replay's: the crawl whose stored pages it reprocesses

    @classmethod
    def build(cls, start_url: str, settings: Settings, **given: Any) -> CrawlOptions:
        """Validated options for a crawl of `start_url`: `settings.crawl` overridden by `given`.

        An option given as None is taken as not given. Raises `InvalidURL` for the URL and
        `ConfigError` (a `ValueError`) naming the option for anything else, before anything is
        queued; a `crunch` function must be one the configuration registers (`cpu.functions`).
        """
        defaults = settings.crawl
        schedule = given.pop("schedule", None)
        values = crawl_option_values({name: value for name, value in given.items() if value is not None})
        if "crunch" in values:
            check_crunch_registered(values["crunch"], settings)
        list_job, item_job, on_complete = PIPELINES[values.get("pipeline", defaults.pipeline)]
        if on_complete is not None and "on_complete" not in values:
            values["on_complete"] = on_complete
        options = dataclasses.replace(
            cls(**_fields_of(defaults)), **values, start_url=normalise_url(start_url), schedule=schedule
        )
        _check_http_overlap(options)
        return dataclasses.replace(
            options,
            list_job=options.list_job or list_job,
            item_job=options.item_job or item_job,
            sitemaps=tuple(dict.fromkeys(normalise_url(url) for url in options.sitemaps)),
        )

    @staticmethod
    def replay_values(settings: Settings, **given: Any) -> dict[str, Any]:
        """The options a replay sets over its crawl's (`REPLAY_OPTIONS`), checked like a crawl's.

        An option given as None is taken as not given; `ConfigError` names a bad one.
        """
        unknown = sorted(set(given) - set(REPLAY_OPTIONS))
        if unknown:
            raise ConfigError(f"{unknown[0]}: a replay sets only {', '.join(REPLAY_OPTIONS)}")
        values = crawl_option_values({name: value for name, value in given.items() if value is not None})
        if "crunch" in values:
            check_crunch_registered(values["crunch"], settings)
        return values

    def replay(self, source_crawl: str, first_url: str, values: Mapping[str, Any]) -> CrawlOptions:
        """Options of a replay of this crawl's stored pages, with `values` (see `replay_values`) over its own.

        Its list job pages through the stored pages by URL from `first_url` (the smallest), so
        that is its start URL; it fetches nothing, so sitemaps, robots.txt and kept list pages
        are not its business, and it has no completion job.
        """
        list_job, item_job, on_complete = PIPELINES[REPROCESS]
        return dataclasses.replace(
            self,
            **values,
            start_url=first_url,
            pipeline=REPROCESS,
            list_job=list_job,
            item_job=item_job,
            on_complete=on_complete or (),
            sitemaps=(),
            robots_sitemaps=False,
            store_lists=False,
            conditional=False,
            schedule=None,
            source_crawl=source_crawl,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CrawlOptions:
        """Options as a crawl record stores them (names this version does not know are ignored)."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(known[k].default, tuple) else v for k, v in data.items() if k in known
        }
        return cls(**values)

    @property
    def keeps_list_pages(self) -> bool:
        """Whether each list page is also stored as a page (`store_lists`).

        Only the web pipeline's own list job (`crawl`) knows how to settle a list page it
        keeps; another pipeline's list pages are never kept.
        """
        return self.store_lists and self.list_job == PIPELINES["web"][0]

    @property
    def keeps_start_page(self) -> bool:
        """Whether the start page is stored: a site crawl (links followed below the children)
        reaches it like any other page, and a crawl keeping its list pages keeps it too."""
        return self.list_job == PIPELINES["web"][0] and (self.max_depth > 1 or self.store_lists)

    @property
    def obeys_robots(self) -> bool:
        """Whether this crawl reads robots.txt (the worker's `fetch.obey_robots` may still say no)."""
        return not self.ignore_robots

    def to_dict(self) -> dict[str, Any]:
        return _fields_of(self)


def _check_http_overlap(options: CrawlSettings) -> None:
    """One source per credential header: `auth` or an `Authorization` header, `cookies` or a
    `Cookie` header (one would silently replace the other)."""
    given = {name.lower() for name in options.headers}
    if options.auth and "authorization" in given:
        raise ConfigError("auth: give basic auth as auth or as an Authorization header, not both")
    if options.cookies and "cookie" in given:
        raise ConfigError("cookies: give cookies as cookies or as a Cookie header, not both")


def _fields_of(instance: Any) -> dict[str, Any]:
    return {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)}
