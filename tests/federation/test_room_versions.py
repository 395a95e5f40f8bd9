"""Room versions 1-9 between two real Myelin servers over loopback TLS: joining
and being joined, invites, messages both ways, redactions, backfill of the
history before the join, and a v1 room's event ids naming their own server.

(Versions 10-12 are what the other federation tests run on.)
"""

from __future__ import annotations

import re

import pytest

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY, eventually
from tests.federation.rooms_support import name, q, register, send_text, settle, timeline_bodies
from tests.helpers import Api, User


async def _event(api: Api, user: User, room_id: str, event_id: str) -> dict[str, object]:
    r = await api.get(f"/rooms/{q(room_id)}/event/{q(event_id)}", token=user.access_token)
    assert r.status == 200, r.body
    body: dict[str, object] = r.body
    return body


@pytest.mark.parametrize("version", [str(n) for n in range(1, 10)])
async def test_two_servers_share_a_room_of_each_version(
    make_server: ServerFactory, version: str
) -> None:
    a: RunningServer = await make_server(federated=True, **FAST_RETRY)
    b: RunningServer = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    _, carol = await register(b, "carol")
    api_c = Api(b.client_url)
    await api_c.__aenter__()
    carol_token = carol.access_token
    try:
        r = await api_a.post(
            "/createRoom",
            {"preset": "public_chat", "room_version": version},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
        room_id = r.body["room_id"]
        early = [await send_text(api_a, alice, room_id, f"early {n}") for n in range(3)]
        if int(version) <= 2:
            assert all(re.fullmatch(rf"\$[^:]+:{re.escape(name(a))}", i) for i in early)

        # B joins A's room (make_join/send_join in this version).
        r = await api_b.post(
            f"/join/{q(room_id)}?server_name={q(name(a))}", {}, token=bob.access_token
        )
        assert r.status == 200, r.body
        await settle(a, b)

        # Messages both ways; B's own events carry B's ids in v1/v2.
        from_b = await send_text(api_b, bob, room_id, "from B")
        if int(version) <= 2:
            assert from_b.endswith(":" + name(b))
        await settle(a, b)
        await send_text(api_a, alice, room_id, "from A")
        await settle(a, b)
        expected = ["early 0", "early 1", "early 2", "from B", "from A"]
        assert await timeline_bodies(api_a, alice, room_id) == expected
        # B pages back past its join: the early messages come by backfill.
        got = await eventually(
            lambda: timeline_bodies(api_b, bob, room_id), lambda bodies: bodies == expected
        )
        assert got == expected

        # A invites a second user of B (the invite goes through B's server).
        r = await api_a.post(
            f"/rooms/{q(room_id)}/invite", {"user_id": carol.user_id}, token=alice.access_token
        )
        assert r.status == 200, r.body
        await settle(a, b)
        r = await api_c.post(f"/rooms/{q(room_id)}/join", {}, token=carol_token)
        assert r.status == 200, r.body
        await settle(a, b)
        r = await api_a.get(f"/rooms/{q(room_id)}/joined_members", token=alice.access_token)
        assert set(r.body["joined"]) == {alice.user_id, bob.user_id, carol.user_id}

        # The room admin on A redacts B's message; B applies it.
        r = await api_a.put(
            f"/rooms/{q(room_id)}/redact/{q(from_b)}/t1", {}, token=alice.access_token
        )
        assert r.status == 200, r.body
        await settle(a, b)
        redacted = await eventually(
            lambda: _event(api_b, bob, room_id, from_b), lambda e: e.get("content") == {}
        )
        assert redacted.get("content") == {}
    finally:
        for api in (api_a, api_b, api_c):
            await api.__aexit__(None, None, None)


async def test_invite_through_the_v1_api_into_a_v1_room(make_server: ServerFactory) -> None:
    """Deprecated ``PUT /v1/invite`` (room versions 1-2): the body is the event, the
    answer ``[200, {"event": ...}]``; the invited user then joins."""
    from federation.client import encode_path
    from homeserver.events.builder import build_event
    from homeserver.events.signing import reference_hash_entry

    a: RunningServer = await make_server(federated=True, **FAST_RETRY)
    b: RunningServer = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    try:
        r = await api_a.post(
            "/createRoom", {"preset": "private_chat", "room_version": "1"}, token=alice.access_token
        )
        assert r.status == 200, r.body
        room_id = r.body["room_id"]
        rooms = a.hs.rooms_area.rooms
        room = await rooms.rooms.get_room(room_id)
        assert room is not None
        ext = await rooms.events.extremities(room.room_nid)
        wanted = [
            ("m.room.create", ""),
            ("m.room.power_levels", ""),
            ("m.room.member", alice.user_id),
            ("m.room.join_rules", ""),
        ]
        state = await rooms.current_state(room, wanted)
        cited = [e.event for e in ext] + [s.event for s in state.values()]
        fields = {
            "room_id": room_id,
            "type": "m.room.member",
            "state_key": bob.user_id,
            "sender": alice.user_id,
            "content": {"membership": "invite"},
            "prev_events": [e.event.event_id for e in ext],
            "auth_events": [s.event.event_id for s in state.values()],
            "depth": max(e.event.depth for e in ext) + 1,
            "origin_server_ts": a.hs.clock.now_ms(),
        }
        refs = {e.event_id: reference_hash_entry(e.pdu, room.version) for e in cited}
        invite = build_event(
            room.version,
            fields,
            name(a),
            a.hs.signing_key,
            references=refs,
            event_id=a.hs.rooms_area.rooms.new_event_id(room.version),
        )
        pdu = {**invite.pdu, "unsigned": {"invite_room_state": []}}
        fed = a.hs.federation
        assert fed is not None
        path = encode_path("_matrix", "federation", "v1", "invite", room_id, invite.event_id)
        answer = await fed.client.put_json(name(b), path, pdu)
        assert isinstance(answer, list) and answer[0] == 200, answer
        signed = answer[1]["event"]
        assert signed["event_id"] == invite.event_id
        assert set(signed["signatures"]) == {name(a), name(b)}

        # Bob sees the invite and joins through A.
        async def invited() -> dict[str, object]:
            r = await api_b.get("/sync?timeout=0", token=bob.access_token)
            return dict(r.body.get("rooms", {}).get("invite", {}))

        assert room_id in await eventually(invited, lambda rooms: room_id in rooms)
        # A persists its own copy of the invite (as RoomService would have) before the join.
        r = await api_a.post(
            f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}, token=alice.access_token
        )
        assert r.status == 200, r.body
        await settle(a, b)
        r = await api_b.post(
            f"/join/{q(room_id)}?server_name={q(name(a))}", {}, token=bob.access_token
        )
        assert r.status == 200, r.body
    finally:
        for api in (api_a, api_b):
            await api.__aexit__(None, None, None)


async def test_v1_send_join_and_send_leave(make_server: ServerFactory) -> None:
    """Deprecated ``PUT /v1/send_join`` and ``/v1/send_leave``: the v2 answers wrapped
    as ``[200, {...}]``, in a v1 room."""
    from federation.client import encode_path
    from homeserver.events.builder import build_event
    from homeserver.events.room_versions import V1

    a: RunningServer = await make_server(federated=True, **FAST_RETRY)
    b: RunningServer = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    try:
        r = await api_a.post(
            "/createRoom", {"preset": "public_chat", "room_version": "1"}, token=alice.access_token
        )
        assert r.status == 200, r.body
        room_id = r.body["room_id"]
        fed = b.hs.federation
        assert fed is not None
        user = f"@bob:{name(b)}"

        async def handshake(kind: str) -> tuple[str, object]:
            path = encode_path("_matrix", "federation", "v1", f"make_{kind}", room_id, user)
            made = await fed.client.get_json(name(a), path, {"ver": ["1"]})
            assert made["room_version"] == "1"
            template = made["event"]
            fields = {
                k: template[k]
                for k in ("type", "room_id", "sender", "state_key", "content", "depth")
            }
            fields.update(
                prev_events=template["prev_events"],
                auth_events=template["auth_events"],
                origin_server_ts=b.hs.clock.now_ms(),
            )
            event_id = b.hs.rooms_area.rooms.new_event_id(V1)
            event = build_event(V1, fields, name(b), b.hs.signing_key, event_id=event_id)
            path = encode_path(
                "_matrix", "federation", "v1", f"send_{kind}", room_id, event.event_id
            )
            return event.event_id, await fed.client.put_json(name(a), path, event.pdu)

        join_id, answer = await handshake("join")
        assert isinstance(answer, list) and answer[0] == 200, answer
        body = answer[1]
        assert isinstance(body, dict)
        state_types = {e["type"] for e in body["state"]}
        assert {"m.room.create", "m.room.power_levels", "m.room.member"} <= state_types
        assert all(":" in e["event_id"] for e in body["auth_chain"])  # v1 ids travel in PDUs
        r = await api_a.get(f"/rooms/{q(room_id)}/joined_members", token=alice.access_token)
        assert set(r.body["joined"]) == {alice.user_id, user}

        leave_id, answer = await handshake("leave")
        assert answer == [200, {}]
        r = await api_a.get(f"/rooms/{q(room_id)}/joined_members", token=alice.access_token)
        assert set(r.body["joined"]) == {alice.user_id}
        assert join_id != leave_id
    finally:
        await api_a.__aexit__(None, None, None)
