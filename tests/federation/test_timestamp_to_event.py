"""Jump to date in a room joined late: the joining server lacks the history before its
join and asks the room's other server (federation GET /timestamp_to_event)."""

from __future__ import annotations

from federation.errors import FederationError
from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY
from tests.federation.rooms_support import name, q, register, send_text, settle

PATH = "/_matrix/client/v1/rooms/{}/timestamp_to_event"


async def test_late_joiner_finds_history_through_the_other_server(
    make_server: ServerFactory,
) -> None:
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room = r.body["room_id"]
    for i in range(3):
        await send_text(api_a, alice, room, f"before {i}")
    r = await api_a.get(
        f"/rooms/{q(room)}/messages", token=alice.access_token, params={"dir": "f", "limit": "50"}
    )
    history = [(e["origin_server_ts"], e["event_id"]) for e in r.body["chunk"]]
    create_ts, create_id = history[0]

    r = await api_b.post(f"/join/{q(room)}?server_name={q(name(a))}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)
    r = await api_b.get(
        PATH.format(q(room)), token=bob.access_token, params={"ts": "0", "dir": "f"}
    )
    assert r.status == 200, r.body
    assert r.body == {"event_id": create_id, "origin_server_ts": create_ts}

    # The federation endpoint itself refuses a server with nobody in the room.
    c = await make_server(federated=True, **FAST_RETRY)
    fed = c.hs.federation
    assert fed is not None
    try:
        await fed.client.get_json(
            name(a), f"/_matrix/federation/v1/timestamp_to_event/{q(room)}", {"ts": "0", "dir": "f"}
        )
        raise AssertionError("a server outside the room got an answer")
    except FederationError as e:
        assert e.status == 403
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
