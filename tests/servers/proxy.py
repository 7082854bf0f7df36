"""A forwarding HTTP proxy for tests: absolute-form requests to `http://` targets, on loopback.

A client sends it `GET http://site/path HTTP/1.1`; it checks `Proxy-Authorization` when it was
given credentials (407 otherwise), drops that header and the hop-by-hop ones, and forwards the
request to the site with a client of its own, redirects not followed, the body as it came.
`hosts` is its own name table (a name the test's worker cannot resolve can reach the local site
through it, as through a proxy with its own DNS). It counts what it passed and what it refused.

`CONNECT` (tunnels for `https://` targets) is not implemented: it answers 501.
"""

from __future__ import annotations

import base64
from types import TracebackType

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

# RFC 9110 7.6.1, and what a proxy must not pass on.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


class ForwardingProxy:
    """`async with ForwardingProxy(user="u", password="p") as proxy:` then `proxy.url(with_credentials=True)`."""

    def __init__(
        self, *, user: str | None = None, password: str | None = None, hosts: dict[str, str] | None = None
    ) -> None:
        self.user = user
        self.password = password
        self.hosts = {name.lower(): address for name, address in (hosts or {}).items()}
        self.forwarded: list[str] = []  # the absolute URLs passed on, in order
        self.refused = 0  # requests without the right credentials
        self.credentials_seen: list[str | None] = []  # the Proxy-Authorization of each request
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    def url(self, *, with_credentials: bool = True) -> str:
        userinfo = f"{self.user}:{self.password}@" if with_credentials and self.user is not None else ""
        return f"http://{userinfo}127.0.0.1:{self.port}"

    def _authorised(self, header: str | None) -> bool:
        if self.user is None:
            return True
        return header == basic(self.user, self.password or "")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "CONNECT":
            return web.Response(status=501, text="CONNECT is not implemented by this test proxy")
        target = request.url if request.raw_path.startswith("http://") else None
        if target is None:
            return web.Response(status=400, text="a proxy expects an absolute-form request target")
        header = request.headers.get("Proxy-Authorization")
        self.credentials_seen.append(header)
        if not self._authorised(header):
            self.refused += 1
            return web.Response(status=407, headers={"Proxy-Authenticate": 'Basic realm="test proxy"'})
        self.forwarded.append(str(target))
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP)
        upstream = URL(request.raw_path, encoded=True)
        address = self.hosts.get((upstream.host or "").lower())
        if address is not None:
            upstream = upstream.with_host(address)  # the Host header still names the site
        assert self._client is not None
        try:
            async with self._client.request(
                request.method, upstream, headers=headers, data=await request.read(), allow_redirects=False
            ) as answer:
                body = await answer.read()
                kept = CIMultiDict((k, v) for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP)
                return web.Response(status=answer.status, body=body, headers=kept)
        except (aiohttp.ClientError, OSError) as exc:
            return web.Response(status=502, text=f"bad gateway: {type(exc).__name__}")

    async def __aenter__(self) -> ForwardingProxy:
        # The proxy's own client: no compression of its own, cookies and redirects left alone.
        self._client = aiohttp.ClientSession(
            auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent",)
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()


def basic(user: str, password: str) -> str:
    """The `Authorization` / `Proxy-Authorization` value of basic auth, as the test expects it."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
