"""`crawl_summary`: the built-in completion job (Celery: a chord callback), run once per crawl."""

from __future__ import annotations

from pipeline.store.mongo import utcnow
from pipeline.worker.context import WorkerContext

SLOWEST_HOSTS = 5
TOP_FAILURE_REASONS = 10


async def crawl_summary(ctx: WorkerContext, crawl_id: str) -> None:
    """Summarise a finished crawl into its record: pages, bytes, statuses, slow hosts, failure reasons."""
    if not isinstance(crawl_id, str) or not crawl_id:
        raise TypeError(f"crawl_id must be a non-empty string, got {crawl_id!r}")
    store = ctx["pipeline"].store
    match = {"$match": {"crawl_id": crawl_id}}
    statuses = await (
        await store.pages.aggregate(
            [match, {"$group": {"_id": "$status", "pages": {"$sum": 1}, "bytes": {"$sum": "$length"}}}]
        )
    ).to_list()
    hosts = await (
        await store.pages.aggregate(
            [
                match,
                {"$group": {"_id": "$host", "mean_fetch_ms": {"$avg": "$timings.fetch_ms"}, "pages": {"$sum": 1}}},
                {"$sort": {"mean_fetch_ms": -1}},
                {"$limit": SLOWEST_HOSTS},
            ]
        )
    ).to_list()
    reasons = await (
        await store.failures.aggregate(
            [
                match,
                {"$group": {"_id": "$error", "urls": {"$sum": 1}}},
                {"$sort": {"urls": -1}},
                {"$limit": TOP_FAILURE_REASONS},
            ]
        )
    ).to_list()
    record = await store.get_crawl(crawl_id) or {}
    started, finished = record.get("created_at"), record.get("finished_at") or utcnow()
    summary = {
        "pages": sum(int(s["pages"]) for s in statuses),
        "bytes": sum(int(s["bytes"] or 0) for s in statuses),
        "status_histogram": {str(s["_id"]): int(s["pages"]) for s in statuses},
        "failed": sum(int(r["urls"]) for r in reasons),
        "failure_reasons": {str(r["_id"]): int(r["urls"]) for r in reasons},
        "slowest_hosts": [
            {"host": h["_id"], "mean_fetch_ms": round(float(h["mean_fetch_ms"] or 0), 1), "pages": int(h["pages"])}
            for h in hosts
        ],
        "duration_s": round((finished - started).total_seconds(), 3) if started else None,
        "summarised_at": utcnow(),
    }
    await store.crawls.update_one({"_id": crawl_id}, {"$set": {"summary": summary}})
