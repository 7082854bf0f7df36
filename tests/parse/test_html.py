"""Parsing, decoding, fingerprints, SSRF address checks, retry timing: pure functions."""

from __future__ import annotations

import hashlib
import ipaddress
import pickle
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.crunch.fingerprint import fingerprint, simhash
from pipeline.download.fetcher import parse_retry_after
from pipeline.download.ssrf_guard import check_host, is_public_address
from pipeline.errors import BlockedAddress, InvalidSelector
from pipeline.parse.html import check_selector, decode_html, parse_html
from pipeline.settle.retries import backoff_delay
from pipeline.worker.serialization import deserialize, serialize

MESSY = b"""<!doctype html><HTML LANG="EN-gb"><head><title> A  page </title>
<meta name=Description content="about things"><link rel=canonical href="/c">
<script>var hidden = "script words";</script><style>.x{color:red}</style>
<body><p>Visible <b>words<p>more words <a href="/a#x">A</a> <a rel="next" href="?page=2">next</a>
<a>no href</a><a href="">empty</a>"""


def test_parse_messy_html() -> None:
    page = parse_html(decode_html(MESSY, None), link_selector="a[href]", next_selector="a[rel=next]")
    assert page.title == "A  page"
    assert page.description == "about things"
    assert page.canonical == "/c"
    assert page.language == "en-gb"
    assert page.links == ["/a#x", "?page=2"]
    assert page.next_links == ["?page=2"]
    assert "script words" not in page.text and "color" not in page.text
    assert fingerprint(page.text)["word_count"] == len("Visible words more words A next no href empty".split())


def test_decode_uses_meta_charset_then_http_charset() -> None:
    body = '<meta charset="iso-8859-1"><p>café</p>'.encode("latin-1")
    assert "café" in decode_html(body, None)
    assert "café" in decode_html("<p>café</p>".encode("cp1252"), "windows-1252")
    assert decode_html(b"\xff\xfe broken", "no-such-charset")  # never raises


def test_bad_selector() -> None:
    with pytest.raises(InvalidSelector):
        check_selector("a[")


def test_fingerprint_is_stable_and_near_for_near_text() -> None:
    text = " ".join(f"word{chr(97 + i % 26)} lorem ipsum dolor" for i in range(400))
    first, again = fingerprint(text), fingerprint(text)
    assert first == again
    near = fingerprint(text + " extra")
    far = fingerprint(" ".join(f"other{chr(97 + i % 26)}{chr(97 + i % 7)} zeta" for i in range(400)))
    distance = lambda a, b: bin(int(a["simhash"], 16) ^ int(b["simhash"], 16)).count("1")  # noqa: E731
    assert distance(first, near) < distance(first, far)
    assert {w for w, _ in first["top_words"][:3]} == {"lorem", "ipsum", "dolor"}


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "fe80::1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))
    with pytest.raises(BlockedAddress):
        check_host(address, allow_private=False)
    check_host(address, allow_private=True)


def test_public_addresses_pass() -> None:
    assert is_public_address(ipaddress.ip_address("93.184.216.34"))
    assert is_public_address(ipaddress.ip_address("2606:2800:220:1::1"))
    check_host("example.com", allow_private=False)  # names are checked when resolved


def test_retry_after() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@given(attempt=st.integers(1, 30), retry_after=st.one_of(st.none(), st.floats(0, 10_000)))
def test_backoff_bounds(attempt: int, retry_after: float | None) -> None:
    delay = backoff_delay(attempt, 1.0, 60.0, retry_after)
    assert 0 <= delay <= max(60.0, min(retry_after or 0, 3600.0))
    if retry_after is not None:
        assert delay >= min(retry_after, 3600.0)


def test_serializer_round_trip_and_no_code() -> None:
    job = {"t": None, "f": "fetch_page", "a": ["c1", "http://x/", 1], "k": {}, "et": 1}
    assert deserialize(serialize(job)) == job
    assert isinstance(deserialize(serialize({"r": ValueError("bad")}))["r"], str)
    pickled = pickle.dumps(object())
    with pytest.raises(Exception):  # noqa: B017, PT011 - pickle bytes are not msgpack data
        deserialize(pickled)


def _simhash_bit_by_bit(weights: Counter[str]) -> int:
    """The definition: bit i is set when features with bit i of their hash outweigh the rest."""
    digests = {
        f: int.from_bytes(hashlib.blake2b(f.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
        for f in weights
    }
    total = sum(weights.values())
    return sum(1 << i for i in range(64) if 2 * sum(w for f, w in weights.items() if digests[f] >> i & 1) > total)


@given(st.dictionaries(st.text(min_size=1, max_size=12), st.integers(min_value=1, max_value=10_000), max_size=300))
def test_simhash_matches_its_definition(weights: dict[str, int]) -> None:
    counts = Counter(weights)
    assert simhash(counts) == _simhash_bit_by_bit(counts)
