"""A replay's CPU task: parse, fields and crunch of a stored body in one pool call, by registered name."""

from __future__ import annotations

import asyncio
import os

import pytest

from pipeline.crunch.fingerprint import fingerprint
from pipeline.crunch.pool import CpuPool
from pipeline.crunch.registry import cpu_functions, reprocess_function, reprocess_name
from pipeline.parse.html import decode_html, parse_html

STATS = "tests.cpu_tasks:page_stats"
BODY = (
    "<html lang=fr><head><meta charset=iso-8859-1><title>Caf\xe9</title></head>"
    "<body><h1>Cr\xe8me</h1><ul class=tags><li>a<li>b</ul><a href=/x>x</a><p>some words here</p></body></html>"
).encode("latin-1")
FIELDS = {"headline": "h1", "tags": ".tags li[]", "link": "a@href"}


def test_a_replay_finds_what_the_crawl_would_have() -> None:
    registry = cpu_functions()
    result = reprocess_function("fingerprint", registry)(BODY, None, "a[href]", FIELDS)
    crawled = parse_html(decode_html(BODY, None), link_selector="a[href]")
    assert result["metadata"] == crawled.metadata()
    assert result["metadata"]["title"] == "Café"  # decoded from <meta charset> as a crawl would
    assert result["fields"] == {"headline": "Crème", "tags": ["a", "b"], "link": "/x"}
    assert result["crunched"] == fingerprint(crawled.text)


def test_without_a_crunch_there_is_no_crunch_result() -> None:
    result = reprocess_function("none", cpu_functions())(BODY, "latin-1", "a[href]", {})
    assert result["crunched"] is None and result["fields"] == {}


def test_only_registered_crunch_functions_have_a_replay_task() -> None:
    assert reprocess_name(STATS) not in cpu_functions()
    with pytest.raises(LookupError, match="not registered"):
        reprocess_function(STATS, cpu_functions())
    registry = cpu_functions([STATS])
    assert (
        reprocess_function(STATS, registry)(BODY, None, "a", {})["crunched"]["words"] == 7
    )  # Crème a b x some words here


async def test_the_task_runs_in_a_pool_process_batched_or_not() -> None:
    task = reprocess_function(STATS, cpu_functions([STATS]))
    for pool in (
        CpuPool(processes=1, max_in_flight=8, timeout=10.0),
        CpuPool(processes=1, max_in_flight=8, timeout=10.0, batch_delay=0.02, batch_size=4),
    ):
        try:
            results = await asyncio.gather(*(pool.run(task, BODY, None, "a[href]", FIELDS) for _ in range(4)))
        finally:
            pool.close()
        assert {r["crunched"]["pid"] for r in results} != {os.getpid()}
        assert all(r["fields"]["tags"] == ["a", "b"] for r in results)
