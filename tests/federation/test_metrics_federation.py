"""Metrics across two real servers: remote events and inbound transactions are counted."""

from __future__ import annotations

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, q, register, send_text, settle
from tests.integration.test_observability import Samples, scrape, value


def _sum(samples: Samples, metric: str, **labels: str) -> float:
    """Sum over the series of ``metric`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == metric and wanted <= ls)


async def test_remote_events_and_inbound_transactions(make_server: ServerFactory) -> None:
    metrics = {"enabled": True, "port": 0}
    a: RunningServer = await make_server(federated=True, metrics=metrics)
    b: RunningServer = await make_server(federated=True, metrics=metrics)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    try:
        r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
        room_id = r.body["room_id"]
        r = await api_b.post(
            f"/join/{q(room_id)}?server_name={q(name(a))}", {}, token=bob.access_token
        )
        assert r.status == 200, r.body
        await settle(a, b)
        _, before = await scrape(b)
        await send_text(api_a, alice, room_id, "hello over there")
        await settle(a, b)
        _, after = await scrape(b)
    finally:
        await api_a.__aexit__(None, None, None)
        await api_b.__aexit__(None, None, None)
    remote = "myelin_events_persisted_total"
    assert value(after, remote, origin="remote") == value(before, remote, origin="remote") + 1
    # B's federation listener counted A's transaction(s) under the route pattern.
    txns = dict(listener="federation", route="/_matrix/federation/v1/send/{txnId}")
    sent = _sum(after, "myelin_http_requests_total", status_class="2xx", **txns)
    assert sent > _sum(before, "myelin_http_requests_total", status_class="2xx", **txns)
    # A sent it: nothing left in its outbox, no failures.
    _, a_samples = await scrape(a)
    assert value(a_samples, "myelin_federation_outbox_depth", kind="pdu") == 0
    assert _sum(a_samples, "myelin_federation_send_failures_total") == 0
