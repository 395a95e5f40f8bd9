"""Hostile PDUs in a transaction (server-server "Checks performed on receipt of a PDU"):
each is dropped (steps 1-2), redacted (step 3) or rejected (4-5), logged once with
the origin, and the room is otherwise as before."""

from __future__ import annotations

from typing import Any

from homeserver.events.keys import generate_signing_key
from tests.federation.fedutil import free_port_name
from tests.federation.hostile.support import Arena
from tests.federation.rooms_support import q


async def assert_dropped(
    arena: Arena, pdu: dict[str, Any], event_id: str | None, *, handled: bool = False
) -> str:
    """Send one PDU; it gets an error entry (or none, if it cannot be named), the room
    does not change, and one line logs it with the origin. That line is returned.
    ``handled``: rejected by the auth rules and stored as rejected, which answers an
    empty result (as Synapse does; Sytest expects it)."""
    before = await arena.snapshot()
    arena.clear_logs()
    reply = await arena.send([pdu])
    assert reply.status == 200, reply.body
    entries = reply.body["pdus"]
    if event_id is not None:
        assert set(entries) == {event_id}
        if handled:
            assert entries[event_id] == {}, entries
        else:
            assert isinstance(entries[event_id].get("error"), str), entries
    if not handled:
        assert all("error" in v for v in entries.values()), entries
    assert await arena.snapshot() == before
    return arena.assert_logged_once()


async def test_bad_signature_is_dropped(arena: Arena) -> None:
    impostor = generate_signing_key(arena.peer.signing_key.version)  # same key id, other key
    fields = arena.peer.event_fields(arena.room, "m.room.message", arena.message())
    event = arena.peer.build(arena.room.version, fields, key=impostor)
    line = await assert_dropped(arena, event.pdu, event.event_id)
    assert event.event_id in line


async def test_unsigned_event_is_dropped(arena: Arena) -> None:
    event = arena.peer.event(arena.room, "m.room.message", arena.message())
    pdu = {**event.pdu, "signatures": {}}
    await assert_dropped(arena, pdu, event.event_id)


async def test_wrong_content_hash_is_redacted(arena: Arena) -> None:
    """Step 3: the signature (over the redacted form) holds, the hash does not: the
    event is kept, redacted, and its tampered content is never shown nor logged."""
    event = arena.peer.event(arena.room, "m.room.message", arena.message("the original"))
    tampered = {**event.pdu, "content": arena.message()}
    before = await arena.snapshot()
    arena.clear_logs()
    reply = await arena.send([tampered])
    assert reply.body == {"pdus": {event.event_id: {}}}
    after = await arena.snapshot()
    assert after.state == before.state
    assert after.timeline == [*before.timeline, event.event_id]
    r = await arena.api.get(
        f"/rooms/{q(arena.room_id)}/event/{q(event.event_id)}", token=arena.alice.access_token
    )
    assert r.status == 200, r.body
    assert r.body["content"] == {}
    assert event.event_id in arena.assert_logged_once()


async def test_event_of_a_local_user_forged_by_the_peer_is_dropped(arena: Arena) -> None:
    """The sender's own server must sign: the peer cannot speak for our users."""
    content = arena.message()
    fields = arena.peer.event_fields(arena.room, "m.room.message", content)
    fields["sender"] = arena.alice.user_id
    event = arena.peer.build(arena.room.version, fields)
    await assert_dropped(arena, event.pdu, event.event_id)


async def test_event_of_a_third_server_user_without_its_signature_is_dropped(
    arena: Arena,
) -> None:
    """A user of a server that is not there: no key can vouch for the event."""
    fields = arena.peer.event_fields(arena.room, "m.room.message", arena.message())
    fields["sender"] = "@eve:" + free_port_name()
    event = arena.peer.build(arena.room.version, fields)
    await assert_dropped(arena, event.pdu, event.event_id)


async def test_forged_state_event_of_a_local_user_is_dropped(arena: Arena) -> None:
    """A forged power-levels change in the name of the room's creator."""
    power = arena.room.state[("m.room.power_levels", "")]
    content = {**power.content, "users": {arena.peer.user("mallory"): 100}, "x": arena.secret}
    fields = arena.peer.event_fields(
        arena.room, "m.room.power_levels", content, sender=arena.alice.user_id, state_key=""
    )
    event = arena.peer.build(arena.room.version, fields)
    await assert_dropped(arena, event.pdu, event.event_id)


async def test_event_over_65536_bytes_is_dropped(arena: Arena) -> None:
    content = arena.message(pad="x" * 66_000)
    event = arena.peer.event(arena.room, "m.room.message", content)
    line = await assert_dropped(arena, event.pdu, event.event_id)
    assert "65536" in line


async def test_integers_outside_the_canonical_range_are_dropped(arena: Arena) -> None:
    for value in (2**53, -(2**53), 2**64):
        event = arena.peer.event(arena.room, "m.room.message", arena.message(n=value))
        await assert_dropped(arena, event.pdu, event.event_id)


async def test_floats_are_dropped(arena: Arena) -> None:
    event = arena.peer.event(arena.room, "m.room.message", arena.message(f=1.5))
    await assert_dropped(arena, event.pdu, event.event_id)
    event = arena.peer.event(arena.room, "m.room.message", arena.message())
    await assert_dropped(arena, {**event.pdu, "depth": 3.5}, None)


async def test_event_rejected_by_the_auth_rules(arena: Arena) -> None:
    """Step 4: mallory (power 0) changes the room's name, which needs 50: rejected,
    never shown, the state unchanged."""
    event = arena.peer.event(arena.room, "m.room.name", {"name": arena.secret}, state_key="")
    line = await assert_dropped(arena, event.pdu, event.event_id, handled=True)
    assert event.event_id in line


async def test_event_for_a_room_we_do_not_know(arena: Arena) -> None:
    fields = arena.peer.event_fields(arena.room, "m.room.message", arena.message())
    fields["room_id"] = "!nowhere:" + arena.name
    event = arena.peer.build(arena.room.version, fields)
    await assert_dropped(arena, event.pdu, None)


async def test_event_allowed_only_by_an_old_state_is_soft_failed(arena: Arena) -> None:
    """Step 6: built on the room as it was before alice raised the level to send
    messages, mallory's message passes against its auth events and the state before
    it, fails against the current state: kept out of the timeline, logged once."""
    fields = arena.peer.event_fields(arena.room, "m.room.message", arena.message())
    power = arena.room.state[("m.room.power_levels", "")].content
    r = await arena.api.put(
        f"/rooms/{q(arena.room_id)}/state/m.room.power_levels",
        {**power, "events_default": 100},
        token=arena.alice.access_token,
    )
    assert r.status == 200, r.body
    event = arena.peer.build(arena.room.version, fields)
    before = await arena.snapshot()
    arena.clear_logs()
    reply = await arena.send([event.pdu])
    assert reply.body == {"pdus": {event.event_id: {}}}  # not rejected: soft-failed
    assert await arena.snapshot() == before
    line = arena.assert_logged_once()
    assert "soft-failed" in line and event.event_id in line
