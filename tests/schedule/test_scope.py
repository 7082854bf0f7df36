"""Scope: host, public-suffix domain, allow and deny patterns; as pure decisions, then in a crawl."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import ConfigError, InvalidPattern
from pipeline.schedule.scope import PublicSuffixes, Scope, check_pattern
from pipeline.settings import Settings, crawl_option_values
from tests.helpers import StaticSite, crawl_to_completion, resolve_to_loopback


@pytest.fixture(scope="module")
def suffixes() -> PublicSuffixes:
    loaded = PublicSuffixes()
    loaded.load()
    return loaded


def test_host_scope_is_the_start_host_only() -> None:
    scope = Scope("http://www.example.com/list", "host")
    assert scope.follows("http://www.example.com/p")
    assert scope.follows("http://www.example.com:8080/p")  # a host, whatever the port
    assert not scope.follows("http://blog.example.com/p")
    assert not scope.follows("http://example.com/p")


def test_domain_scope_follows_the_registrable_domain(suffixes: PublicSuffixes) -> None:
    scope = Scope("https://a.example.co.uk/list", "domain", suffixes=suffixes)
    assert scope.follows("https://b.example.co.uk/p")  # same registrable domain: example.co.uk
    assert scope.follows("https://example.co.uk/p")
    assert scope.follows("http://deep.er.example.co.uk/p")
    assert not scope.follows("https://other.co.uk/p")  # co.uk is a public suffix, not a site
    assert not scope.follows("https://example.co.uk.evil.test/p")
    assert not scope.follows("https://co.uk/p")

    www = Scope("http://www.example.com/list", "domain", suffixes=suffixes)
    assert www.follows("http://blog.example.com/p") and www.follows("http://example.com/p")
    assert not www.follows("http://notexample.com/p")


def test_domain_scope_keeps_apart_the_sites_of_a_private_suffix(suffixes: PublicSuffixes) -> None:
    scope = Scope("https://alice.github.io/", "domain", suffixes=suffixes)
    assert scope.follows("https://alice.github.io/post")
    assert not scope.follows("https://bob.github.io/")


def test_domain_scope_of_an_address_or_a_bare_name_is_that_host(suffixes: PublicSuffixes) -> None:
    for start, other in (("http://127.0.0.1:8000/", "http://127.0.0.2/"), ("http://localhost/", "http://x.localhost/")):
        scope = Scope(start, "domain", suffixes=suffixes)
        assert scope.follows(start)
        assert not scope.follows(other)


def test_any_scope_follows_every_host() -> None:
    assert Scope("http://example.com/", "any").follows("http://elsewhere.org/")


def test_patterns_are_searched_in_the_canonical_url_and_deny_wins() -> None:
    scope = Scope("https://example.com/", "host", allow=(r"/docs/", r"\?page=\d+$"), deny=(r"/docs/old/", r"\.pdf$"))
    assert scope.follows("https://example.com/docs/intro")
    assert scope.follows("https://example.com/list?page=2")
    assert not scope.follows("https://example.com/blog/post")  # matches no allow pattern
    assert not scope.follows("https://example.com/docs/old/intro")  # allowed, but denied: deny wins
    assert not scope.follows("https://example.com/docs/manual.pdf")
    assert not scope.follows("https://elsewhere.org/docs/intro")  # patterns never widen the host scope

    anchored = Scope("https://example.com/", "any", allow=(r"^https://example\.com/",))
    assert anchored.follows("https://example.com/x")
    assert not anchored.follows("https://evil.test/?https://example.com/")  # the whole URL, from its start

    # The URL seen by a pattern is the canonical one: punycode host, encoded spaces.
    idn = Scope("http://xn--bcher-kva.de/", "any", deny=(r"xn--bcher-kva", r"%20"))
    assert not idn.follows("http://xn--bcher-kva.de/x")
    assert not idn.follows("http://h.test/a%20b")


def test_deny_alone_keeps_everything_else() -> None:
    scope = Scope("https://example.com/", "host", deny=(r"/private",))
    assert scope.follows("https://example.com/public")
    assert not scope.follows("https://example.com/private/x")


def test_sitemaps_named_elsewhere_need_only_the_host_scope() -> None:
    scope = Scope("https://example.com/", "host", allow=(r"/docs/",))
    assert scope.follows_host("https://example.com/sitemap.xml")
    assert not scope.follows("https://example.com/sitemap.xml")


@pytest.mark.parametrize("pattern", ["(", "[a-", "a{2,1}", "*x", "(?P<n>a)(?P<n>b)"])
def test_invalid_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidPattern, match="invalid regular expression"):
        check_pattern(pattern)
    with pytest.raises(ConfigError, match="allow: invalid regular expression"):
        crawl_option_values({"allow": [pattern]})
    with pytest.raises(ConfigError, match=r"crawl\.deny: invalid regular expression"):
        Settings().replace(crawl={"deny": [pattern]})


def test_a_pattern_given_as_one_string_is_one_pattern() -> None:
    """Regular expressions have commas of their own: a string (an environment variable, say) is
    one pattern, not a comma-separated list."""
    assert crawl_option_values({"allow": r"/p\d{1,3},x"}) == {"allow": (r"/p\d{1,3},x",)}
    assert crawl_option_values({"sitemaps": "http://h.test/a.xml,http://h.test/b.xml"})["sitemaps"] == (
        "http://h.test/a.xml",
        "http://h.test/b.xml",
    )


_LOAD_AND_WATCH = """
import sys
events = set()
network = {"socket.getaddrinfo", "socket.gethostbyname", "socket.connect", "socket.sendto"}
sys.addaudithook(lambda event, args: events.add(event) if event in network else None)
from pipeline.schedule.scope import PublicSuffixes
suffixes = PublicSuffixes()
suffixes.load()
assert suffixes.site("a.example.co.uk") == "example.co.uk"
print(sorted(events))
"""


def test_the_suffix_list_is_the_bundled_snapshot(tmp_path: Path) -> None:
    """Loading it resolves no name, opens no connection and writes no cache file, wherever the
    caches would go (a fresh process: tldextract reads its cache location when imported)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TLDEXTRACT")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), TLDEXTRACT_CACHE=str(home / "tld"))
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_WATCH], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"  # no name looked up, no connection
    assert list(home.rglob("*")) == []


def test_a_domain_scope_needs_the_suffix_list() -> None:
    with pytest.raises(ValueError, match="PublicSuffixes"):
        Scope("http://example.com/", "domain", suffixes=PublicSuffixes())


async def test_a_crawl_follows_its_domain_and_patterns(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("a.example.co.uk", "b.example.co.uk", "example.co.uk", "other.co.uk")
    resolve_to_loopback(monkeypatch, *names)
    async with StaticSite({}) as site:
        at = {name: f"http://{name}:{site.port}" for name in names}
        links = [
            f"{at['b.example.co.uk']}/docs/1",  # another host of example.co.uk
            f"{at['other.co.uk']}/docs/2",  # another site under the same public suffix
            "/docs/3",
            "/docs/old/4",  # allowed, and denied: deny wins
            "/blog/5",  # matches no allow pattern
            f"{at['example.co.uk']}/docs/6",
        ]
        site.pages["/list"] = "".join(f"<a href='{href}'>x</a>" for href in links)
        site.pages.update({f"/docs/{i}": "<p>doc</p>" for i in (1, 2, 3, 6)} | {"/docs/old/4": "", "/blog/5": ""})
        status = await crawl_to_completion(
            settings, at["a.example.co.uk"] + "/list", scope="domain", allow=["/docs/"], deny=["/old/"]
        )
        requested = set(site.raw_hits)

    assert status.done and status.discovered == status.stored == 3
    assert status.counters["skipped_scope"] == 3
    port = site.port
    assert requested == {
        (f"a.example.co.uk:{port}", "/list"),
        (f"b.example.co.uk:{port}", "/docs/1"),
        (f"a.example.co.uk:{port}", "/docs/3"),
        (f"example.co.uk:{port}", "/docs/6"),
        # robots.txt, once for each host the crawl requested anything of
        *((f"{host}:{port}", "/robots.txt") for host in ("a.example.co.uk", "b.example.co.uk", "example.co.uk")),
    }
