"""A stored page parsed and crunched again, in a pool process: the CPU work of `pipeline reprocess`.

A crawl parses on the event loop because the body is already there and the parse feeds the
links it must follow at once. A replay follows no links: it is CPU work and nothing else, so
the whole of it (decoding, parsing, the declared fields, the crawl's `crunch`) goes to the pool
as one task per page, and a worker replaying thousands of pages keeps its event loop free.

Pool processes import this module: it imports the parse stage (selectolax) and nothing of the
worker's I/O stack.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.parse.fields import FieldSpec, parse_fields
from pipeline.parse.html import decode_html, parse_html


@functools.lru_cache(maxsize=64)
def _specs(fields: tuple[tuple[str, str], ...]) -> tuple[FieldSpec, ...]:
    # A pool process replays many pages of one crawl: its specs are parsed once, not per page.
    return parse_fields(dict(fields))


def reparse(
    crunch: Callable[[str], Any] | None,
    body: bytes,
    charset: str | None,
    link_selector: str,
    fields: Mapping[str, str],
) -> dict[str, Any]:
    """An HTML body's metadata, declared `fields` and `crunch` result, as the crawl stage would
    have made them from the same bytes.

    `crunch` is the crawl's CPU-stage function (None for `none`); the registry binds it
    (`pipeline.crunch.registry`), so a name read from Redis can only pick one of those.
    """
    parsed = parse_html(
        decode_html(body, charset),
        link_selector=link_selector,
        text=crunch is not None,
        fields=_specs(tuple(fields.items())),
    )
    crunched = crunch(parsed.text) if crunch is not None and parsed.text else None
    return {"metadata": parsed.metadata(), "fields": parsed.fields, "crunched": crunched}
