"""matrix-nio clients with encryption turned on, driven step by step as ``sync_forever`` would.

nio's plain ``sync()`` only syncs; ``sync_forever`` also sends queued to-device messages
(verification replies) and uploads, queries and claims keys. ``Person.step`` does all of that
once, then keeps what the tests look at: every timeline event (decrypted where nio could, and
decryption retried for the rest once more room keys have arrived) and every to-device event.
``Person.until`` long-polls steps until a condition holds, with a deadline instead of sleeps.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nio
import pytest
from nio.exceptions import EncryptionError

MEGOLM = "m.megolm.v1.aes-sha2"
SYNC_FILTER: dict[str, Any] = {"room": {"timeline": {"limit": 100}}}
POLL_MS = 1_000
DEADLINE_S = 45.0


class Person:
    """One nio device with its own crypto store; what it has seen so far."""

    def __init__(self, client: nio.AsyncClient, label: str) -> None:
        self.client = client
        self.label = label
        self.timeline: dict[str, list[nio.Event]] = {}
        self.to_device: list[nio.ToDeviceEvent] = []

    @property
    def user_id(self) -> str:
        return str(self.client.user_id)

    @property
    def device_id(self) -> str:
        return str(self.client.device_id)

    async def step(self, timeout_ms: int = 0) -> nio.SyncResponse:
        client = self.client
        reply = await client.sync(timeout=timeout_ms, sync_filter=SYNC_FILTER)
        assert isinstance(reply, nio.SyncResponse), f"{self.label}: {reply}"
        for room_id, room in reply.rooms.join.items():
            self.timeline.setdefault(room_id, []).extend(room.timeline.events)
        self.to_device.extend(reply.to_device_events)
        sent = await client.send_to_device_messages()
        for r in sent or []:
            assert isinstance(r, nio.ToDeviceResponse), f"{self.label}: {r}"
        if client.should_upload_keys:
            up = await client.keys_upload()
            assert isinstance(up, nio.KeysUploadResponse), f"{self.label}: {up}"
        if client.should_query_keys:
            q = await client.keys_query()
            assert isinstance(q, nio.KeysQueryResponse), f"{self.label}: {q}"
        if client.should_claim_keys:
            c = await client.keys_claim(client.get_users_for_key_claiming())
            assert isinstance(c, nio.KeysClaimResponse), f"{self.label}: {c}"
        self._retry_decryption()
        return reply

    def _retry_decryption(self) -> None:
        """Room keys may arrive after the messages they unlock: try the locked ones again."""
        for room_id, events in self.timeline.items():
            for i, event in enumerate(events):
                if isinstance(event, nio.MegolmEvent):
                    event.room_id = room_id
                    try:
                        events[i] = self.client.decrypt_event(event)
                    except EncryptionError:
                        pass

    async def until(self, done: Callable[[], bool], what: str) -> None:
        """Step (long-polling) until ``done()``; fail after DEADLINE_S."""
        deadline = time.monotonic() + DEADLINE_S
        while not done():
            if time.monotonic() > deadline:
                pytest.fail(f"{self.label} ({self.user_id}) never saw {what}")
            await self.step(POLL_MS)

    def decrypted(self, room_id: str) -> list[nio.RoomMessageText]:
        return [
            e
            for e in self.timeline.get(room_id, [])
            if isinstance(e, nio.RoomMessageText) and e.decrypted
        ]

    def bodies(self, room_id: str) -> list[str]:
        return [e.body for e in self.decrypted(room_id)]

    def has_member(self, room_id: str, user_id: str, membership: str = "join") -> bool:
        return any(
            isinstance(e, nio.RoomMemberEvent)
            and e.state_key == user_id
            and e.membership == membership
            for e in self.timeline.get(room_id, [])
        )

    async def wait_body(self, room_id: str, body: str) -> nio.RoomMessageText:
        await self.until(lambda: body in self.bodies(room_id), f"the plaintext {body!r}")
        (event,) = [e for e in self.decrypted(room_id) if e.body == body]
        return event

    async def send(self, room_id: str, body: str) -> str:
        reply = await self.client.room_send(
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": body},
            ignore_unverified_devices=True,
        )
        assert isinstance(reply, nio.RoomSendResponse), f"{self.label}: {reply}"
        return str(reply.event_id)

    def outbound_session_id(self, room_id: str) -> str:
        assert self.client.olm is not None
        return str(self.client.olm.outbound_group_sessions[room_id].id)

    async def close(self) -> None:
        await self.client.close()


async def until_all(people: list[Person], done: Callable[[], bool], what: str) -> None:
    """Step all of ``people`` side by side (each long-polling) until ``done()``: for exchanges
    where each answer is sent from within the other side's step (SAS verification)."""
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"{', '.join(p.label for p in people)} never saw {what}")
        await asyncio.gather(*(p.step(POLL_MS) for p in people))


def _config() -> nio.AsyncClientConfig:
    return nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)


async def register(base_url: str, server_name: str, label: str, store: Path) -> Person:
    """A new account on the server at ``base_url``, its first device uploading keys."""
    username = f"{label}_{secrets.token_hex(4)}"
    path = store / f"{username}-1"
    path.mkdir(parents=True)
    client = nio.AsyncClient(
        base_url, f"@{username}:{server_name}", store_path=str(path), config=_config()
    )
    reply = await client.register(username, PASSWORD, device_name=label)
    assert isinstance(reply, nio.RegisterResponse), reply
    person = Person(client, label)
    await person.step()
    assert client.olm is not None and not client.should_upload_keys
    return person


async def login(base_url: str, user_id: str, label: str, store: Path) -> Person:
    """A further device of an existing account (password PASSWORD), keys uploaded."""
    path = store / f"{label}-{secrets.token_hex(3)}"
    path.mkdir(parents=True)
    client = nio.AsyncClient(base_url, user_id, store_path=str(path), config=_config())
    reply = await client.login(PASSWORD, device_name=label)
    assert isinstance(reply, nio.LoginResponse), reply
    person = Person(client, label)
    await person.step()
    assert client.olm is not None and not client.should_upload_keys
    return person


PASSWORD = "correct horse battery staple"


async def create_encrypted_room(owner: Person, *, encrypted: bool = True) -> str:
    initial_state = (
        [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}]
        if encrypted
        else []
    )
    created = await owner.client.room_create(
        name="e2ee scenario", initial_state=initial_state, preset=nio.RoomPreset.private_chat
    )
    assert isinstance(created, nio.RoomCreateResponse), created
    room_id = str(created.room_id)
    await owner.until(lambda: room_id in owner.client.rooms, "its new room")
    assert owner.client.rooms[room_id].encrypted is encrypted
    return room_id


async def invite_and_join(host: Person, guest: Person, room_id: str) -> None:
    invited = await host.client.room_invite(room_id, guest.user_id)
    assert isinstance(invited, nio.RoomInviteResponse), invited
    await guest.until(lambda: room_id in guest.client.invited_rooms, f"the invite to {room_id}")
    joined = await guest.client.join(room_id)
    assert isinstance(joined, nio.JoinResponse), joined
    await guest.until(lambda: guest.has_member(room_id, guest.user_id), "its own join")
    await host.until(lambda: host.has_member(room_id, guest.user_id), f"{guest.label}'s join")
