"""A peer restart in the middle of a conversation: three real servers, one room.

C is stopped while A and B keep talking; the PDUs for C wait in A's and B's
persisted outboxes (retried with back-off). When C comes back on the same
data, the outboxes catch up and C's users see every message they missed, in
order, both in /messages and in an incremental /sync.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import RestartFn, ServerFactory
from tests.federation.fedutil import FAST_RETRY, eventually
from tests.federation.rooms_support import (
    name,
    q,
    register,
    send_text,
    settle,
    timeline_bodies,
    timeline_sync,
)
from tests.helpers import Api


def messages_in(body: dict[str, Any], room_id: str) -> list[str]:
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return [
        e["content"].get("body")
        for e in room.get("timeline", {}).get("events", [])
        if e["type"] == "m.room.message"
    ]


async def test_peer_restart_catches_up_everything_it_missed(
    make_server: ServerFactory, restart_server: RestartFn
) -> None:
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, **FAST_RETRY)
    c = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    api_c, carol = await register(c, "carol")
    r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    for api, user in ((api_b, bob), (api_c, carol)):
        r = await api.post(f"/join/{q(room_id)}?via={q(name(a))}", {}, token=user.access_token)
        assert r.status == 200, r.body
        await settle(a, b, c)
    await send_text(api_a, alice, room_id, "before")
    await settle(a, b, c)
    since = (await timeline_sync(api_c, carol, limit=50))["next_batch"]
    c_name = name(c)

    await api_c.__aexit__(None, None, None)
    await c.stop()  # restart_server below starts it again from the same data
    expected = []
    for i in range(6):
        for api, user, tag in ((api_a, alice, "A"), (api_b, bob, "B")):
            body = f"{tag}{i} while C is down"
            await send_text(api, user, room_id, body)
            expected.append(body)
            await settle(a, b)
    # The PDUs for C wait in the outboxes of A and B, whose senders retry.
    for s in (a, b):
        relay = s.hs.federation.relay if s.hs.federation else None
        assert relay is not None
        assert c_name in relay.sender.busy_destinations()
        assert c_name in await relay.sender.store.destinations()
        assert relay.sender.failures(c_name) >= 1

    c = await restart_server(c)
    api_c = Api(c.client_url)
    await api_c.__aenter__()
    got = await eventually(
        lambda: timeline_bodies(api_c, carol, room_id), lambda b: b[-len(expected) :] == expected
    )
    assert got == ["before", *expected]
    await settle(a, b, c)
    for s in (a, b):
        assert s.hs.federation is not None and s.hs.federation.relay is not None
        assert c_name not in await s.hs.federation.relay.sender.store.destinations()
    # Carol's incremental /sync from before the outage has all of it, in order.
    assert messages_in(await timeline_sync(api_c, carol, since, limit=50), room_id) == expected
    # And C takes part again: its message reaches A and B.
    await send_text(api_c, carol, room_id, "C is back")
    await settle(a, b, c)
    for api, user in ((api_a, alice), (api_b, bob)):
        assert (await timeline_bodies(api, user, room_id))[-1] == "C is back"
    for api in (api_a, api_b, api_c):
        await api.__aexit__(None, None, None)
