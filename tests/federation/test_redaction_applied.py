"""Redactions across two Myelin servers (rooms/v* "Handling redactions").

A redaction applies on every server that may apply it (same server as the
redacted event's sender, or a sender with the redact level), also when it
arrives before the event it redacts; then that server's own auth checks and
its federation reads use the redacted form. One that may not apply changes
nothing anywhere.
"""

from __future__ import annotations

from typing import Any

from federation.client import encode_path
from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY, eventually, fed
from tests.federation.rooms_support import name, q, register, send_text, settle
from tests.helpers import Api, User


async def _pair(make_server: ServerFactory) -> tuple[RunningServer, RunningServer]:
    return (
        await make_server(federated=True, **FAST_RETRY),
        await make_server(federated=True, **FAST_RETRY),
    )


async def ok(reply: Any) -> Any:
    assert reply.status == 200, reply.body
    return reply.body


async def event_on(api: Api, user: User, room: str, event_id: str) -> Any:
    r = await api.get(f"/rooms/{q(room)}/event/{q(event_id)}", token=user.access_token)
    return r.body if r.status == 200 else None


async def state_event_on(api: Api, user: User, room: str, event_id: str) -> Any:
    """From /state: B holds the state it joined with as outliers, which /event does not serve."""
    r = await api.get(f"/rooms/{q(room)}/state", token=user.access_token)
    assert r.status == 200, r.body
    return next((e for e in r.body if e["event_id"] == event_id), None)


async def _room_with_bob(
    a: RunningServer, b: RunningServer, version: str, **create: Any
) -> tuple[Api, User, Api, User, str]:
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    body = {"preset": "public_chat", "room_version": version, **create}
    room = (await ok(await api_a.post("/createRoom", body, token=alice.access_token)))["room_id"]
    await ok(
        await api_b.post(f"/join/{q(room)}?server_name={q(name(a))}", {}, token=bob.access_token)
    )
    await settle(a, b)
    return api_a, alice, api_b, bob, room


async def test_redaction_from_a_applies_on_b_and_drives_b_auth(
    make_server: ServerFactory,
) -> None:
    a, b = await _pair(make_server)
    api_a, alice, api_b, bob, room = await _room_with_bob(
        a, b, "10", power_level_content_override={"invite": 50}
    )
    _, carol = await register(b, "carol")
    denied = await api_b.post(
        f"/rooms/{q(room)}/invite", {"user_id": carol.user_id}, token=bob.access_token
    )
    assert denied.status == 403 and denied.errcode == "M_FORBIDDEN"

    state = await ok(await api_a.get(f"/rooms/{q(room)}/state", token=alice.access_token))
    pl_id = next(e["event_id"] for e in state if e["type"] == "m.room.power_levels")
    red = await ok(
        await api_a.put(f"/rooms/{q(room)}/redact/{q(pl_id)}/r1", {}, token=alice.access_token)
    )
    await settle(a, b)

    on_b = await eventually(
        lambda: state_event_on(api_b, bob, room, pl_id),
        lambda e: e is not None and "redacted_because" in e["unsigned"],
    )
    assert on_b["unsigned"]["redacted_because"]["event_id"] == red["event_id"]
    assert "invite" not in on_b["content"] and on_b["content"]["users"][alice.user_id] == 100
    # B's own auth (against its current state) now reads the redacted levels.
    await ok(
        await api_b.post(
            f"/rooms/{q(room)}/invite", {"user_id": carol.user_id}, token=bob.access_token
        )
    )
    await settle(a, b)
    # B's federation reads serve the redacted form too.
    resp = await fed(a).client.get_json(
        name(b), encode_path("_matrix", "federation", "v1", "event", pl_id)
    )
    assert "invite" not in resp["pdus"][0]["content"]
    assert resp["pdus"][0]["hashes"]  # kept: the event id still matches
    members = await ok(await api_a.get(f"/rooms/{q(room)}/members", token=alice.access_token))
    got = {e["state_key"]: e["content"]["membership"] for e in members["chunk"]}
    assert got[carol.user_id] == "invite"


async def test_redaction_arriving_before_its_target_applies_when_it_arrives(
    make_server: ServerFactory,
) -> None:
    """B joins after X was sent, so X is history B does not hold; A's redaction of
    X reaches B first, and applies when /messages backfills X."""
    a, b = await _pair(make_server)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    room = (
        await ok(
            await api_a.post(
                "/createRoom",
                {"preset": "public_chat", "room_version": "11"},
                token=alice.access_token,
            )
        )
    )["room_id"]
    x = await send_text(api_a, alice, room, "regret")
    for i in range(3):
        await send_text(api_a, alice, room, f"filler {i}")
    await ok(
        await api_b.post(f"/join/{q(room)}?server_name={q(name(a))}", {}, token=bob.access_token)
    )
    await settle(a, b)
    assert await b.hs.rooms_area.events.by_id(x) is None  # B does not have X yet

    red = await ok(
        await api_a.put(f"/rooms/{q(room)}/redact/{q(x)}/r1", {}, token=alice.access_token)
    )
    await settle(a, b)
    await eventually(lambda: b.hs.rooms_area.events.by_id(red["event_id"]), lambda e: e is not None)
    assert await b.hs.rooms_area.events.by_id(x) is None
    # Held back from clients while its target is unseen (rooms/v3+ "Handling redactions").
    assert await event_on(api_b, bob, room, red["event_id"]) is None
    synced = await ok(
        await api_b.get('/sync?filter={"room":{"timeline":{"limit":50}}}', token=bob.access_token)
    )
    timeline = synced["rooms"]["join"][room]["timeline"]["events"]
    assert red["event_id"] not in [e["event_id"] for e in timeline]
    assert timeline  # the room's other new events are there

    # Paging back backfills X from A; B applies the redaction it was holding.
    r = await ok(
        await api_b.get(f"/rooms/{q(room)}/messages?dir=b&limit=50", token=bob.access_token)
    )
    ids = [e["event_id"] for e in r["chunk"]]
    assert x in ids
    assert red["event_id"] in ids  # both seen now: the redaction is served too
    got = await event_on(api_b, bob, room, x)
    assert got is not None and got["content"] == {}
    # Only B's own application adds redacted_because (a hash mismatch alone would not).
    assert got["unsigned"]["redacted_because"]["event_id"] == red["event_id"]
    stored = await b.hs.rooms_area.events.by_id(x)
    assert stored is not None and stored.redacted_by is not None


async def test_redaction_without_power_from_another_server_does_not_apply(
    make_server: ServerFactory,
) -> None:
    """Bob (on B, default level) redacts alice's (on A) message. His client API
    refuses; a server that sends it anyway (simulated by B's room service, which
    is what a misbehaving server would do) gets it accepted by the auth rules but
    applied nowhere."""
    a, b = await _pair(make_server)
    api_a, alice, api_b, bob, room = await _room_with_bob(a, b, "12")
    msg = await send_text(api_a, alice, room, "keep me")
    await settle(a, b)
    refused = await api_b.put(f"/rooms/{q(room)}/redact/{q(msg)}/r1", {}, token=bob.access_token)
    assert refused.status == 403

    rooms_b = b.hs.rooms_area.rooms
    info = await rooms_b.rooms.get_room(room)
    assert info is not None
    red = await rooms_b.create_and_send(info, bob.user_id, "m.room.redaction", {"redacts": msg})
    await settle(a, b)
    # A accepted the redaction event itself...
    on_a = await eventually(
        lambda: event_on(api_a, alice, room, red.event.event_id), lambda e: e is not None
    )
    assert on_a["content"]["redacts"] == msg
    # ...but neither server applied it.
    for api, user in ((api_a, alice), (api_b, bob)):
        got = await event_on(api, user, room, msg)
        assert got is not None
        assert got["content"]["body"] == "keep me"
        assert "redacted_because" not in got["unsigned"]
    for server in (a, b):
        stored = await server.hs.rooms_area.events.by_id(msg)
        assert stored is not None and stored.redacted_by is None
