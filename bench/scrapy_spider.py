"""The Scrapy baseline: a CrawlSpider over the same site, as the field notes ran Scrapy.

`scrapy runspider bench/scrapy_spider.py -a start_url=URL -a out=DIR` (started by `bench.run
--baseline scrapy`) follows every in-site link from the start page at full depth and writes one
JSON line per HTML page (URL, title, link count) to `DIR/pages.jsonl`: it stores nothing in
MongoDB or S3, so its CPU per page is a crawler's without storage. It prints `ready` once the
reactor runs and waits for a line on stdin, so start-up is not measured; its stats go to
`DIR/stats.json` when it closes.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import scrapy
from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import CrawlSpider, Rule

READY = "ready"


class SiteSpider(CrawlSpider):  # type: ignore[misc]
    name = "bench-site"
    custom_settings: ClassVar[dict[str, Any]] = {
        "CONCURRENT_REQUESTS": 64,
        "CONCURRENT_REQUESTS_PER_DOMAIN": 64,
        "ROBOTSTXT_OBEY": False,
        "AUTOTHROTTLE_ENABLED": False,
        "DOWNLOAD_DELAY": 0,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "WARNING",
        "DEPTH_LIMIT": 0,
    }

    def __init__(self, start_url: str, out: str, *args: Any, **kwargs: Any) -> None:
        # Scrapy's domain filters do not match an IP address host: in-site links are the ones whose
        # URL starts with the site's origin.
        origin = "{0.scheme}://{0.netloc}/".format(urlsplit(start_url))
        allow = "^" + re.escape(origin)
        self.rules = (Rule(LinkExtractor(allow=allow), callback="parse_page", follow=True),)
        super().__init__(*args, **kwargs)
        self.start_urls = [start_url]
        self.out = Path(out)
        self._feed = (self.out / "pages.jsonl").open("w")

    async def start(self) -> Any:  # type: ignore[override]
        print(READY, flush=True)
        sys.stdin.readline()  # the runner's "go", once its meters are marked
        for url in self.start_urls:
            yield scrapy.Request(url, dont_filter=True)

    def parse_page(self, response: Any) -> Iterator[dict[str, Any]]:
        title = response.css("title::text").get()
        links = len(response.css("a[href]"))
        self._feed.write(json.dumps({"url": response.url, "title": title, "link_count": links}) + "\n")
        yield from ()

    def closed(self, reason: str) -> None:
        self._feed.close()
        stats = {key: value for key, value in self.crawler.stats.get_stats().items() if isinstance(value, int | float)}
        (self.out / "stats.json").write_text(json.dumps(stats | {"reason": reason}))
