"""A deterministic paginated JSON API on loopback, for the collector's tests, demo and benchmark.

The web pipeline has `tests.servers.site`; the API collector needs the other classic shape of fan-out
work: a paginated listing of objects, each needing two more calls (the object, its details).
Every response here is a pure function of an `ApiSiteConfig` and an id, so tests can compute what
a collection must store (`object_ids`, `flaky_ids`, `missing_ids`) and check it against what the
server saw (`ApiSite.hits`, `ApiSite.calls`, `ApiSite.max_item_in_flight`, `ApiSite.overlapped`).

    GET /api/items?page=N         {"items": [{"id": 17, "url": "/api/items/17"}, ...],
                                   "page": N, "next": "/api/items?page=N+1" or null}
    GET /api/items/{id}           the object: name, category, price, tags, a long description
    GET /api/items/{id}/details   its details: reviews (rating, text), stock per warehouse...

Each endpoint has its own latency (a seeded lognormal around its median), bodies are rendered
once and kept, and a share of objects misbehave: flaky ones answer 503 to their first object
request, missing ones are listed but answer 404 (deleted between listing and fetching).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.servers.loopback import LoopbackSite, ThreadedServer, serve_from_command_line

JSON = "application/json"
LIST_PATH = "/api/items"
Endpoint = Literal["list", "object", "details"]

_WORDS = tuple(
    """able acoustic adjustable aluminium amber angle arc balance battery bearing bench blade bolt
    brass bright bristle brush buckle cable canvas carbon casing cedar ceramic charge clamp clear
    coil compact copper cord cotton crisp cushion dense drawer durable edge elastic enamel even
    fabric fine finish firm flat flexible foam folding frame gauge glass grip handle hardy heavy
    hinge hollow hook indoor iron joint knob label layer leather lens lever light linen lock
    loop magnet matte mesh metal mount narrow nozzle oak outdoor padded panel pivot plate pocket
    polished portable pouch precise quiet rack rapid rigid robust rubber sealed sharp shelf sleeve
    slim smooth socket solid spring stable steel sturdy surface switch tape thread tight timber
    tough tray trigger valve velvet warm washable wheel wide wire wool woven zinc zipper""".split()
)
_OPINIONS = tuple(
    """great awful works broke arrived late early cheap pricey recommend return again gift daughter
    son garden kitchen office weekend daily months weeks still fine happy disappointed expected
    better worse instructions easy hard assemble packaging damaged perfect okay solid flimsy value
    quality support replaced refund colour size smaller bigger heavier lighter noisy silent""".split()
)
_CATEGORIES = ("tools", "garden", "kitchen", "outdoor", "office", "lighting", "storage", "textiles")
_TAGS = ("new", "sale", "eco", "bestseller", "limited", "refurbished", "bundle", "imported", "handmade")
_WAREHOUSES = ("ams", "dub", "fra", "mad", "waw")
_EPOCH = 1_700_000_000
_DUPLICATE_REVIEW_RATE = 0.08  # copy-pasted five-star reviews, for the cruncher to find


@dataclass(frozen=True)
class ApiSiteConfig:
    """Shape, speed and misbehaviour of the API; equal configs serve identical APIs."""

    pages: int = 20
    per_page: int = 100
    list_latency_ms: float = 40.0
    object_latency_ms: float = 30.0
    details_latency_ms: float = 50.0
    latency_sigma: float = 0.3
    error_rate: float = 0.0
    missing_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pages < 1 or self.per_page < 1:
            raise ValueError("pages >= 1 and per_page >= 1 required")
        if min(self.list_latency_ms, self.object_latency_ms, self.details_latency_ms, self.latency_sigma) < 0:
            raise ValueError("latencies and latency_sigma must be >= 0")
        if min(self.error_rate, self.missing_rate) < 0 or self.error_rate + self.missing_rate > 1:
            raise ValueError("error_rate and missing_rate must be >= 0 and sum to at most 1")

    @property
    def objects(self) -> int:
        return self.pages * self.per_page

    def latency_ms(self, endpoint: Endpoint) -> float:
        return {"list": self.list_latency_ms, "object": self.object_latency_ms, "details": self.details_latency_ms}[
            endpoint
        ]


def object_ids(config: ApiSiteConfig) -> range:
    """Every id the listing carries: page N holds ids (N-1)*per_page+1 to N*per_page."""
    return range(1, config.objects + 1)


def object_path(object_id: int) -> str:
    return f"{LIST_PATH}/{object_id}"


def list_path(page: int) -> str:
    return f"{LIST_PATH}?page={page}"


def flaky_ids(config: ApiSiteConfig) -> frozenset[int]:
    """Objects whose first object request answers 503 (and every later one 200)."""
    return _faults(config)[1]


def missing_ids(config: ApiSiteConfig) -> frozenset[int]:
    """Objects that are listed but whose object and details requests always answer 404."""
    return _faults(config)[0]


def _faults(config: ApiSiteConfig) -> tuple[frozenset[int], frozenset[int]]:
    # One shuffle for both sets keeps them disjoint.
    order = list(object_ids(config))
    random.Random(f"{config.seed}:faults").shuffle(order)
    n_missing = round(config.objects * config.missing_rate)
    n_flaky = round(config.objects * config.error_rate)
    return frozenset(order[:n_missing]), frozenset(order[n_missing : n_missing + n_flaky])


def render_list(config: ApiSiteConfig, page: int) -> dict[str, Any]:
    first = (page - 1) * config.per_page + 1
    ids = range(first, first + config.per_page)
    return {
        "items": [{"id": i, "url": object_path(i)} for i in ids],
        "page": page,
        "next": list_path(page + 1) if page < config.pages else None,
    }


def _sentences(rng: random.Random, vocabulary: Sequence[str], words: int) -> str:
    parts: list[str] = []
    while words > 0:
        length = min(words, rng.randint(6, 16))
        sentence = rng.choices(vocabulary, k=length)
        parts.append(" ".join([sentence[0].capitalize(), *sentence[1:]]) + ".")
        words -= length
    return " ".join(parts)


def render_object(config: ApiSiteConfig, object_id: int) -> dict[str, Any]:
    """The object: a few fields to index on and a description of a few hundred words."""
    rng = random.Random(f"{config.seed}:object:{object_id}")
    return {
        "id": object_id,
        "name": " ".join(w.capitalize() for w in rng.sample(_WORDS, 3)),
        "category": rng.choice(_CATEGORIES),
        "price": round(rng.uniform(2, 500), 2),
        "currency": "EUR",
        "tags": sorted(rng.sample(_TAGS, rng.randint(1, 4))),
        "created_at": _EPOCH + object_id * 3_600,
        "description": _sentences(rng, _WORDS, rng.randint(200, 400)),
        "details": object_path(object_id) + "/details",
    }


def render_details(config: ApiSiteConfig, object_id: int) -> dict[str, Any]:
    """The details: reviews (a few copied word for word, as review spam is) and stock levels."""
    rng = random.Random(f"{config.seed}:details:{object_id}")
    reviews: list[dict[str, Any]] = []
    for _ in range(rng.randint(0, 30)):
        if reviews and rng.random() < _DUPLICATE_REVIEW_RATE:
            text, rating = rng.choice(reviews)["text"], 5
        else:
            text = _sentences(rng, _OPINIONS + _WORDS, rng.randint(15, 80))
            rating = rng.choices((1, 2, 3, 4, 5), weights=(1, 1, 2, 4, 4))[0]
        reviews.append({"rating": rating, "text": text, "author": f"user{rng.randint(1, 99_999)}"})
    return {
        "id": object_id,
        "reviews": reviews,
        "stock": {w: rng.randint(0, 40) for w in _WAREHOUSES},
        "weight_kg": round(rng.uniform(0.05, 30), 2),
        "dimensions_cm": [rng.randint(2, 120) for _ in range(3)],
    }


def _encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


class ApiSite(LoopbackSite):
    """The API as an aiohttp server, plus counters of what clients asked for.

    `hits` is keyed by path and query as requested; `calls` by endpoint. `max_item_in_flight`
    counts object and details requests being served at once, and `overlapped` holds the ids
    whose object and details requests were in flight together: what a collector that makes the
    two calls concurrently shows and one that makes them in turn never does.
    """

    def __init__(self, config: ApiSiteConfig | None = None) -> None:
        super().__init__()
        self.config = config or ApiSiteConfig()
        self.hits: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.item_in_flight = 0
        self.max_item_in_flight = 0
        self.overlapped: set[int] = set()
        self._serving: Counter[tuple[Endpoint, int]] = Counter()
        self._missing, self._flaky = _faults(self.config)
        self._flaked: set[int] = set()
        self._bodies: dict[tuple[Endpoint, int], bytes] = {}

    @property
    def list_url(self) -> str:
        """Where a collection starts: the first list page."""
        return self.base_url + LIST_PATH

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._track])
        app.router.add_get(LIST_PATH, self._list)
        app.router.add_get(LIST_PATH + r"/{id:[1-9]\d*}", self._object)  # one spelling per object
        app.router.add_get(LIST_PATH + r"/{id:[1-9]\d*}/details", self._details)
        return app

    @web.middleware
    async def _track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.hits[request.path_qs] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1

    @contextlib.asynccontextmanager
    async def _serve(self, endpoint: Endpoint, key: int) -> AsyncIterator[None]:
        """Count the call and hold it in flight for the endpoint's latency."""
        self.calls[endpoint] += 1
        item = endpoint != "list"
        if item:
            other: Endpoint = "details" if endpoint == "object" else "object"
            if self._serving[(other, key)]:
                self.overlapped.add(key)
            self._serving[(endpoint, key)] += 1
            self.item_in_flight += 1
            self.max_item_in_flight = max(self.max_item_in_flight, self.item_in_flight)
        try:
            await self._delay(endpoint, key)
            yield
        finally:
            if item:
                self._serving[(endpoint, key)] -= 1
                if not self._serving[(endpoint, key)]:
                    del self._serving[(endpoint, key)]
                self.item_in_flight -= 1

    async def _delay(self, endpoint: Endpoint, key: int) -> None:
        median = self.config.latency_ms(endpoint) / 1000
        if median > 0:
            # Seeded by the request's target, not by arrival order: the same call always takes
            # about as long, whatever the client's concurrency.
            rng = random.Random(f"{self.config.seed}:latency:{endpoint}:{key}")
            await asyncio.sleep(rng.lognormvariate(math.log(median), self.config.latency_sigma))

    def _body(self, endpoint: Endpoint, key: int) -> web.Response:
        body = self._bodies.get((endpoint, key))
        if body is None:
            render = {"list": render_list, "object": render_object, "details": render_details}[endpoint]
            body = self._bodies[(endpoint, key)] = _encode(render(self.config, key))
        return web.Response(body=body, content_type=JSON)

    async def _list(self, request: web.Request) -> web.Response:
        raw = request.query.get("page", "1")
        page = int(raw) if raw.isdigit() else 0
        if not 1 <= page <= self.config.pages:
            return _error(404, "no such page")
        async with self._serve("list", page):
            return self._body("list", page)

    async def _object(self, request: web.Request) -> web.Response:
        object_id = int(request.match_info["id"])
        if object_id > self.config.objects:
            return _error(404, "no such object")
        async with self._serve("object", object_id):
            if object_id in self._missing:
                return _error(404, "object deleted")
            if object_id in self._flaky and object_id not in self._flaked:
                self._flaked.add(object_id)
                return _error(503, "try again")
            return self._body("object", object_id)

    async def _details(self, request: web.Request) -> web.Response:
        object_id = int(request.match_info["id"])
        if object_id > self.config.objects:
            return _error(404, "no such object")
        async with self._serve("details", object_id):
            if object_id in self._missing:
                return _error(404, "object deleted")
            return self._body("details", object_id)


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=_encode({"error": message}), content_type=JSON)


class ThreadedApiSite(ThreadedServer[ApiSite]):
    """An `ApiSite` on its own event loop in a daemon thread.

    Serving the API on its own loop keeps its CPU cost out of the latency of the collector under
    test, and gives synchronous callers an API without a loop.
    """

    thread_name = "api-site"

    def __init__(self, config: ApiSiteConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(ApiSite(config), host, port)

    @property
    def list_url(self) -> str:
        return self.site.list_url


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point: serve the API until interrupted."""
    serve_from_command_line(
        argv,
        prog="python -m tests.servers.api_site",
        description="Serve the synthetic paginated JSON API until interrupted.",
        config_type=ApiSiteConfig,
        make_site=ApiSite,
        announce=lambda site, url: (
            f"Serving {site.config.objects} objects on {site.config.pages} pages at {site.list_url}"
        ),
        default_port=8081,
    )


if __name__ == "__main__":
    main()
