"""Job functions run by the workers: `async def job(ctx, ...)`, resources in `ctx["pipeline"]`."""

from jobs.complete import crawl_summary
from jobs.crawl import crawl
from jobs.fetch_page import fetch_page

__all__ = ["crawl", "crawl_summary", "fetch_page"]
