"""Job serialisation: msgpack instead of arq's default pickle.

Unpickling runs code chosen by whoever wrote the bytes, so with pickle anyone able to write to
Redis could run code in every worker. msgpack carries plain data only, and is faster.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgpack


def _fallback(value: Any) -> Any:
    # arq puts a job's exception into its result record; keep its text, not the object.
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__} in a job")


def serialize(data: Any) -> bytes:
    packed: bytes = msgpack.packb(data, default=_fallback, use_bin_type=True)
    return packed


def deserialize(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)
