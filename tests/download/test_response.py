"""The response headers a page keeps: all but session cookies, names lower-cased, repeats as lists, size-capped."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.download.response import MAX_HEADER_BYTES, Response, kept_headers


def test_every_header_is_kept_with_lower_case_names() -> None:
    headers, dropped = kept_headers(
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("ETag", '"abc"'),
            ("Link", "</a>; rel=next"),
            ("X-Powered-By", "tests"),
            ("link", "</b>; rel=prev"),
            ("Set-Cookie", "session=s3cret; HttpOnly"),  # the site's credentials for this crawl
        ]
    )
    assert headers == {
        "content-type": "text/html; charset=utf-8",
        "etag": '"abc"',
        "link": ["</a>; rel=next", "</b>; rel=prev"],  # repeats kept apart, in order
        "x-powered-by": "tests",
    }
    assert dropped == ()  # a session cookie is not a header dropped for size: it is never kept


def test_headers_past_the_cap_are_dropped_whole_and_named() -> None:
    big = "x" * (MAX_HEADER_BYTES // 2)
    headers, dropped = kept_headers(
        [
            ("Content-Type", "text/html"),
            ("X-Big", big),
            ("X-Bigger", big + big),  # cannot fit: dropped, never cut
            ("Link", "</a>; rel=next"),
            ("X-Big", big),  # its second value would pass the cap
            ("ETag", '"e"'),
        ]
    )
    assert headers == {"content-type": "text/html", "x-big": big, "link": "</a>; rel=next", "etag": '"e"'}
    assert dropped == ("x-bigger", "x-big")


def test_names_mongodb_cannot_take_are_dropped_and_named() -> None:
    headers, dropped = kept_headers([("X.Dotted", "1"), ("$where", "2"), ("Server", "s")])
    assert headers == {"server": "s"}
    assert dropped == ("x.dotted", "$where")


def test_a_response_reads_the_first_of_repeated_headers() -> None:
    response = Response(
        "http://h.test/", "http://h.test/", 200, "text/html", None, b"", False, 0, 1.0, {"etag": ['"a"', '"b"']}
    )
    assert response.header("etag") == '"a"'
    assert response.header("last-modified") is None


_NAMES = st.text(alphabet="abcXYZ-", min_size=1, max_size=12)


@given(st.lists(st.tuples(_NAMES, st.text(max_size=3000)), max_size=40), st.integers(min_value=0, max_value=20_000))
def test_what_is_kept_fits_the_cap_and_the_rest_is_named(items: list[tuple[str, str]], limit: int) -> None:
    headers, dropped = kept_headers(items, limit)
    size = 0
    for name, value in headers.items():
        values = value if isinstance(value, list) else [value]
        size += len(name.encode()) + sum(len(v.encode("utf-8", "surrogateescape")) for v in values)
    assert size <= limit
    assert set(headers) | set(dropped) == {name.lower() for name, _ in items}
    kept = [v for value in headers.values() for v in (value if isinstance(value, list) else [value])]
    assert len(kept) <= len(items)
