"""The paginated API collector: `collect_list`, `collect_object` and `collect_summary`.

A list page of the API fans out one `collect_object` job per object and one `collect_list`
for the next page; an object job makes its two calls at once, crunches both payloads in the
process pool and saves one document to `objects`. Start a collection with
`Pipeline.crawl(url, pipeline="api")` (or `pipeline crawl URL --pipeline api`); every worker
registers these jobs. The machinery they use: `pipeline.download.json_api` (the calls and the
listing format) and `pipeline.crunch.objects` (the CPU stage).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping

from pipeline.crunch.objects import JsonObject, crunch_object
from pipeline.download.json_api import Listing, Payload, fetch_json, fetch_object, parse_listing
from pipeline.schedule.discover import Found
from pipeline.schedule.scope import Scope
from pipeline.settle.outcome import Attempt, check_payload, finish
from pipeline.settle.retries import ride_out, settle
from pipeline.store.mongo import utcnow
from pipeline.worker.context import WorkerContext
from pipeline.worker.resources import Resources

LIST_JOB = "collect_list"
ITEM_JOB = "collect_object"
OBJECTS = "objects"
OBJECT_DEPTH = 1


async def collect_list(ctx: WorkerContext, crawl_id: str, url: str, depth: int = 0) -> None:
    """Fetch list page `url`; queue each object and the next list page, in one schedule call.

    Each list page is its own job, so a failure on page 7 of 20 retries page 7 only, and the
    objects of page 1 are being collected while page 2 is still being fetched.
    """
    crawl_id, url, depth = check_payload(crawl_id, url, depth)

    async def work(res: Resources, attempt: Attempt) -> None:
        options = await res.crawl_options(crawl_id)
        # A list page goes ahead of the objects already queued: every later page waits for it.
        fetcher = await res.crawl_fetcher(crawl_id)
        listing = parse_listing((await fetch_json(fetcher, url, priority=True, robots=options.obeys_robots)).data)
        found = listing_found(url, listing, await res.crawl_scope(crawl_id))
        await res.backlog.schedule(crawl_id, options, found)
        await finish(res, crawl_id, "list", url, stored=True, fetched=True, attempt=attempt)

    await settle(ctx, crawl_id, "list", url, work, depth=depth)


async def collect_object(ctx: WorkerContext, crawl_id: str, url: str, depth: int) -> None:
    """Fetch object `url` and its details concurrently, crunch them in the pool, save the result."""
    crawl_id, url, depth = check_payload(crawl_id, url, depth)

    async def work(res: Resources, attempt: Attempt) -> None:
        clock = asyncio.get_running_loop().time
        started = clock()
        options = await res.crawl_options(crawl_id)
        obj, details = await fetch_object(await res.crawl_fetcher(crawl_id), url, robots=options.obeys_robots)
        crunch_started = clock()
        crunched = await res.compute(crunch_object, obj.data, details.data)
        timings = {"crunch_ms": (clock() - crunch_started) * 1000, "total_ms": (clock() - started) * 1000}
        document = object_document(crawl_id, url, attempt.number, obj, details, crunched, timings)
        # A storage blip is ridden out here, so the API is not called again for it.
        await ride_out(lambda: res.store.save_document(OBJECTS, {"url": url}, document), res.settings)
        await finish(res, crawl_id, "page", url, stored=True, fetched=True, attempt=attempt)

    await settle(ctx, crawl_id, "page", url, work, depth=depth)


async def collect_summary(ctx: WorkerContext, crawl_id: str) -> None:
    """Completion job: objects, copied reviews and mean score per category, into the crawl record."""
    if not isinstance(crawl_id, str) or not crawl_id:
        raise TypeError(f"crawl_id must be a non-empty string, got {crawl_id!r}")
    res = ctx["pipeline"]
    groups = await (
        await res.store.db[OBJECTS].aggregate(
            [
                {"$match": {"crawl_id": crawl_id}},
                {
                    "$group": {
                        "_id": "$category",
                        "objects": {"$sum": 1},
                        "copied_reviews": {"$sum": "$crunch.copied_reviews"},
                        "mean_score": {"$avg": "$crunch.score"},
                    }
                },
            ]
        )
    ).to_list()
    summary = {
        "objects": sum(int(g["objects"]) for g in groups),
        "copied_reviews": sum(int(g["copied_reviews"]) for g in groups),
        "categories": {
            str(g["_id"]): {"objects": int(g["objects"]), "mean_score": round(float(g["mean_score"] or 0), 3)}
            for g in groups
        },
        "summarised_at": utcnow(),
    }
    await res.store.crawls.update_one({"_id": crawl_id}, {"$set": {"summary": summary}})


def listing_found(page_url: str, listing: Listing, scope: Scope) -> Found:
    """The listing's URLs as the crawl will follow them: normalised, deduplicated, in scope.

    The next list page is walked by `collect_list`, each object fetched by `collect_object`;
    what is dropped is counted like the web pipeline's skipped links.
    """
    found = Found(scope, skipped_invalid=listing.invalid, seen={page_url})
    if listing.next_url is not None:
        found.add(listing.next_url, page_url, "list", 0, LIST_JOB)
    for href in listing.item_urls:
        found.add(href, page_url, "page", OBJECT_DEPTH, ITEM_JOB)
    return found


def object_document(
    crawl_id: str,
    url: str,
    attempt: int,
    obj: Payload,
    details: Payload,
    crunched: JsonObject,
    timings: Mapping[str, float],
) -> JsonObject:
    """The `objects` document: one per object URL, overwritten by the latest run that stored it.

    Both payloads are kept whole (a collector should not decide which of a source's fields
    matter), with the fields worth querying lifted to the top.
    """
    return {
        "url": url,
        "crawl_id": crawl_id,
        "object_id": obj.data.get("id"),
        "name": obj.data.get("name"),
        "category": obj.data.get("category"),
        "price": obj.data.get("price"),
        "object": obj.data,
        "details": details.data,
        "crunch": crunched,
        "fetched_at": dt.datetime.now(dt.UTC),
        "attempts": attempt,
        "timings": {
            "object_ms": round(obj.elapsed_ms, 2),
            "details_ms": round(details.elapsed_ms, 2),
            **{name: round(value, 2) for name, value in timings.items()},
        },
    }
