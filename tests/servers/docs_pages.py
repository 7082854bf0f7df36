"""Child pages that read like a documentation site's, for the benchmark's realistic workload.

The synthetic site's plain pages repeat a 74-word vocabulary, so the CPU stage's cost on them
(which follows the number of distinct words a page has) says little about real pages. These
pages have what real documentation pages have:

- **natural word frequencies**: words drawn from a site vocabulary of `SiteConfig.vocabulary`
  words with Zipf's law (the k-th most frequent word is used about 1/k as often as the first),
  common English words first, so a page has hundreds to thousands of distinct words;
- **sizes spread like real pages**: lognormal around `page_bytes` with `size_sigma`;
- **links like a documentation site's**: a top bar linking every section's first page, a sidebar
  linking every page of the section, breadcrumbs, previous and next, cross-references inside the
  text (about one every 60 words), a fragment link and a few links off the site; markup around
  words (`<code>`, `<em>`, headings, code blocks) as generated HTML has.

Every page is a pure function of the `SiteConfig` and its index, like the plain pages.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.servers.site import SiteConfig

SECTION_PAGES = 50
WORDS_PER_LINK = 12
ZIPF_EXPONENT = 1.1
_STREAM_TOKENS = 300_000
_HTML_BYTES_PER_WORD = 28.0  # markup included: a documentation page's text is about a quarter of its bytes
_COMMON = (
    "the of and to a in is it that for as with be on by this are or from an which can not at you if "
    "your its will all has one more use when have was also other but each may these used their new "
    "they only any such into than some must two there see so how then where most first what should "
    "return value object function type name file data module list string default example class set "
    "method error call argument time number code instance version line key result path first"
).split()
_ONSETS = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "br", "st", "pr", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "io", "ea", "ou")
_CODAS = ("", "", "n", "r", "s", "t", "l", "m", "nd", "st")


@dataclass(frozen=True)
class DocsLinks:
    """Which pages a docs page links to, by where the link sits."""

    sections: list[int]  # top bar: the first page of every section
    sidebar: list[int]  # every page of this page's section
    previous: int | None
    following: int | None
    inline: list[int]  # cross-references in the text

    def all(self) -> list[int]:
        found = [*self.sections, *self.sidebar, *self.inline]
        found += [page for page in (self.previous, self.following) if page is not None]
        return found


def _word(rng: random.Random) -> str:
    syllables = rng.choice((1, 2, 2, 2, 3, 3, 4))
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))


@cache
def vocabulary(size: int, seed: int) -> tuple[str, ...]:
    """`size` distinct words, the most frequent first: common English ones, then invented ones."""
    rng = random.Random(f"{seed}:vocabulary")
    words = list(dict.fromkeys(_COMMON))[:size]
    known = set(words)
    while len(words) < size:
        word = _word(rng)
        if word not in known:
            known.add(word)
            words.append(word)
    return tuple(words)


@cache
def _stream(size: int, seed: int) -> tuple[str, ...]:
    """A long text drawn with Zipf's law; pages are slices of it (drawing per page costs far more)."""
    words = vocabulary(size, seed)
    weights = [1.0 / rank**ZIPF_EXPONENT for rank in range(1, size + 1)]
    return tuple(random.Random(f"{seed}:stream").choices(words, weights=weights, k=_STREAM_TOKENS))


def page_size(config: SiteConfig, index: int) -> int:
    """This page's size in bytes: lognormal around `page_bytes`, within 2 KB and 20 times it."""
    if config.size_sigma <= 0:
        return config.page_bytes
    rng = random.Random(f"{config.seed}:size:{index}")
    size = rng.lognormvariate(math.log(config.page_bytes), config.size_sigma)
    return int(min(max(size, 2_000), 20 * config.page_bytes))


def _words_on(config: SiteConfig, index: int) -> int:
    return max(50, int(page_size(config, index) / _HTML_BYTES_PER_WORD))


def docs_links(config: SiteConfig, index: int) -> DocsLinks:
    """The pages page `index` links to (its own index never among them)."""
    pages = config.pages
    section = index // SECTION_PAGES
    heads = [head for head in range(0, pages, SECTION_PAGES) if head != index]
    start, end = section * SECTION_PAGES, min(pages, (section + 1) * SECTION_PAGES)
    sidebar = [page for page in range(start, end) if page != index]
    rng = random.Random(f"{config.seed}:docs-links:{index}")
    others = [page for page in range(pages) if page != index] if pages > 1 else []
    inline = [rng.choice(others) for _ in range(_words_on(config, index) // WORDS_PER_LINK)] if others else []
    return DocsLinks(
        sections=heads,
        sidebar=sidebar,
        previous=index - 1 if index > 0 else None,
        following=index + 1 if index + 1 < pages else None,
        inline=inline,
    )


def _href(form: int, index: int) -> str:
    # Relative forms, as generated sites write them: from /page/<i>, "7" and "../page/7" are /page/7.
    return (f"{index}", f"../page/{index}", f"/page/{index}")[form % 3]


def _title(words: Sequence[str], rng: random.Random) -> str:
    return " ".join(word.capitalize() for word in rng.sample(words[40:400], 3))


_LINK = '<a class="reference internal" href="{href}">{word}</a>'
_CODE = '<code class="xref py py-func docutils literal notranslate"><span class="pre">{word}</span></code>'
_TERM = '<em class="xref std std-term">{word}</em>'
_TOKEN = '<span class="n">{word}</span><span class="o">.</span>'
_HEADING = '<section id="s{at}"><h2>{title}<a class="headerlink" href="#s{at}" title="Permalink">¶</a></h2>\n'
_CODE_BLOCK = '<div class="highlight-python3 notranslate"><div class="highlight"><pre>{code}</pre></div></div>\n'


def _block(chunk: list[str], inline: Iterator[int], rng: random.Random, at: int) -> str:
    """One paragraph, heading or code block of words, with cross-references and inline markup."""
    for position in range(0, len(chunk), WORDS_PER_LINK):
        target = next(inline, None)
        if target is not None:
            chunk[position] = _LINK.format(href=_href(position, target), word=chunk[position])
    for position in range(5, len(chunk), 9):
        chunk[position] = _CODE.format(word=chunk[position])
    for position in range(3, len(chunk), 17):
        chunk[position] = _TERM.format(word=chunk[position])
    kind = rng.random()
    if kind < 0.1:
        return _HEADING.format(at=at, title=" ".join(chunk[:4])) + f"<p>{' '.join(chunk[4:])}</p>\n"
    if kind < 0.25:
        return _CODE_BLOCK.format(code="".join(_TOKEN.format(word=word) for word in chunk))
    return f"<p>{' '.join(chunk)}</p>\n"


def render_docs_child(config: SiteConfig, index: int, host: str, hidden_token: str) -> bytes:
    """Docs page `index`: top bar, sidebar, breadcrumbs, text with cross-references, prev/next."""
    words = vocabulary(max(config.vocabulary, 200), config.seed)
    stream = _stream(max(config.vocabulary, 200), config.seed)
    rng = random.Random(f"{config.seed}:docs-page:{index}")
    links = docs_links(config, index)
    title = _title(words, rng)
    section = index // SECTION_PAGES
    head = (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{title} — Docs</title>\n'
        f'<meta name="description" content="{" ".join(rng.sample(words[20:300], 12))}">\n'
        f'<link rel="canonical" href="http://{host}/page/{index}">\n'
        f'<link rel="stylesheet" href="/static/docs.css">\n'
        + (f'<link rel="next" href="{links.following}">\n' if links.following is not None else "")
        + f'<script>var tracker = "{hidden_token}";</script>\n</head>\n<body>\n'
    )
    top = "".join(f'<li><a href="/page/{page}">Section {page // SECTION_PAGES}</a></li>' for page in links.sections)
    side = "".join(
        f'<li class="toctree-l1"><a class="reference internal" href="{_href(k, page)}">Page {page}</a></li>\n'
        for k, page in enumerate(links.sidebar)
    )
    parts = [
        head,
        f'<header><a href="#top" id="top">Skip</a><nav class="top"><ul>{top}</ul></nav></header>\n',
        f'<div class="sphinxsidebar" role="navigation"><h3>Section {section}</h3><ul>\n{side}</ul></div>\n',
        f'<div class="body" role="main"><div class="breadcrumbs"><a href="/page/0">Docs</a> &raquo; '
        f'<a href="/page/{section * SECTION_PAGES}">Section {section}</a> &raquo;</div>\n<h1>{title}</h1>\n',
    ]
    total = _words_on(config, index)
    offset = rng.randrange(len(stream) - total)
    inline = iter(links.inline)
    written = 0
    while written < total:
        length = min(total - written, rng.randint(30, 160))
        chunk = list(stream[offset + written : offset + written + length])
        parts.append(_block(chunk, inline, rng, written))
        written += length
    rest = list(inline)  # cross-references the text had no room for: a "see also" list
    if rest:
        items = "".join(f'<li><a href="{_href(k, page)}">Page {page}</a></li>' for k, page in enumerate(rest))
        parts.append(f'<div class="seealso"><p>See also</p><ul>{items}</ul></div>\n')
    related = []
    if links.previous is not None:
        related.append(f'<a class="prev" href="{_href(1, links.previous)}">Previous: Page {links.previous}</a>')
    if links.following is not None:
        related.append(f'<a class="next" href="{_href(0, links.following)}">Next: Page {links.following}</a>')
    parts.append(f'<div class="related">{" | ".join(related)}</div></div>\n')
    parts.append(
        '<footer><a href="http://example.com/about">About</a> <a href="https://example.org/license">License</a> '
        f'<a href="#top">Back to top</a></footer>\n<!-- {hidden_token} -->\n</body></html>\n'
    )
    return "".join(parts).encode()
