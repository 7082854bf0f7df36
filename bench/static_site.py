"""A static HTML folder as a benchmark site: what a complete crawl of it must store.

`python -m bench.run --site-dir PATH --start PATH` serves any folder of HTML (a documentation
site a package ships, a mirror) with `bench.site --static-dir` and crawls it from the start
page at full depth. What the crawl must find is computed here, independently of the pipeline:
a breadth-first walk of the files, following every `<a href>` of every HTML file that stays on
the site, resolved the way browsers resolve them (`urllib.parse.urljoin`, fragment dropped). A
link to a file that exists must be stored (HTML or not); one to a file that does not must be
recorded as a failure (the server answers 404).
"""

from __future__ import annotations

import mimetypes
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser

ORIGIN = "http://site.invalid"  # paths only matter: the walk resolves links against this origin
INDEX = "index.html"


@dataclass(frozen=True)
class StaticExpectation:
    """What a complete crawl of a static folder from one start page stores and fails."""

    stored: frozenset[str]  # URL paths (with query) that exist
    failed: frozenset[str]  # URL paths that answer 404
    html_pages: int  # of `stored`, those that are HTML


def file_for(root: Path, path: str) -> Path | None:
    """The file a URL path names under `root` (a folder's index.html for a folder), if any."""
    relative = unquote(urlsplit(path).path).lstrip("/")
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        return None
    if target.is_dir():
        target = target / INDEX
    return target if target.is_file() else None


def is_html(path: Path) -> bool:
    return (mimetypes.guess_type(path.name)[0] or "") == "text/html"


def _links(file: Path, link_selector: str) -> list[str]:
    tree = LexborHTMLParser(file.read_bytes())
    return [href for node in tree.css(link_selector) if (href := node.attributes.get("href"))]


@cache
def expectation(root: Path, start: str, link_selector: str = "a[href]") -> StaticExpectation:
    """Breadth-first over the site from `start` (a URL path), as a correct crawler walks it.

    The start page is stored from the fetch that walks it (a crawl that follows links below the
    children keeps its start page), and fetched once.
    """
    root = root.resolve()
    stored: set[str] = set()
    failed: set[str] = set()
    html = 0
    queue = deque([start])
    walked = {start}
    while queue:
        path = queue.popleft()
        file = file_for(root, path)
        if file is None:
            failed.add(path)
            continue
        stored.add(path)
        if not is_html(file):
            continue
        html += 1
        for href in _links(file, link_selector):
            url = urldefrag(urljoin(ORIGIN + path, href.strip())).url
            if not url.startswith(ORIGIN + "/"):
                continue  # another host, or not http at all (mailto:, javascript:)
            target = url[len(ORIGIN) :]
            if target not in walked:
                walked.add(target)
                queue.append(target)
    return StaticExpectation(frozenset(stored), frozenset(failed), html)
