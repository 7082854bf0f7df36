"""What the pipeline asked of Redis and MongoDB during a run, from the servers' own counters.

CPU per page says how much a run cost; commands per page say why. Redis's `INFO commandstats`
and MongoDB's `serverStatus().opcounters` are read before and after the crawl, and the
difference is reported per page: a batching that does not batch, or a poll loop that polls too
often, shows up here first.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def redis_commands(url: str) -> Counter[str]:
    """Calls per command name since the server started (`EVALSHA`, `ZADD`...)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        stats: Any = client.info("commandstats")  # a dict; redis-py types it as sync-or-async
    finally:
        client.close()
    return Counter({name.removeprefix("cmdstat_").upper(): int(value["calls"]) for name, value in stats.items()})


def redis_used_memory(url: str) -> int:
    """The server's `used_memory`, in bytes."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        info: Any = client.info("memory")
    finally:
        client.close()
    return int(info["used_memory"])


def mongo_operations(url: str) -> Counter[str]:
    """The server's opcounters (insert, query, update, delete, getmore, command)."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(url, serverSelectionTimeoutMS=5000)
    try:
        counters = client.admin.command("serverStatus").get("opcounters", {})
    finally:
        client.close()
    return Counter({str(name): int(value) for name, value in counters.items()})


@dataclass
class ServerCounters:
    """Redis and MongoDB counters between `start` and `stop`."""

    redis_url: str
    mongo_url: str
    redis: Counter[str] = field(default_factory=Counter)
    mongo: Counter[str] = field(default_factory=Counter)
    redis_memory_growth: int = 0  # Redis `used_memory` at the end less at the start

    def start(self) -> None:
        self.redis = redis_commands(self.redis_url)
        self.mongo = mongo_operations(self.mongo_url)
        self.redis_memory_growth = -redis_used_memory(self.redis_url)

    def stop(self) -> None:
        self.redis = redis_commands(self.redis_url) - self.redis
        self.mongo = mongo_operations(self.mongo_url) - self.mongo
        self.redis_memory_growth += redis_used_memory(self.redis_url)

    def per_page(self, pages: int) -> dict[str, Any]:
        """Totals, and per page the commands that were used (busiest first)."""
        if not pages:
            return {}
        return {
            "redis_commands": sum(self.redis.values()),
            "redis_commands_per_page": _per(self.redis, pages),
            "mongo_ops": sum(self.mongo.values()),
            "mongo_ops_per_page": _per(self.mongo, pages),
        }


def _per(counts: Counter[str], pages: int) -> dict[str, float]:
    return {name: round(count / pages, 3) for name, count in counts.most_common() if count}
