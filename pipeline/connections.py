"""Clients for Redis and MongoDB, configured the same way wherever they are made.

Workers, the API and the CLI all connect through here, so TLS, credentials and retry policy
are decided once.
"""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any

from pymongo import AsyncMongoClient
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pipeline.settings import Settings
from pipeline.store.mongo import Document

_USERINFO = re.compile(r"(\w+://)[^/@\s]*@")


def redact(text: str) -> str:
    """`text` with the credentials of any URL in it replaced: safe for logs and messages."""
    return _USERINFO.sub(r"\1***@", text)


# With a 2 s cap on the backoff, about 40 s of Redis being away is ridden out.
REDIS_COMMAND_RETRIES = 20


# redis-py retries only its own exception types by default; a refused or reset connection
# surfaces as the builtin ConnectionError (an OSError) while reconnecting and must count too.
RETRIED_ERRORS: list[type[Exception]] = [RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError]


def redis_retry() -> Retry:
    return Retry(ExponentialBackoff(cap=2.0, base=0.1), REDIS_COMMAND_RETRIES)


def tls_options(settings: Settings) -> dict[str, Any]:
    if not settings.redis.url.startswith("rediss://"):
        return {}
    return {
        "ssl_ca_certs": settings.redis.tls_ca_file or None,
        "ssl_cert_reqs": "required" if settings.redis.tls_verify else "none",
    }


def redis_client(settings: Settings) -> Redis:
    client: Redis = Redis.from_url(
        settings.redis.url,
        socket_connect_timeout=settings.redis.connect_timeout,
        retry=redis_retry(),
        retry_on_error=list(RETRIED_ERRORS),
        **tls_options(settings),
    )
    return client


def mongo_client(settings: Settings) -> AsyncMongoClient[Document]:
    """The MongoDB client; with `mongo.journal`, every write waits for the server's journal (j: true).

    A page is counted as stored only after its write returns, so the count can be trusted after a
    database crash only if the write was on disk when it returned. The group commit keeps this
    cheap: one journaled bulk write carries a batch of pages.
    """
    return AsyncMongoClient(
        settings.mongo.url,
        serverSelectionTimeoutMS=int(settings.mongo.server_selection_timeout * 1000),
        tz_aware=True,
        connect=False,
        journal=settings.mongo.journal,
    )


def read_script(package: str, *names: str) -> str:
    """A Lua script shipped in `package`'s `lua/` folder (read once, at import).

    With several names the files are joined in order: Redis runs each script on its own, so
    functions that several scripts share live in a file of their own, put before each of them.
    """
    return "\n".join((files(package) / "lua" / name).read_text(encoding="utf-8") for name in names)
