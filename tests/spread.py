"""One homeserver as three Myelin servers over one PostgreSQL, behind a spreading proxy.

``start_spread`` starts the main process (``start``) and two workers named ``sync``
and ``client`` (``start_worker``, as ``myelin run --worker``). They run in the test
process (so a test may still look at ``server.hs``, the main one's), but each has its
own database pool, caches, notifier and signal-bus connection: all they share is
PostgreSQL, as separate processes would (tests/integration/test_spread.py also runs
the same proxy in front of three real ``myelin run`` processes). In front of them,
``SpreadProxy`` is a tiny reverse proxy on 127.0.0.1 that sends each request to one
of the three at random, from a seed it reports, so a client's next request,
long-poll or retry usually lands on another process.

The ``make_server`` fixture (tests/conftest.py) returns such a server as the first
server of every test marked ``@pytest.mark.spread`` in its ``processes=3`` variant
(PostgreSQL only); further servers of the test (federation peers) stay single-process.
"""

from __future__ import annotations

import os
import random
import zlib
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from homeserver.app import RunningServer, start, start_worker
from homeserver.config import Config

WORKERS = ("sync", "client")
# Headers that describe one hop, not the message: never forwarded.
HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "host",
        "upgrade",
    }
)
MAX_BODY_BYTES = 256 * 1024 * 1024


def seed_for(test_id: str) -> int:
    """``MYELIN_SPREAD_SEED`` if set, else one derived from the test's id (stable)."""
    given = os.environ.get("MYELIN_SPREAD_SEED")
    return int(given) if given else zlib.crc32(test_id.encode())


class SpreadProxy:
    """Forwards each request to a random upstream (seeded); long-polls wait as long as
    the upstream does."""

    def __init__(self, upstreams: dict[str, str], seed: int) -> None:
        self.upstreams = upstreams
        self.seed = seed
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> int:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1])
        return self.port

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        name = self.rng.choice(sorted(self.upstreams))
        self.counts[name] += 1
        target = URL(self.upstreams[name] + request.raw_path, encoded=True)
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in HOP_HEADERS
        )
        body = await request.read()
        async with self._session.request(
            request.method, target, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            data = await upstream.read()
            out = CIMultiDict(
                (k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS
            )
            return web.Response(status=upstream.status, body=data, headers=out)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


@dataclass
class SpreadServer(RunningServer):
    """A ``RunningServer`` whose ``client_url`` is the spreading proxy; ``hs`` and the
    federation listener are the main process's."""

    workers: list[RunningServer] = field(default_factory=list)
    proxy: SpreadProxy | None = None

    async def stop(self) -> None:
        if self.proxy is not None:
            await self.proxy.stop()
        for worker in self.workers:
            await worker.stop()
        await super().stop()


async def start_spread(config: Config, seed: int) -> SpreadServer:
    """Main plus the ``sync`` and ``client`` workers of ``config`` (which must declare
    them), and the proxy in front of all three."""
    main = await start(config)
    workers: list[RunningServer] = []
    proxy: SpreadProxy | None = None
    try:
        for name in WORKERS:
            workers.append(await start_worker(config, name))
        upstreams = {"main": main.client_url}
        upstreams.update({n: w.client_url for n, w in zip(WORKERS, workers, strict=True)})
        proxy = SpreadProxy(upstreams, seed)
        port = await proxy.start()
    except BaseException:
        if proxy is not None:
            await proxy.stop()
        for worker in workers:
            await worker.stop()
        await main.stop()
        raise
    print(f"spread server: seed {seed} (MYELIN_SPREAD_SEED), upstreams {upstreams}")
    return SpreadServer(
        main.hs,
        main.runners,
        port,
        main.federation_port,
        main.metrics_port,
        workers=workers,
        proxy=proxy,
    )
