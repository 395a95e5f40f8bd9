"""m.room.server_acl between real servers: once the room denies a server, its
PDUs, its typing and receipt EDUs and its reads of the room are refused.

Every test server is named by an IP literal (``127.0.0.1:PORT``) and ACLs
match host names without ports, so the ACL here denies IP literals
(``allow_ip_literals: false``): the server that sets it keeps sending its own
events, everything arriving from the other server is refused.
"""

from __future__ import annotations

import secrets

import pytest

from federation.client import encode_path
from federation.errors import FederationError
from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY
from tests.federation.rooms_support import name, q, register, send_text, settle, timeline_bodies
from tests.helpers import Api, User

ACL = {"allow": ["*"], "deny": [], "allow_ip_literals": False}


async def test_denied_server_is_refused(make_server: ServerFactory) -> None:
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    r = await api_b.post(f"/join/{q(room_id)}?via={q(name(a))}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)
    await send_text(api_b, bob, room_id, "before the ACL")
    await settle(a, b)
    assert (await timeline_bodies(api_a, alice, room_id))[-1] == "before the ACL"

    r = await api_a.put(
        f"/rooms/{q(room_id)}/state/m.room.server_acl", ACL, token=alice.access_token
    )
    assert r.status == 200, r.body
    await settle(a, b)
    r = await api_b.get(f"/rooms/{q(room_id)}/state/m.room.server_acl", token=bob.access_token)
    assert r.status == 200 and r.body == ACL  # B got it (A was not yet denied)

    # A PDU from B: sent by B's outbox, refused by A, never shown.
    await send_text(api_b, bob, room_id, "after the ACL")
    await settle(a, b)
    assert "after the ACL" not in await timeline_bodies(api_a, alice, room_id)
    # The per-PDU answer says why.
    fed_b = b.hs.federation
    assert fed_b is not None
    stored = await b.hs.rooms_area.events.by_id(await _last_event_id(api_b, bob, room_id))
    assert stored is not None
    path = encode_path("_matrix", "federation", "v1", "send", secrets.token_hex(4))
    answer = await fed_b.client.put_json(
        name(a), path, {"origin": name(b), "origin_server_ts": 1, "pdus": [stored.event.pdu]}
    )
    assert answer["pdus"] == {
        stored.event.event_id: {"error": "Server is denied by the room's ACL"}
    }

    # Typing and receipts from B for this room are ignored by A.
    r = await api_b.put(
        f"/rooms/{q(room_id)}/typing/{q(bob.user_id)}",
        {"typing": True, "timeout": 30000},
        token=bob.access_token,
    )
    assert r.status == 200
    first = (await _messages(api_a, alice, room_id))[0]
    r = await api_b.post(
        f"/rooms/{q(room_id)}/receipt/m.read/{q(first)}", {}, token=bob.access_token
    )
    assert r.status == 200, r.body
    await settle(a, b)
    assert a.hs.typing.typing_users(room_id) == []
    receipts = await a.hs.receipts.receipts_since([room_id], 0, alice.user_id)
    assert bob.user_id not in str(receipts)

    # Reads of the room by B are refused with 403.
    with pytest.raises(FederationError) as e:
        await fed_b.client.get_json(
            name(a),
            encode_path("_matrix", "federation", "v1", "state_ids", room_id)
            + f"?event_id={q(first)}",
        )
    assert e.value.status == 403
    # And so is a join handshake started by B.
    dave = f"@dave:{name(b)}"
    with pytest.raises(FederationError) as e:
        await fed_b.client.get_json(
            name(a),
            encode_path("_matrix", "federation", "v1", "make_join", room_id, dave)
            + "?ver=10&ver=11&ver=12",
        )
    assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")
    # A's own events still go out; B refuses them in turn (A is an IP literal too).
    await send_text(api_a, alice, room_id, "from A after the ACL")
    await settle(a, b)
    assert "from A after the ACL" in await timeline_bodies(api_a, alice, room_id)
    assert "from A after the ACL" not in await timeline_bodies(api_b, bob, room_id)
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def _messages(api: Api, user: User, room_id: str) -> list[str]:
    r = await api.get(f"/rooms/{q(room_id)}/messages?dir=b&limit=20", token=user.access_token)
    return [e["event_id"] for e in r.body["chunk"] if e["type"] == "m.room.message"]


async def _last_event_id(api: Api, user: User, room_id: str) -> str:
    return (await _messages(api, user, room_id))[0]
