"""Job functions run by the workers: `async def job(ctx, ...)`, resources in `ctx["pipeline"]`."""

from jobs.crawl import crawl
from jobs.fetch_page import fetch_page

__all__ = ["crawl", "fetch_page"]
