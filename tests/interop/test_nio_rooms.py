"""matrix-nio, a real client library, drives a room's whole life on Myelin and on Synapse.

Both servers run the same test (``homeserver_url``): two users register; alice creates a room
and invites bob; bob sees the invite in /sync and joins; alice sends 30 messages and bob sees
every one, in order, over several incremental syncs; bob pages back through /messages and gets
them newest first; alice redacts one and bob sees the redaction and the stripped event through
/sync, /event and /messages; bob leaves and alice sees the leave. What passes on Synapse and
fails on Myelin is a Myelin bug: the assertions restate the spec, not our habits.
"""

from __future__ import annotations

import secrets
from typing import Any

import nio
import pytest

from tests.interop.conftest import Homeserver

pytestmark = pytest.mark.interop

MESSAGES = 30
BATCH = 10
# A timeline limit above the batch size: each incremental sync then carries a whole batch and
# the spec requires ``limited`` to be false for it.
SYNC_FILTER: dict[str, Any] = {"room": {"timeline": {"limit": BATCH + 5}}}
SYNC_TIMEOUT_MS = 5_000


async def _register(base_url: str, server_name: str, prefix: str) -> nio.AsyncClient:
    username = f"{prefix}_{secrets.token_hex(4)}"
    client = nio.AsyncClient(base_url, f"@{username}:{server_name}")
    reply = await client.register(username, secrets.token_urlsafe(12), device_name=prefix)
    assert isinstance(reply, nio.RegisterResponse), reply
    assert reply.user_id == f"@{username}:{server_name}"
    return client


async def _sync(client: nio.AsyncClient, *, timeout_ms: int = 0) -> nio.SyncResponse:
    """One /sync from the client's last ``next_batch`` (nio keeps it), with our filter."""
    reply = await client.sync(timeout=timeout_ms, sync_filter=SYNC_FILTER)
    assert isinstance(reply, nio.SyncResponse), reply
    return reply


async def _sync_until(
    client: nio.AsyncClient, done: Any, what: str, attempts: int = 5
) -> list[nio.SyncResponse]:
    """Long-poll /sync until ``done(replies so far)``; each call wakes on the next change."""
    replies: list[nio.SyncResponse] = []
    for _ in range(attempts):
        replies.append(await _sync(client, timeout_ms=SYNC_TIMEOUT_MS))
        if done(replies):
            return replies
    pytest.fail(f"{client.user_id} never saw {what} in {attempts} syncs")


def _timeline(reply: nio.SyncResponse, room_id: str) -> list[nio.Event]:
    room = reply.rooms.join.get(room_id)
    return list(room.timeline.events) if room else []


def _messages(events: list[nio.Event]) -> list[nio.RoomMessageText]:
    return [e for e in events if isinstance(e, nio.RoomMessageText)]


def _is_membership(event: nio.Event, user_id: str, membership: str) -> bool:
    return (
        isinstance(event, nio.RoomMemberEvent)
        and event.state_key == user_id
        and event.membership == membership
    )


async def test_nio_room_lifecycle(homeserver_url: Homeserver) -> None:
    base_url, server_name, _ = homeserver_url
    alice = await _register(base_url, server_name, "alice")
    bob = await _register(base_url, server_name, "bob")
    try:
        await _run(alice, bob)
    finally:
        await alice.close()
        await bob.close()


async def _run(alice: nio.AsyncClient, bob: nio.AsyncClient) -> None:
    await _sync(alice)
    await _sync(bob)

    # --- create and invite
    created = await alice.room_create(name="nio interop", topic="thirty messages")
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id = created.room_id
    invited = await alice.room_invite(room_id, bob.user_id)
    assert isinstance(invited, nio.RoomInviteResponse), invited

    # --- bob sees the invite, with stripped state naming the room and his own invite
    replies = await _sync_until(
        bob, lambda rs: room_id in rs[-1].rooms.invite, "the invite to " + room_id
    )
    invite_state = replies[-1].rooms.invite[room_id].invite_state
    assert any(
        isinstance(e, nio.InviteMemberEvent)
        and e.state_key == bob.user_id
        and e.membership == "invite"
        and e.sender == alice.user_id
        for e in invite_state
    ), invite_state
    assert any(isinstance(e, nio.InviteNameEvent) and e.name == "nio interop" for e in invite_state)

    joined = await bob.join(room_id)
    assert isinstance(joined, nio.JoinResponse), joined
    assert joined.room_id == room_id
    replies = await _sync_until(
        bob,
        lambda rs: any(_is_membership(e, bob.user_id, "join") for e in _timeline(rs[-1], room_id)),
        "his own join",
    )
    assert room_id not in replies[-1].rooms.invite

    # --- alice sends 30 messages in batches; bob syncs after each batch
    sent: list[str] = []
    seen: list[nio.RoomMessageText] = []
    await _sync(alice)
    for batch_start in range(0, MESSAGES, BATCH):
        for i in range(batch_start, batch_start + BATCH):
            reply = await alice.room_send(
                room_id, "m.room.message", {"msgtype": "m.text", "body": f"message {i}"}
            )
            assert isinstance(reply, nio.RoomSendResponse), reply
            sent.append(reply.event_id)

        def batch_seen(rs: list[nio.SyncResponse], want: int = BATCH) -> bool:
            return sum(len(_messages(_timeline(r, room_id))) for r in rs) >= want

        for r in await _sync_until(bob, batch_seen, f"messages up to {len(sent)}"):
            room = r.rooms.join.get(room_id)
            if room is None:
                continue
            assert room.timeline.limited is False, "a timeline within the limit is not limited"
            seen.extend(_messages(room.timeline.events))

    assert [e.event_id for e in seen] == sent
    assert [e.body for e in seen] == [f"message {i}" for i in range(MESSAGES)]
    assert all(e.sender == alice.user_id for e in seen)

    # --- bob pages back from a fresh sync whose timeline holds only the newest message
    bob.next_batch = None  # nio would otherwise send its last token as ``since``
    fresh = await bob.sync(timeout=0, sync_filter={"room": {"timeline": {"limit": 1}}})
    assert isinstance(fresh, nio.SyncResponse), fresh
    timeline = fresh.rooms.join[room_id].timeline
    assert [e.event_id for e in timeline.events] == [sent[-1]]
    assert timeline.limited is True
    assert timeline.prev_batch

    back: list[nio.Event] = []
    token: str | None = timeline.prev_batch
    for _ in range(20):
        page = await bob.room_messages(room_id, start=token, limit=BATCH)
        assert isinstance(page, nio.RoomMessagesResponse), page
        assert page.start == token
        back.extend(page.chunk)
        if not page.chunk or page.end is None:
            break
        token = page.end
    else:
        pytest.fail("pagination did not reach the start of the room")
    back_ids = [e.event_id for e in back]
    assert [e.event_id for e in _messages(back)] == sent[-2::-1]
    assert len(back_ids) == len(set(back_ids)), "a page repeated events"
    # Before the messages come bob's join, then his invite; the room begins with its creation.
    first_message = back_ids.index(sent[0])
    assert _is_membership(back[first_message + 1], bob.user_id, "join")
    assert isinstance(back[-1], nio.RoomCreateEvent), back[-1]
    assert back[-1].sender == alice.user_id

    # --- alice redacts message 4; bob sees the redaction and the stripped event everywhere
    target = sent[4]
    redacted = await alice.room_redact(room_id, target, reason="typo")
    assert isinstance(redacted, nio.RoomRedactResponse), redacted
    replies = await _sync_until(
        bob,
        lambda rs: any(isinstance(e, nio.RedactionEvent) for e in _timeline(rs[-1], room_id)),
        "the redaction",
    )
    (redaction,) = [e for e in _timeline(replies[-1], room_id) if isinstance(e, nio.RedactionEvent)]
    assert redaction.event_id == redacted.event_id
    assert redaction.redacts == target
    assert redaction.reason == "typo"
    assert redaction.sender == alice.user_id

    fetched = await bob.room_get_event(room_id, target)
    assert isinstance(fetched, nio.RoomGetEventResponse), fetched
    _assert_redacted(fetched.event, target, redacted.event_id, alice.user_id)

    page = await bob.room_messages(room_id, start=replies[-1].next_batch, limit=BATCH * 3)
    assert isinstance(page, nio.RoomMessagesResponse), page
    (stripped,) = [e for e in page.chunk if e.event_id == target]
    _assert_redacted(stripped, target, redacted.event_id, alice.user_id)
    # The other messages keep their bodies.
    neighbours = {e.event_id: e for e in page.chunk if e.event_id in (sent[3], sent[5])}
    assert isinstance(neighbours[sent[3]], nio.RoomMessageText)
    assert neighbours[sent[3]].body == "message 3"

    # --- bob leaves; alice sees the leave, bob sees the room under rooms.leave
    await _sync(alice)
    left = await bob.room_leave(room_id)
    assert isinstance(left, nio.RoomLeaveResponse), left
    await _sync_until(
        alice,
        lambda rs: any(_is_membership(e, bob.user_id, "leave") for e in _timeline(rs[-1], room_id)),
        "bob's leave",
    )
    replies = await _sync_until(bob, lambda rs: room_id in rs[-1].rooms.leave, "his own leave")
    assert room_id not in replies[-1].rooms.join
    leave_timeline = replies[-1].rooms.leave[room_id].timeline.events
    assert any(_is_membership(e, bob.user_id, "leave") for e in leave_timeline), leave_timeline


def _assert_redacted(event: nio.Event, event_id: str, redaction_id: str, redacter: str) -> None:
    """The event as the spec's redaction algorithm leaves it: content gone, the reason kept."""
    assert isinstance(event, nio.RedactedEvent), event
    assert event.event_id == event_id
    assert event.type == "m.room.message"
    assert event.redacter == redacter
    assert event.source["content"] == {}
    assert event.source["unsigned"]["redacted_because"]["event_id"] == redaction_id
