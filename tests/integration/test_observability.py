"""Metrics, /health and request ids on a real server, scraped and parsed as Prometheus does.

The metrics listener is a separate port (config ``metrics``); its text is
parsed with prometheus_client's own parser, and a scrape after traffic must
show the traffic under the route's pattern, never a concrete room or user id.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from homeserver.app import RunningServer
from tests.conftest import ServerFactory, free_port
from tests.helpers import Api

SEND_ROUTE = "/_matrix/client/v3/rooms/{roomId}/send/{type}/{txnId}"
SYNC_ROUTE = "/_matrix/client/v3/sync"
POLLS = 200  # bounded waits: at most this many short sleeps


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(server: RunningServer) -> tuple[str, Samples]:
    """The metrics text and every sample, keyed by (name, labels)."""
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_parse_and_follow_traffic(make_server: ServerFactory) -> None:
    server = await make_server(metrics={"enabled": True, "port": 0})
    assert server.metrics_port not in (0, server.client_port)
    async with Api(server.client_url) as api:
        _, before = await scrape(server)
        sends = dict(listener="client", method="PUT", route=SEND_ROUTE, status_class="2xx")
        assert value(before, "myelin_http_requests_total", **sends) == 0
        alice = await api.register("alice")
        r = await api.post("/createRoom", {}, token=alice.access_token)
        room_id = r.body["room_id"]
        events_before = value(
            (await scrape(server))[1], "myelin_events_persisted_total", origin="local"
        )
        for txn in ("t1", "t2"):
            r = await api.put(
                f"/rooms/{room_id}/send/m.room.message/{txn}",
                {"msgtype": "m.text", "body": "hello"},
                token=alice.access_token,
            )
            assert r.status == 200, r.body
        text, after = await scrape(server)
    assert value(after, "myelin_http_requests_total", **sends) == 2
    assert value(after, "myelin_events_persisted_total", origin="local") == events_before + 2
    latency = dict(listener="client", method="PUT", route=SEND_ROUTE)
    assert value(after, "myelin_http_request_duration_seconds_count", **latency) == 2
    # Labels hold patterns, never the concrete ids.
    assert room_id not in text and "@alice:localhost" not in text
    # Database pool gauges for this engine; the outbox is empty (no other server).
    engine = server.hs.db.engine
    assert value(after, "myelin_database_connections", engine=engine) >= 1
    assert value(after, "myelin_database_connections_max", engine=engine) >= 1
    for kind in ("pdu", "edu", "to_device"):
        assert ("myelin_federation_outbox_depth", frozenset({("kind", kind)})) in after


async def test_sync_long_polls_are_counted_while_they_wait(make_server: ServerFactory) -> None:
    server = await make_server(metrics={"enabled": True, "port": 0})
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        room_id = (await api.post("/createRoom", {}, token=alice.access_token)).body["room_id"]
        first = await api.get("/sync", token=alice.access_token)
        since = first.body["next_batch"]
        poll = asyncio.create_task(
            api.get("/sync", token=alice.access_token, params={"since": since, "timeout": "60000"})
        )
        waiting = 0.0
        for _ in range(POLLS):
            waiting = value((await scrape(server))[1], "myelin_sync_requests_in_flight")
            if waiting == 1:
                break
            await asyncio.sleep(0.05)
        assert waiting == 1
        r = await api.put(
            f"/rooms/{room_id}/send/m.room.message/wake",
            {"msgtype": "m.text", "body": "wake up"},
            token=alice.access_token,
        )
        assert r.status == 200
        assert (await poll).status == 200
    _, after = await scrape(server)
    assert value(after, "myelin_sync_requests_in_flight") == 0
    synced = dict(listener="client", method="GET", route=SYNC_ROUTE, status_class="2xx")
    assert value(after, "myelin_http_requests_total", **synced) == 2


async def test_send_failures_per_destination_and_outbox_depth(make_server: ServerFactory) -> None:
    server = await make_server(metrics={"enabled": True, "port": 0})
    assert server.hs.federation is not None and server.hs.federation.relay is not None
    # A destination nobody listens on (loopback is allowed by the tests' insecure_local).
    dead = f"127.0.0.1:{free_port()}"
    sender = server.hs.federation.relay.sender
    await sender.enqueue_edu(dead, "m.presence", {"push": []})
    samples: Samples = {}
    for _ in range(POLLS):
        _, samples = await scrape(server)
        if value(samples, "myelin_federation_send_failures_total", destination=dead) >= 1:
            break
        await asyncio.sleep(0.05)
    assert value(samples, "myelin_federation_send_failures_total", destination=dead) >= 1
    # The EDU stays queued for the retry; the destination backs off.
    assert value(samples, "myelin_federation_outbox_depth", kind="edu") == 1
    assert value(samples, "myelin_federation_destinations_backing_off") == 1


async def test_health_on_both_listeners_and_metrics_off_by_default(
    make_server: ServerFactory,
) -> None:
    server = await make_server(metrics={"enabled": True, "port": 0})
    plain = await make_server()
    assert plain.metrics_port == 0
    # Off, nothing is counted at all (prometheus_client is not even loaded for it).
    assert plain.hs.metrics is None and server.hs.metrics is not None
    async with aiohttp.ClientSession() as session:
        for url in (
            f"{server.client_url}/health",
            f"http://127.0.0.1:{server.metrics_port}/health",
            f"{plain.client_url}/health",
        ):
            async with session.get(url) as resp:
                assert resp.status == 200, url
                assert await resp.text() == "OK"
        # The client listener never serves metrics.
        async with session.get(f"{server.client_url}/metrics") as resp:
            assert resp.status == 404
            assert (await resp.json())["errcode"] == "M_UNRECOGNIZED"


async def test_every_response_names_its_request(api: Api) -> None:
    ids: set[Any] = set()
    for _ in range(3):
        r = await api.get("/_matrix/client/versions")
        assert r.status == 200
        ids.add(r.headers["X-Request-Id"])
    assert len(ids) == 3 and all(len(i) == 12 for i in ids)
