"""The CPU functions a worker may run by name: the built-in crunchers, plus yours.

Two things name CPU functions: a crawl's `crunch` option (what runs on each page) and, with the
roles split, an I/O worker asking a CPU worker to run a function by its name in Redis. In both
cases a worker runs only names in this registry: the built-ins and the functions its own
configuration lists in `cpu.functions`. Whoever can write to Redis (where a crawl's options and
the CPU queue live) therefore cannot make a worker run arbitrary code.

A crawl's `crunch` is `fingerprint` (the default), `none` (no CPU stage: the page is fetched,
parsed and stored) or a user's function as `package.module:function`, called in a pool process
with the page's visible text. Pool processes import the function's module when they first run
it, so that module should import little.

A replay of stored pages (`pipeline reprocess`) runs its whole parse and crunch in the pool as
one task per page: for each crunch the registry also holds that task bound to it, under
`reprocess_name(crunch)`, so it is reached by a registered name like any CPU function.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterable
from typing import Any

from pipeline.crunch.fingerprint import fingerprint
from pipeline.crunch.objects import crunch_object
from pipeline.crunch.reprocess import reparse

CpuFunction = Callable[..., Any]

FINGERPRINT = "fingerprint"
NO_CRUNCH = "none"
_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def load_cpu_function(path: str) -> CpuFunction:
    """The function at `package.module:function`, checked to be callable in a pool process.

    Raises `ValueError` saying what is wrong: the form, the import, the name, or a function a
    pool process could not find again by its name (a lambda, a nested function, `__main__`).
    """
    if not _IMPORT_PATH.match(path):
        raise ValueError(f"expected fingerprint, none or package.module:function, got {path!r}")
    module_name, _, name = path.partition(":")
    if module_name == "__main__":
        raise ValueError(f"{path!r}: pool processes cannot import __main__; put the function in a module")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - whatever the import raised, the setting is what is wrong
        raise ValueError(f"cannot import {module_name!r} for {path!r}: {type(exc).__name__}: {exc}") from None
    function = getattr(module, name, None)
    if function is None:
        raise ValueError(f"{module_name!r} has no {name!r}")
    if not callable(function):
        raise ValueError(f"{path!r} is not callable")
    # A pool process receives the function by reference (module and qualified name), so the
    # name must lead back to this very object.
    if getattr(function, "__module__", None) != module_name or getattr(function, "__qualname__", None) != name:
        raise ValueError(f"{path!r} must be a function defined at the top level of {module_name!r}")
    return function  # type: ignore[no-any-return]


def check_crunch(value: str) -> None:
    """`crawl.crunch` is fingerprint, none or an importable `package.module:function`."""
    if value not in (FINGERPRINT, NO_CRUNCH):
        load_cpu_function(value)


def check_cpu_function(path: str) -> None:
    """An entry of `cpu.functions`: an importable `package.module:function`."""
    load_cpu_function(path)


def cpu_functions(paths: Iterable[str] = ()) -> dict[str, CpuFunction]:
    """The functions workers will run, by name: the built-in crunchers and the ones at `paths`."""
    registry: dict[str, CpuFunction] = {FINGERPRINT: fingerprint, "crunch_object": crunch_object}
    crunches: dict[str, CpuFunction | None] = {FINGERPRINT: fingerprint, NO_CRUNCH: None}
    for path in paths:
        registry[path] = crunches[path] = load_cpu_function(path)
    for crunch, function in crunches.items():
        # A partial of two top-level functions pickles by reference, so the pool can run it.
        registry[reprocess_name(crunch)] = functools.partial(reparse, function)
    return registry


def reprocess_name(crunch: str) -> str:
    """The registry's name of a replay's CPU task for a crawl whose `crunch` is `crunch`."""
    return f"reprocess:{crunch}"


def crunch_function(crunch: str, registry: dict[str, CpuFunction]) -> CpuFunction | None:
    """What a crawl's `crunch` runs on each page; None for `none`.

    Raises `LookupError` for a function this worker does not have in its registry.
    """
    if crunch == NO_CRUNCH:
        return None
    function = registry.get(crunch)
    if function is None:
        raise LookupError(f"crunch function {crunch!r} is not registered in this worker (list it in cpu.functions)")
    return function


def reprocess_function(crunch: str, registry: dict[str, CpuFunction]) -> CpuFunction:
    """A replay's CPU task for `crunch`: parse, fields and crunch of one stored page.

    Raises `LookupError` for a crunch function this worker does not have in its registry.
    """
    function = registry.get(reprocess_name(crunch))
    if function is None:
        raise LookupError(f"crunch function {crunch!r} is not registered in this worker (list it in cpu.functions)")
    return function


def function_name(fn: CpuFunction, registry: dict[str, CpuFunction]) -> str:
    for name, known in registry.items():
        if known is fn:
            return name
    raise LookupError(f"{getattr(fn, '__name__', fn)!r} is not a registered CPU function")
