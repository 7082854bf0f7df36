"""A crawl's HTTP options: headers, cookies, basic auth, User-Agent and proxies, sent with every
request it makes and never shown (status, the dashboard, logs and exports see them redacted),
and the SSRF guard's part when a proxy resolves the hosts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.api import Pipeline
from pipeline.crawl.options import CrawlOptions
from pipeline.dashboard.data import RateHistory, crawl_breakdown, crawl_detail
from pipeline.download.crawl_requests import CrawlRequests
from pipeline.download.fetcher import Fetcher, create_session
from pipeline.download.host_limits import AdaptiveLimiter, AdaptiveSettings
from pipeline.download.http_options import redact_options, redact_url
from pipeline.download.ssrf_guard import GuardedResolver
from pipeline.errors import ConfigError, FetchError
from pipeline.settings import Settings
from tests.helpers import (
    StaticSite,
    crawl_to_completion,
    resolve_to_loopback,
    run_burst_worker,
    run_cli,
    service_env,
)
from tests.servers.proxy import ForwardingProxy, basic


def test_credentials_are_hidden_and_the_rest_kept() -> None:
    options = CrawlOptions.build(
        "http://example.com/",
        Settings(),
        headers={"Accept-Language": "fr", "X-Auth-Token": "Bearer t0ken", "X-Api-Key": "k3y"},
        cookies={"session": "s3cret"},
        auth="alice:pa55word",
        proxies=["http://bob:pr0xy@127.0.0.1:3128", "http://127.0.0.1:3129"],
    )
    shown = redact_options(options.to_dict())
    text = repr(shown)
    for secret in ("t0ken", "k3y", "s3cret", "pa55word", "pr0xy"):
        assert secret not in text
    assert shown["headers"]["Accept-Language"] == "fr"
    assert shown["auth"] == "alice:***"
    assert shown["proxies"] == ["http://bob:***@127.0.0.1:3128", "http://127.0.0.1:3129"]
    assert shown["cookies"] == {"session": "***"}


@given(st.text(alphabet="abcXYZ019-._~", min_size=1, max_size=12))
def test_a_proxy_password_never_survives(password: str) -> None:
    shown = redact_url(f"http://user:pw-{password}@proxy.internal:3128")
    assert f"pw-{password}" not in shown and shown == "http://user:***@proxy.internal:3128"


# What a crawl adds to its requests, worked out once (pure).


def _requests(**given: Any) -> CrawlRequests:
    built = CrawlRequests.build(CrawlOptions.build("http://example.com/", Settings(), **given))
    assert built is not None
    return built


def test_a_crawl_without_http_options_uses_the_worker_defaults() -> None:
    assert CrawlRequests.build(CrawlOptions.build("http://example.com/", Settings())) is None


def test_headers_cookies_auth_and_agent_become_one_header_dict() -> None:
    requests = _requests(
        headers={"Accept-Language": "fr", "X-Api-Key": "k3y"},
        cookies={"session": "s3cret", "theme": "dark"},
        auth="alice:pa55word",
        user_agent="acme-bot/2.0 (+https://acme.test/bot)",
    )
    way = requests.next_way()
    assert way.proxy is None and way.connect_headers is None
    assert (
        way.http_same
        == way.https_same
        == {
            "Accept-Language": "fr",
            "X-Api-Key": "k3y",
            "User-Agent": "acme-bot/2.0 (+https://acme.test/bot)",
            "Cookie": "session=s3cret; theme=dark",
            "Authorization": basic("alice", "pa55word"),
        }
    )
    # Another origin (a redirect elsewhere) gets no credential: no auth, cookie or key.
    assert (
        way.http_other
        == way.https_other
        == {
            "Accept-Language": "fr",
            "User-Agent": "acme-bot/2.0 (+https://acme.test/bot)",
        }
    )
    assert requests.robots_token == "acme-bot"
    assert requests.next_way() is way  # no proxies: one way, nothing turns


def test_proxies_are_taken_in_turn_their_credentials_going_to_the_proxy_only() -> None:
    requests = _requests(
        proxies=["http://bob:pr0xy@10.0.0.5:3128", "https://proxy.test:8443"], headers={"Accept-Language": "fr"}
    )
    first, second, third = requests.next_way(), requests.next_way(), requests.next_way()
    assert third is first and second is not first
    assert str(first.proxy) == "http://10.0.0.5:3128"  # no userinfo left in what aiohttp sees
    assert str(second.proxy) == "https://proxy.test:8443" and second.connect_headers is None
    credentials = {"Proxy-Authorization": basic("bob", "pr0xy")}
    # http:// target: the request itself goes to the proxy, so it carries them; https:// target:
    # they go on the CONNECT, never inside the tunnel to the site.
    assert first.http_same == first.http_other == {"Accept-Language": "fr", **credentials}
    assert first.https_same == first.https_other == {"Accept-Language": "fr"}
    assert first.connect_headers == credentials
    assert requests.proxy_hosts == {"10.0.0.5", "proxy.test"} and requests.proxied


def test_the_turn_belongs_to_each_crawl() -> None:
    proxies = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    one, other = _requests(proxies=proxies), _requests(proxies=proxies)
    assert one.next_way().proxy == other.next_way().proxy  # neither moved the other's turn


def test_messages_are_scrubbed_of_every_credential() -> None:
    requests = _requests(
        headers={"Authorization-Token": "t0ken"},
        cookies={"session": "c00kie"},
        proxies=["http://bob:pr%40xy@127.0.0.1:3128"],
    )
    message = (
        "connection error: Cannot connect via http://bob:pr%40xy@127.0.0.1:3128 (bob:pr@xy) "
        f"with t0ken, session=c00kie, {basic('bob', 'pr@xy')}"
    )
    shown = requests.scrub(message)
    for secret in ("pr%40xy", "pr@xy", "t0ken", "c00kie", basic("bob", "pr@xy")):
        assert secret not in shown
    assert shown.startswith("connection error: Cannot connect via ***")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"auth": "a:b", "headers": {"Authorization": "Bearer x"}}, "auth: give basic auth as auth or"),
        ({"cookies": {"a": "b"}, "headers": {"Cookie": "c=d"}}, "cookies: give cookies as cookies or"),
        ({"headers": {"Proxy-Authorization": "Basic eA=="}}, "give a proxy's credentials in its URL"),
    ],
)
def test_one_source_per_credential(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CrawlOptions.build("http://example.com/", Settings(), **given)


# End to end: real sockets, real proxies, real workers.

SECRETS = ("pa55-secret", "c00kie-secret", "k3y-secret", "pr0xyA-secret", "pr0xyB-secret")
AGENT = "acme-bot/2.0 (+http://acme.test/bot)"


def _leaks(text: str) -> list[str]:
    encoded = [basic("alice", "pa55-secret"), basic("pa", "pr0xyA-secret"), basic("pb", "pr0xyB-secret")]
    return [secret for secret in (*SECRETS, *encoded) if secret in text]


@pytest.mark.slow
async def test_a_crawl_sends_its_http_options_through_its_proxies_and_shows_no_secret(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pipeline")
    children = "".join(f'<a href="/p/{n}">{n}</a>' for n in range(6))
    pages: dict[str, str | tuple[bytes, str]] = {
        "/list": f'<html><body>{children}<a href="/private/x">x</a></body></html>',
        **{f"/p/{n}": f"<html><head><title>{n}</title></head><body>page {n}</body></html>" for n in range(6)},
        "/private/x": "<html><body>only for others</body></html>",
        # The crawl's own agent is kept out of /private/; the worker's (`pipeline`) is not.
        "/robots.txt": (b"User-agent: acme-bot\nDisallow: /private/\n\nUser-agent: *\nAllow: /\n", "text/plain"),
    }
    async with (
        StaticSite(pages) as site,
        ForwardingProxy(user="pa", password="pr0xyA-secret") as first,
        ForwardingProxy(user="pb", password="pr0xyB-secret") as second,
    ):
        options = {
            "headers": {"Accept-Language": "fr", "X-Api-Key": "k3y-secret"},
            "cookies": {"session": "c00kie-secret"},
            "auth": "alice:pa55-secret",
            "user_agent": AGENT,
            "proxies": [first.url(), second.url()],
        }
        status = await crawl_to_completion(settings, site.base_url + "/list", **options)
        async with Pipeline(settings) as pipeline:
            detail = await crawl_detail(pipeline, status.crawl_id, RateHistory())
            breakdown = await crawl_breakdown(pipeline, status.crawl_id)
            pages_stored = await pipeline.pages(status.crawl_id)
            record = await pipeline.control.store.get_crawl(status.crawl_id)
        shown = await asyncio.to_thread(run_cli, "status", status.crawl_id, "--json", env=service_env(settings))

    assert status.done and status.stored == 6 and status.skipped_robots == 1
    # Every request the crawl made (robots.txt, the list page, the children) carried its options.
    assert {path for path, _ in site.seen} == {"/robots.txt", "/list", *(f"/p/{n}" for n in range(6))}
    for path, headers in site.seen:
        assert headers["user-agent"] == AGENT, path
        assert headers["authorization"] == basic("alice", "pa55-secret"), path
        assert headers["cookie"] == "session=c00kie-secret", path
        assert headers["accept-language"] == "fr" and headers["x-api-key"] == "k3y-secret", path
        assert "proxy-authorization" not in headers, path  # the proxies kept their credentials
    # Both proxies were used, one request each in turn, each with its own credentials.
    assert first.forwarded and second.forwarded
    assert len(first.forwarded) + len(second.forwarded) == len(site.seen)
    assert abs(len(first.forwarded) - len(second.forwarded)) <= 2
    assert first.refused == second.refused == 0
    assert set(first.credentials_seen) == {basic("pa", "pr0xyA-secret")}
    assert set(second.credentials_seen) == {basic("pb", "pr0xyB-secret")}

    # Workers need the real values: the record keeps them. Nothing that is shown does.
    assert record is not None and record["options"]["auth"] == "alice:pa55-secret"
    assert shown.returncode == 0, shown.stderr
    as_json = json.loads(shown.stdout)
    assert as_json["options"]["auth"] == "alice:***"
    assert as_json["options"]["headers"] == {"Accept-Language": "fr", "X-Api-Key": "***"}
    assert as_json["options"]["user_agent"] == AGENT
    assert as_json["options"]["proxies"] == [
        first.url().replace("pr0xyA-secret", "***"),
        second.url().replace("pr0xyB-secret", "***"),
    ]
    assert _leaks(shown.stdout + shown.stderr) == []
    assert _leaks(json.dumps(status.to_dict())) == []
    assert breakdown["options"]["auth"] == "alice:***" and breakdown["options"]["cookies"] == "session=***"
    assert _leaks(json.dumps([detail, breakdown], default=str)) == []
    assert _leaks(repr(pages_stored)) == []  # what exports are made of
    assert caplog.records and _leaks(caplog.text) == []


async def test_crawls_do_not_share_cookies(settings: Settings) -> None:
    """Two crawls on one worker, the site setting a cookie on every answer: each crawl's
    requests carry its own cookies and nothing else, and a crawl without any sends none."""
    pages: dict[str, str | tuple[bytes, str]] = {}
    for name in ("a", "b", "c"):
        links = "".join(f'<a href="/{name}/{n}">{n}</a>' for n in range(4))
        pages[f"/{name}/list"] = f"<html><body>{links}</body></html>"
        pages.update({f"/{name}/{n}": f"<html><body>{name} {n}</body></html>" for n in range(4)})
    async with StaticSite(pages, set_cookie="tracker=from-the-site; Path=/") as site, Pipeline(settings) as pipeline:
        ids = [
            await pipeline.crawl(site.base_url + "/a/list", cookies={"who": "crawl-a"}),
            await pipeline.crawl(site.base_url + "/b/list", cookies={"who": "crawl-b", "extra": "1"}),
            await pipeline.crawl(site.base_url + "/c/list"),
        ]
        await run_burst_worker(settings)
        statuses = [await pipeline.status(crawl_id) for crawl_id in ids]
    assert all(s.done and s.stored == 4 for s in statuses)
    sent: dict[str, set[str | None]] = {"a": set(), "b": set(), "c": set()}
    for path, headers in site.seen:
        if path != "/robots.txt":
            sent[path.split("/")[1]].add(headers.get("cookie"))
    assert sent == {"a": {"who=crawl-a"}, "b": {"who=crawl-b; extra=1"}, "c": {None}}


async def test_credentials_are_not_sent_to_another_origin_on_a_redirect(settings: Settings) -> None:
    other_pages: dict[str, str | tuple[bytes, str]] = {"/landing": "<html><body>landed</body></html>"}
    async with StaticSite(other_pages) as other:
        pages: dict[str, str | tuple[bytes, str]] = {
            "/list": '<html><body><a href="/moved">m</a><a href="/here">h</a></body></html>',
            "/here": "<html><body>here</body></html>",
        }
        async with StaticSite(pages, redirects={"/moved": other.base_url + "/landing"}) as site:
            status = await crawl_to_completion(
                settings,
                site.base_url + "/list",
                headers={"Accept-Language": "fr", "X-Session-Token": "t0ken"},
                cookies={"session": "c00kie"},
                auth="alice:pa55word",
                user_agent=AGENT,
            )
    assert status.done and status.stored == 2
    for _, headers in site.seen:
        assert headers["authorization"] == basic("alice", "pa55word") and headers["cookie"] == "session=c00kie"
    landed = [headers for path, headers in other.seen if path == "/landing"]
    assert landed, other.seen
    for headers in landed:
        assert headers["user-agent"] == AGENT and headers["accept-language"] == "fr"
        assert not {"authorization", "cookie", "x-session-token"} & set(headers)


# The SSRF guard through a proxy: what can still be checked here.


@contextlib.asynccontextmanager
async def _fetcher(
    settings: Settings, allow_private: bool = False, **options: Any
) -> AsyncIterator[tuple[Fetcher, Fetcher]]:
    """The worker's fetcher and a crawl's view of it (by default, refusing private networks)."""
    fetch = settings.replace(fetch={"allow_private_networks": allow_private, "obey_robots": False}).fetch
    guard = GuardedResolver(allow_private)
    session = create_session(fetch, guard)
    limiter = AdaptiveLimiter(4, AdaptiveSettings(min_limit=2, max_limit=4, initial_limit=2))
    try:
        fetcher = Fetcher(session, limiter, fetch, guard=guard)
        http = CrawlRequests.build(CrawlOptions.build("http://example.com/", Settings(), **options))
        yield fetcher, fetcher.for_crawl(http)
    finally:
        await limiter.close()
        await session.close()


def _names(monkeypatch: pytest.MonkeyPatch, *, loopback: tuple[str, ...], unknown: tuple[str, ...]) -> None:
    """`loopback` names resolve here to 127.0.0.1; `unknown` ones do not resolve here at all."""
    resolve_to_loopback(monkeypatch, *loopback)
    patched = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name.lower() in unknown:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return patched(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


async def test_through_a_proxy_inward_targets_are_still_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _names(monkeypatch, loopback=("proxy.test", "inward.test"), unknown=("outside.test",))
    pages: dict[str, str | tuple[bytes, str]] = {"/ok": "<html><body>ok</body></html>"}
    async with StaticSite(pages, redirects={"/back-in": "{base}/ok"}) as site:
        port = site.port
        # The proxy resolves names its own way: outside.test is the local site to it.
        async with ForwardingProxy(user="u", password="pw", hosts={"outside.test": "127.0.0.1"}) as proxy:
            # The proxy is named, and that name is private: operator configuration, trusted.
            proxy_url = f"http://u:pw@proxy.test:{proxy.port}"
            async with _fetcher(settings, proxies=[proxy_url]) as (fetcher, crawl):
                # A literal private address, and a name that resolves here to one: refused,
                # never sent to the proxy.
                for url in (f"http://127.0.0.1:{port}/ok", f"http://inward.test:{port}/ok"):
                    with pytest.raises(FetchError, match=r"non-public address 127\.0\.0\.1") as refused:
                        await crawl.get(url)
                    assert not refused.value.retryable
                assert proxy.forwarded == []
                # A name this worker cannot resolve is the proxy's to resolve: what it reaches
                # cannot be known here (see the README), and the request goes through.
                response = await crawl.get(f"http://outside.test:{port}/ok")
                assert response.status == 200 and b"ok" in response.body
                assert proxy.forwarded == [f"http://outside.test:{port}/ok"]
                # Every hop is checked: a redirect to a private address is refused.
                with pytest.raises(FetchError, match="non-public address"):
                    await crawl.get(f"http://outside.test:{port}/back-in")
                assert len(proxy.forwarded) == 2
                # Without the proxy (another crawl), the proxy's own host is no target either.
                with pytest.raises(FetchError, match="non-public address"):
                    await fetcher.get(f"http://proxy.test:{proxy.port}/")
                with pytest.raises(FetchError, match="non-public address"):
                    await fetcher.get(f"http://inward.test:{port}/ok")  # the guard as it always was
    assert proxy.refused == 0


async def test_a_proxy_failure_is_reported_without_its_credentials(settings: Settings) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    async with (
        StaticSite({"/": "<html></html>"}) as site,
        _fetcher(
            settings,
            allow_private=True,
            proxies=[f"http://u:pr0xy-secret@127.0.0.1:{closed}"],
        ) as (_, crawl),
    ):
        with pytest.raises(FetchError) as failed:
            await crawl.get(site.base_url + "/")
    assert failed.value.retryable and "pr0xy-secret" not in failed.value.reason
    assert "connection error" in failed.value.reason
