"""The CPU functions a worker may run by name: the built-in crunchers, plus any given.

With the roles split, an I/O worker asks a CPU worker to run a function by its name in Redis;
only names in this registry are run, so whoever can write to Redis cannot make a CPU worker run
arbitrary code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.crunch.fingerprint import fingerprint
from pipeline.crunch.objects import crunch_object

CpuFunction = Callable[..., Any]


def cpu_functions(extra: dict[str, CpuFunction] | None = None) -> dict[str, CpuFunction]:
    """The functions CPU workers will run, by name: the built-in crunchers plus any given."""
    registry: dict[str, CpuFunction] = {"fingerprint": fingerprint, "crunch_object": crunch_object}
    registry.update(extra or {})
    return registry


def function_name(fn: CpuFunction, registry: dict[str, CpuFunction]) -> str:
    for name, known in registry.items():
        if known is fn:
            return name
    raise LookupError(f"{getattr(fn, '__name__', fn)!r} is not a registered CPU function")
