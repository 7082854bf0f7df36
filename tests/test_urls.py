"""URL normalisation and scope: the identity a crawl deduplicates on."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import InvalidURL
from pipeline.urls import LinkResolver, normalise_url, url_digest, url_host


@pytest.mark.parametrize(
    ("raw", "base", "expected"),
    [
        ("HTTP://Example.COM:80/a#frag", None, "http://example.com/a"),
        ("https://example.com:443", None, "https://example.com/"),
        ("https://example.com:8443/x?q=1", None, "https://example.com:8443/x?q=1"),
        ("../page/7", "http://h.test/a/b/c", "http://h.test/a/page/7"),
        ("?page=2", "http://h.test/list?page=1", "http://h.test/list?page=2"),
        ("//other.test/p", "https://h.test/", "https://other.test/p"),
        ("  /x  ", "http://h.test/", "http://h.test/x"),
        ("#top", "http://h.test/p", "http://h.test/p"),
        ("http://[::1]:8080/p", None, "http://[::1]:8080/p"),
        ("http://example.com./a", None, "http://example.com/a"),
        # As aiohttp (yarl) sends them: one page, one spelling.
        ("http://h.test/a/../b", None, "http://h.test/b"),
        ("http://h.test/%7efoo", None, "http://h.test/~foo"),
        ("http://h.test/a b", None, "http://h.test/a%20b"),
        ("http://bücher.de/", None, "http://xn--bcher-kva.de/"),
        ("http://BÜCHER.de./x?q=ü", None, "http://xn--bcher-kva.de/x?q=%C3%BC"),
        ("http://h.test/a%2fb%3F", None, "http://h.test/a%2Fb%3F"),
        ("http://h.test/p?", None, "http://h.test/p"),
        ("http://u:pw@h.test:80/x", None, "http://u:pw@h.test/x"),
        ("x y/../z", "http://h.test/a/b", "http://h.test/a/z"),
        ("http:x", "http://h.test/a/b", "http://h.test/a/x"),
    ],
)
def test_normalise(raw: str, base: str | None, expected: str) -> None:
    assert normalise_url(raw, base) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "mailto:a@b.c",
        "javascript:void(0)",
        "data:text/html,hi",
        "ftp://h/x",
        "",
        "http://",
        "http://h:99999/",
        "nohost",
        "http://a b/",
        "http://h%41.test/",
        "http://[fe80::1%25eth0]/",
        "http://./",
    ],
)
def test_unsupported_or_malformed(raw: str) -> None:
    with pytest.raises(InvalidURL):
        normalise_url(raw)


_paths = st.text(alphabet="abcXYZ019-._~/%", max_size=30)
# What pages really write: escapes of either case, spaces, non-ASCII, dot segments, reserved marks.
_wild_paths = st.lists(
    st.one_of(st.sampled_from(["..", ".", "%7e", "%2F", "%zz", "a b", "é", "%C3%A9", ";x=1"]), st.text(max_size=6)),
    max_size=5,
).map("/".join)
_wild_hosts = st.sampled_from(
    ["bücher.de", "BÜCHER.DE.", "xn--bcher-kva.de", "Example.COM", "[::1]", "10.0.0.1", "u:p@h.test:8080", "[::1]:81"]
)


@given(host=_wild_hosts, path=_wild_paths, query=_wild_paths)
def test_normalise_is_idempotent_on_what_pages_write(host: str, path: str, query: str) -> None:
    try:
        url = normalise_url(f"https://{host}/{path}?{query}")
    except InvalidURL:
        return
    assert normalise_url(url) == url
    assert url.isascii() and " " not in url and "/../" not in url.partition("?")[0]
    assert url_host(url) == urlsplit(url).hostname  # read off the string, as a parser reads it


_hosts = st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z]{2,5}){1,2}", fullmatch=True)


@given(
    scheme=st.sampled_from(["http", "HTTP", "https", "HtTpS"]),
    host=_hosts,
    path=_paths,
    fragment=st.text(max_size=10),
)
def test_normalise_is_idempotent_and_drops_fragments(scheme: str, host: str, path: str, fragment: str) -> None:
    url = normalise_url(f"{scheme}://{host.upper()}/{path}#{fragment}")
    assert normalise_url(url) == url
    assert "#" not in url
    assert url.startswith(("http://", "https://"))
    assert url.split("/")[2] == host


@given(host=_hosts, path=_paths)
def test_default_port_is_the_same_page(host: str, path: str) -> None:
    assert normalise_url(f"http://{host}:80/{path}") == normalise_url(f"http://{host}/{path}")
    assert url_digest(normalise_url(f"https://{host}:443/{path}")) == url_digest(
        normalise_url(f"https://{host}/{path}")
    )


_hrefs = st.one_of(
    st.builds(lambda p: "/" + p, _paths),
    st.builds(lambda h, p: f"https://{h}/{p}", _hosts, _paths),
    st.builds(lambda p: "//" + p, _paths),
    _paths,
    _wild_paths,
    st.builds(lambda h, p: f"http://{h}/{p}", _wild_hosts, _wild_paths),
    st.sampled_from(
        [
            "mailto:a@b.c",
            "http://",
            "https://",
            "http:///x",
            "http://?q",
            "http:x",
            "/\t/x",
            "http://\n/x",
            "javascript:x",
            "HTTP://A.test/x#f",
            "/a#b",
            "https://h:99999/",
            "https://h.test/a;",
            "http:// ",
            " /x ",
            "/x;",
            # Path-relative links, reused per directory of the base, and what must not be.
            "?page=2",
            "#top",
            "",
            "x?y#z",
            "../../a",
            "./",
            ".",
            "..",
            "x:y",
            "a/b:c",
            "g;x?y",
            "os.html#os.stat",
        ]
    ),
)
_bases = st.builds(
    lambda scheme, host, port, path, params: f"{scheme}://{host}{port}/{path}{params}",
    st.sampled_from(["http", "https"]),
    st.sampled_from(["a.test", "b.test", "u:pw@a.test"]),
    st.sampled_from(["", ":8080"]),
    _paths,
    st.sampled_from(["", ";x", "?q=1", "?q=a/b", "/"]),
)


@given(links=st.lists(st.tuples(_hrefs, _bases), max_size=30))
def test_link_resolver_agrees_with_normalise_url(links: list[tuple[str, str]]) -> None:
    resolver = LinkResolver(size=8)  # small, so entries are evicted and looked up again
    for href, raw_base in links * 2:
        base = normalise_url(raw_base)
        try:
            expected: str | type[InvalidURL] = normalise_url(href, base)
        except InvalidURL:
            expected = InvalidURL
        if expected is InvalidURL:
            with pytest.raises(InvalidURL):
                resolver.resolve(href, base)
        else:
            assert resolver.resolve(href, base) == expected


def test_link_resolver_reuses_root_relative_links_per_origin() -> None:
    resolver = LinkResolver()
    assert resolver.resolve("/docs", "https://a.test/x/y") == "https://a.test/docs"
    assert resolver.resolve("/docs", "https://b.test:8443/z") == "https://b.test:8443/docs"
    assert resolver.resolve("/docs", "https://a.test/other") == "https://a.test/docs"
    assert resolver.resolve("docs", "https://a.test/x/y") == "https://a.test/x/docs"
    assert resolver.resolve("../a b", "https://a.test/x/y") == "https://a.test/a%20b"


def test_link_resolver_reuses_path_relative_links_per_directory() -> None:
    resolver = LinkResolver()
    assert resolver.resolve("os.html#x", "https://a.test/lib/io.html") == "https://a.test/lib/os.html"
    assert resolver.resolve("os.html#x", "https://a.test/lib/re.html?q=a/b") == "https://a.test/lib/os.html"
    assert resolver.resolve("../faq.html", "https://a.test/lib/sys.html") == "https://a.test/faq.html"
    assert resolver.resolve("os.html#x", "https://a.test/howto/io.html") == "https://a.test/howto/os.html"
    assert len(resolver._known) == 3  # one entry per directory and link, whichever page carried it
