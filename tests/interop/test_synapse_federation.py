"""Myelin and a real Synapse (``matrix-synapse`` from PyPI) in the same rooms, over real TLS
on loopback: joins both ways (by alias and by id), invites both ways and a rejected invite,
messages both ways in order, typing and receipts, and a room shared by two Myelin servers and
one Synapse that stays in sync across a restart of each kind of peer.

Myelin users are driven through Myelin's client API, Synapse users through Synapse's client
API (plain HTTP against ``client_url``). One Synapse serves the whole module; each test uses
its own user names and fresh Myelin servers.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from homeserver.app import RunningServer
from homeserver.events.keys import verify_key_base64
from tests.conftest import RestartFn, ServerFactory
from tests.federation.fedutil import FAST_RETRY, eventually
from tests.federation.rooms_support import q
from tests.helpers import Api, User
from tests.integration.e2ee_device import Device
from tests.interop.synapse import SynapseServer

pytestmark = pytest.mark.interop

TIMELINE = json.dumps({"room": {"timeline": {"limit": 100}}})
WAIT_S = 30.0
# Rounds of concurrent changes at most, until the room's graph has forked.
MAX_ROUNDS = 12


def tag() -> str:
    return secrets.token_hex(3)


async def myelin_user(server: RunningServer, prefix: str) -> tuple[Api, User]:
    api = Api(server.client_url)
    await api.__aenter__()
    return api, await api.register(f"{prefix}_{tag()}")


async def synapse_user(synapse: SynapseServer, prefix: str) -> tuple[Api, User]:
    registered = synapse.register(f"{prefix}_{tag()}")
    api = Api(synapse.client_url)
    await api.__aenter__()
    return api, User(
        registered.user_id, registered.access_token, registered.device_id, registered.password
    )


@pytest.fixture
async def apis() -> AsyncIterator[list[Api]]:
    """Client sessions opened by a test, closed at its end."""
    opened: list[Api] = []
    yield opened
    for api in opened:
        await api.__aexit__(None, None, None)


async def send_text(api: Api, user: User, room_id: str, body: str) -> str:
    r = await api.put(
        f"/rooms/{q(room_id)}/send/m.room.message/{secrets.token_hex(6)}",
        {"msgtype": "m.text", "body": body},
        token=user.access_token,
    )
    assert r.status == 200, r.body
    return str(r.body["event_id"])


async def bodies(api: Api, user: User, room_id: str) -> list[str]:
    """Message bodies in the room, oldest first, from /messages (works on both servers)."""
    r = await api.get(f"/rooms/{q(room_id)}/messages?dir=b&limit=100", token=user.access_token)
    if r.status != 200:
        return []
    return [
        e["content"].get("body")
        for e in reversed(r.body["chunk"])
        if e["type"] == "m.room.message" and "body" in e["content"]
    ]


async def sync_bodies(api: Api, user: User, room_id: str) -> list[str]:
    r = await api.get(f"/sync?timeout=0&filter={q(TIMELINE)}", token=user.access_token)
    assert r.status == 200, r.body
    room = r.body.get("rooms", {}).get("join", {}).get(room_id, {})
    return [
        e["content"].get("body")
        for e in room.get("timeline", {}).get("events", [])
        if e["type"] == "m.room.message"
    ]


async def joined(api: Api, user: User, room_id: str) -> set[str]:
    r = await api.get(f"/rooms/{q(room_id)}/joined_members", token=user.access_token)
    return set(r.body["joined"]) if r.status == 200 else set()


async def wait_bodies(api: Api, user: User, room_id: str, expected: list[str]) -> list[str]:
    """The room's message bodies once their tail is ``expected`` (or after WAIT_S)."""
    return await eventually(
        lambda: bodies(api, user, room_id),
        lambda got: got[-len(expected) :] == expected,
        WAIT_S,
    )


async def wait_joined(api: Api, user: User, room_id: str, members: set[str]) -> set[str]:
    return await eventually(lambda: joined(api, user, room_id), lambda j: j == members, WAIT_S)


async def join(api: Api, user: User, target: str, via: str | None = None) -> str:
    path = f"/join/{q(target)}" + (f"?server_name={q(via)}" if via else "")
    r = await api.post(path, {}, token=user.access_token)
    assert r.status == 200, r.body
    return str(r.body["room_id"])


# The two join scenarios also run with the Myelin server as three processes behind a
# spreading proxy (``spread``: tests/spread.py, PostgreSQL only).
@pytest.mark.spread
async def test_synapse_user_joins_myelin_room_by_alias_and_by_id(
    make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    m = await make_server(federated=True, **FAST_RETRY)
    m_name = m.hs.config.server_name
    api_m, alice = await myelin_user(m, "alice")
    api_s, sam = await synapse_user(synapse_server, "sam")
    api_s2, sue = await synapse_user(synapse_server, "sue")
    apis.extend([api_m, api_s, api_s2])
    alias_local = f"lobby{tag()}"
    r = await api_m.post(
        "/createRoom",
        {"preset": "public_chat", "room_alias_name": alias_local, "room_version": "12"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    room_id = r.body["room_id"]

    assert await join(api_s, sam, f"#{alias_local}:{m_name}") == room_id
    assert await join(api_s2, sue, room_id, via=m_name) == room_id
    everyone = {alice.user_id, sam.user_id, sue.user_id}
    assert await wait_joined(api_m, alice, room_id, everyone) == everyone
    assert await wait_joined(api_s, sam, room_id, everyone) == everyone

    expected = []
    for i in range(3):
        for api, user in ((api_m, alice), (api_s, sam), (api_s2, sue)):
            body = f"{i} from {user.user_id}"
            await send_text(api, user, room_id, body)
            expected.append(body)
            # Wait for each message everywhere so that the order is the same on both servers.
            await wait_bodies(api_m, alice, room_id, expected)
            await wait_bodies(api_s, sam, room_id, expected)
    assert await bodies(api_m, alice, room_id) == expected
    assert await sync_bodies(api_m, alice, room_id) == expected
    assert await bodies(api_s, sam, room_id) == expected
    assert await sync_bodies(api_s2, sue, room_id) == expected


@pytest.mark.spread
async def test_myelin_user_joins_synapse_room(
    make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    m = await make_server(federated=True, **FAST_RETRY)
    api_m, alice = await myelin_user(m, "alice")
    api_m2, amy = await myelin_user(m, "amy")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.extend([api_m, api_m2, api_s])
    alias_local = f"hall{tag()}"
    r = await api_s.post(
        "/createRoom",
        {"preset": "public_chat", "room_alias_name": alias_local, "name": "Synapse hall"},
        token=sam.access_token,
    )
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    r = await api_s.get(f"/rooms/{q(room_id)}/state/m.room.create", token=sam.access_token)
    assert r.body["room_version"] == "12"  # Synapse's default

    # By id (with server_name) and by alias (query/directory on Synapse).
    assert await join(api_m, alice, room_id, via=synapse_server.server_name) == room_id
    assert await join(api_m2, amy, f"#{alias_local}:{synapse_server.server_name}") == room_id
    everyone = {alice.user_id, amy.user_id, sam.user_id}
    assert await wait_joined(api_s, sam, room_id, everyone) == everyone
    assert await wait_joined(api_m, alice, room_id, everyone) == everyone
    r = await api_m.get(f"/rooms/{q(room_id)}/state/m.room.name", token=alice.access_token)
    assert r.status == 200 and r.body == {"name": "Synapse hall"}

    expected = []
    for i in range(3):
        for api, user in ((api_s, sam), (api_m, alice), (api_m2, amy)):
            body = f"{i} from {user.user_id}"
            await send_text(api, user, room_id, body)
            expected.append(body)
            await wait_bodies(api_m, alice, room_id, expected)
            await wait_bodies(api_s, sam, room_id, expected)
    assert await bodies(api_m, alice, room_id) == expected
    assert await sync_bodies(api_m2, amy, room_id) == expected
    assert await bodies(api_s, sam, room_id) == expected
    assert await sync_bodies(api_s, sam, room_id) == expected


async def sync_rooms(api: Api, user: User) -> dict[str, Any]:
    r = await api.get(f"/sync?timeout=0&filter={q(TIMELINE)}", token=user.access_token)
    assert r.status == 200, r.body
    return dict(r.body.get("rooms", {}))


async def invited_rooms(api: Api, user: User) -> dict[str, Any]:
    return dict((await sync_rooms(api, user)).get("invite", {}))


async def membership_of(api: Api, user: User, room_id: str, target: str) -> str | None:
    r = await api.get(
        f"/rooms/{q(room_id)}/state/m.room.member/{q(target)}", token=user.access_token
    )
    return r.body.get("membership") if r.status == 200 else None


async def wait_membership(api: Api, user: User, room_id: str, target: str, want: str) -> str | None:
    return await eventually(
        lambda: membership_of(api, user, room_id, target), lambda m: m == want, WAIT_S
    )


async def test_invites_both_ways_and_rejections(
    make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    m = await make_server(federated=True, **FAST_RETRY)
    api_m, alice = await myelin_user(m, "alice")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.extend([api_m, api_s])

    # Myelin invites a Synapse user, who sees the invite and joins.
    r = await api_m.post(
        "/createRoom",
        {"preset": "private_chat", "name": "Myelin secret", "room_version": "12"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    m_room = r.body["room_id"]
    r = await api_m.post(
        f"/rooms/{q(m_room)}/invite", {"user_id": sam.user_id}, token=alice.access_token
    )
    assert r.status == 200, r.body
    invites = await eventually(
        lambda: invited_rooms(api_s, sam), lambda rooms: m_room in rooms, WAIT_S
    )
    state = invites[m_room]["invite_state"]["events"]
    assert {
        "type": "m.room.name",
        "state_key": "",
        "content": {"name": "Myelin secret"},
    }.items() <= (next(e for e in state if e["type"] == "m.room.name").items())
    assert await join(api_s, sam, m_room) == m_room
    assert m_room not in await invited_rooms(api_s, sam)
    both = {alice.user_id, sam.user_id}
    assert await wait_joined(api_m, alice, m_room, both) == both
    await send_text(api_s, sam, m_room, "thanks for the invite")
    assert await wait_bodies(api_m, alice, m_room, ["thanks for the invite"]) == [
        "thanks for the invite"
    ]

    # Synapse invites a Myelin user, who sees it in /sync with invite_state and joins.
    r = await api_s.post(
        "/createRoom",
        {"preset": "private_chat", "name": "Synapse secret"},
        token=sam.access_token,
    )
    assert r.status == 200, r.body
    s_room = r.body["room_id"]
    r = await api_s.post(
        f"/rooms/{q(s_room)}/invite", {"user_id": alice.user_id}, token=sam.access_token
    )
    assert r.status == 200, r.body
    invites = await eventually(
        lambda: invited_rooms(api_m, alice), lambda rooms: s_room in rooms, WAIT_S
    )
    state = invites[s_room]["invite_state"]["events"]
    by_type = {e["type"]: e for e in state}
    assert by_type["m.room.name"]["content"] == {"name": "Synapse secret"}
    assert by_type["m.room.join_rules"]["content"]["join_rule"] == "invite"
    own = [e for e in state if e["type"] == "m.room.member" and e["state_key"] == alice.user_id]
    assert own and own[0]["content"]["membership"] == "invite"
    assert own[0]["sender"] == sam.user_id
    assert await join(api_m, alice, s_room) == s_room
    assert await wait_joined(api_s, sam, s_room, both) == both
    assert s_room not in await invited_rooms(api_m, alice)
    await send_text(api_m, alice, s_room, "joined from Myelin")
    assert await wait_bodies(api_s, sam, s_room, ["joined from Myelin"]) == ["joined from Myelin"]

    # A Myelin user rejects an invite from Synapse: Synapse sees the leave.
    r = await api_s.post("/createRoom", {"preset": "private_chat"}, token=sam.access_token)
    reject_room = r.body["room_id"]
    r = await api_s.post(
        f"/rooms/{q(reject_room)}/invite", {"user_id": alice.user_id}, token=sam.access_token
    )
    assert r.status == 200, r.body
    assert reject_room in await eventually(
        lambda: invited_rooms(api_m, alice), lambda rs: reject_room in rs, WAIT_S
    )
    r = await api_m.post(f"/rooms/{q(reject_room)}/leave", {}, token=alice.access_token)
    assert r.status == 200, r.body
    assert await wait_membership(api_s, sam, reject_room, alice.user_id, "leave") == "leave"
    assert reject_room not in await invited_rooms(api_m, alice)
    assert reject_room not in (await sync_rooms(api_m, alice)).get("join", {})

    # A Synapse user rejects an invite from Myelin: Myelin sees the leave.
    r = await api_m.post("/createRoom", {"preset": "private_chat"}, token=alice.access_token)
    declined = r.body["room_id"]
    r = await api_m.post(
        f"/rooms/{q(declined)}/invite", {"user_id": sam.user_id}, token=alice.access_token
    )
    assert r.status == 200, r.body
    assert declined in await eventually(
        lambda: invited_rooms(api_s, sam), lambda rs: declined in rs, WAIT_S
    )
    r = await api_s.post(f"/rooms/{q(declined)}/leave", {}, token=sam.access_token)
    assert r.status == 200, r.body
    assert await wait_membership(api_m, alice, declined, sam.user_id, "leave") == "leave"


async def test_two_myelins_and_synapse_stay_in_sync_across_restarts(
    make_server: ServerFactory,
    restart_server: RestartFn,
    synapse_server: SynapseServer,
    apis: list[Api],
) -> None:
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await myelin_user(a, "alice")
    api_b, bob = await myelin_user(b, "bob")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.extend([api_a, api_b, api_s])
    r = await api_a.post(
        "/createRoom", {"preset": "public_chat", "room_version": "12"}, token=alice.access_token
    )
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    a_name = a.hs.config.server_name
    assert await join(api_b, bob, room_id, via=a_name) == room_id
    assert await join(api_s, sam, room_id, via=a_name) == room_id
    everyone = {alice.user_id, bob.user_id, sam.user_id}
    for api, user in ((api_a, alice), (api_b, bob), (api_s, sam)):
        assert await wait_joined(api, user, room_id, everyone) == everyone

    expected: list[str] = []

    async def say(api: Api, user: User, body: str, *readers: tuple[Api, User]) -> None:
        """Send, then wait until every reader (the live servers) has it."""
        await send_text(api, user, room_id, body)
        expected.append(body)
        for reader_api, reader in readers:
            assert await wait_bodies(reader_api, reader, room_id, expected) == expected

    live = [(api_a, alice), (api_b, bob), (api_s, sam)]
    await say(api_a, alice, "hello from A", *live)
    await say(api_b, bob, "hello from B", *live)
    await say(api_s, sam, "hello from Synapse", *live)

    # Myelin B goes down; A and Synapse keep talking; B catches up when it is back.
    await api_b.__aexit__(None, None, None)
    apis.remove(api_b)
    await b.stop()
    for i in range(3):
        await say(api_a, alice, f"A{i} while B is down", (api_s, sam))
        await say(api_s, sam, f"S{i} while B is down", (api_a, alice))
    b = await restart_server(b)
    api_b = Api(b.client_url)
    await api_b.__aenter__()
    apis.append(api_b)
    live = [(api_a, alice), (api_b, bob), (api_s, sam)]
    await say(api_s, sam, "Synapse sees B is back", *live)
    await say(api_b, bob, "B is back", *live)

    # Synapse goes down; A and B keep talking; Synapse catches up when it is back.
    await asyncio.to_thread(synapse_server.stop)
    try:
        for i in range(3):
            await say(api_a, alice, f"A{i} while Synapse is down", (api_b, bob))
            await say(api_b, bob, f"B{i} while Synapse is down", (api_a, alice))
    finally:  # the module's other tests use this Synapse too
        await asyncio.to_thread(synapse_server.start)
    assert await wait_bodies(api_s, sam, room_id, expected) == expected
    await say(api_s, sam, "Synapse is back", *live)
    await say(api_a, alice, "welcome back", *live)

    for api, user in live:
        assert await bodies(api, user, room_id) == expected
        assert await wait_joined(api, user, room_id, everyone) == everyone
    assert await sync_bodies(api_b, bob, room_id) == expected


NO_TIMELINE = json.dumps({"room": {"timeline": {"limit": 1}}})


async def ephemeral(api: Api, user: User, room_id: str) -> dict[str, Any]:
    """The room's ephemeral events in a fresh /sync, by type."""
    r = await api.get(f"/sync?timeout=0&filter={q(NO_TIMELINE)}", token=user.access_token)
    assert r.status == 200, r.body
    room = r.body.get("rooms", {}).get("join", {}).get(room_id)
    if room is None:
        return {}
    return {e["type"]: e["content"] for e in room.get("ephemeral", {}).get("events", [])}


async def set_typing(api: Api, user: User, room_id: str, typing: bool) -> None:
    body: dict[str, Any] = {"typing": typing}
    if typing:
        body["timeout"] = 30000
    r = await api.put(
        f"/rooms/{q(room_id)}/typing/{q(user.user_id)}", body, token=user.access_token
    )
    assert r.status == 200, r.body


async def read_receipt(api: Api, user: User, room_id: str, event_id: str) -> None:
    r = await api.post(
        f"/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {}, token=user.access_token
    )
    assert r.status == 200, r.body


def typing_users(eph: dict[str, Any]) -> list[str] | None:
    typing = eph.get("m.typing")
    return None if typing is None else sorted(typing["user_ids"])


def readers_of(eph: dict[str, Any], event_id: str) -> set[str]:
    return set(eph.get("m.receipt", {}).get(event_id, {}).get("m.read", {}))


async def test_typing_and_receipts_between_myelin_and_synapse(
    make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    m = await make_server(federated=True, **FAST_RETRY)
    api_m, alice = await myelin_user(m, "alice")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.extend([api_m, api_s])
    r = await api_m.post(
        "/createRoom", {"preset": "public_chat", "room_version": "12"}, token=alice.access_token
    )
    room_id = r.body["room_id"]
    assert await join(api_s, sam, room_id, via=m.hs.config.server_name) == room_id
    both = {alice.user_id, sam.user_id}
    assert await wait_joined(api_m, alice, room_id, both) == both

    # Typing on Myelin shows on Synapse, and stops.
    await set_typing(api_m, alice, room_id, True)
    got = await eventually(
        lambda: ephemeral(api_s, sam, room_id), lambda e: typing_users(e) == [alice.user_id]
    )
    assert typing_users(got) == [alice.user_id]
    await set_typing(api_m, alice, room_id, False)
    got = await eventually(lambda: ephemeral(api_s, sam, room_id), lambda e: not typing_users(e))
    assert not typing_users(got)

    # Typing on Synapse shows on Myelin, and stops.
    await set_typing(api_s, sam, room_id, True)
    got = await eventually(
        lambda: ephemeral(api_m, alice, room_id), lambda e: typing_users(e) == [sam.user_id]
    )
    assert typing_users(got) == [sam.user_id]
    await set_typing(api_s, sam, room_id, False)
    got = await eventually(lambda: ephemeral(api_m, alice, room_id), lambda e: not typing_users(e))
    assert typing_users(got) == []

    # A read receipt on Synapse for a Myelin message shows on Myelin.
    from_alice = await send_text(api_m, alice, room_id, "read me, Sam")
    assert await wait_bodies(api_s, sam, room_id, ["read me, Sam"]) == ["read me, Sam"]
    await read_receipt(api_s, sam, room_id, from_alice)
    got = await eventually(
        lambda: ephemeral(api_m, alice, room_id), lambda e: sam.user_id in readers_of(e, from_alice)
    )
    assert sam.user_id in readers_of(got, from_alice)
    assert isinstance(got["m.receipt"][from_alice]["m.read"][sam.user_id]["ts"], int)

    # And a read receipt on Myelin for a Synapse message shows on Synapse.
    from_sam = await send_text(api_s, sam, room_id, "read me, Alice")
    assert await wait_bodies(api_m, alice, room_id, ["read me, Sam", "read me, Alice"])
    await read_receipt(api_m, alice, room_id, from_sam)
    got = await eventually(
        lambda: ephemeral(api_s, sam, room_id), lambda e: alice.user_id in readers_of(e, from_sam)
    )
    assert alice.user_id in readers_of(got, from_sam)
    assert isinstance(got["m.receipt"][from_sam]["m.read"][alice.user_id]["ts"], int)


async def test_history_leave_kick_and_redaction_across(
    make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    m = await make_server(federated=True, **FAST_RETRY)
    api_m, alice = await myelin_user(m, "alice")
    api_s, sam = await synapse_user(synapse_server, "sam")
    api_s2, sue = await synapse_user(synapse_server, "sue")
    apis.extend([api_m, api_s, api_s2])
    r = await api_m.post(
        "/createRoom", {"preset": "public_chat", "room_version": "12"}, token=alice.access_token
    )
    room_id = r.body["room_id"]
    r = await api_m.put(
        f"/rooms/{q(room_id)}/state/m.room.history_visibility/",
        {"history_visibility": "shared"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    history = [f"before anyone from Synapse joined {i}" for i in range(15)]
    for body in history:
        await send_text(api_m, alice, room_id, body)

    # Synapse pages back into history it never received: /backfill from Myelin.
    assert await join(api_s, sam, room_id, via=m.hs.config.server_name) == room_id
    got = await eventually(
        lambda: bodies(api_s, sam, room_id), lambda b: b[: len(history)] == history, WAIT_S
    )
    assert got == history

    # A Synapse user redacts their own message; Myelin serves it redacted.
    event_id = await send_text(api_s, sam, room_id, "oops")
    assert (await wait_bodies(api_m, alice, room_id, ["oops"]))[-1] == "oops"
    r = await api_s.put(
        f"/rooms/{q(room_id)}/redact/{q(event_id)}/{tag()}", {}, token=sam.access_token
    )
    assert r.status == 200, r.body

    async def content_on_myelin() -> Any:
        r = await api_m.get(f"/rooms/{q(room_id)}/event/{q(event_id)}", token=alice.access_token)
        return r.body.get("content")

    assert await eventually(content_on_myelin, lambda c: c == {}, WAIT_S) == {}

    # A Synapse user leaves (make_leave/send_leave through Synapse's own copy of the room).
    assert await join(api_s2, sue, room_id, via=m.hs.config.server_name) == room_id
    three = {alice.user_id, sam.user_id, sue.user_id}
    assert await wait_joined(api_m, alice, room_id, three) == three
    r = await api_s2.post(f"/rooms/{q(room_id)}/leave", {}, token=sue.access_token)
    assert r.status == 200, r.body
    two = {alice.user_id, sam.user_id}
    assert await wait_joined(api_m, alice, room_id, two) == two

    # Myelin kicks the other Synapse user; both sides agree, and Synapse is out of the room.
    r = await api_m.post(
        f"/rooms/{q(room_id)}/kick",
        {"user_id": sam.user_id, "reason": "testing"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    assert await wait_membership(api_m, alice, room_id, sam.user_id, "leave") == "leave"

    async def sams_rooms() -> list[str]:
        r = await api_s.get("/joined_rooms", token=sam.access_token)
        return list(r.body["joined_rooms"])

    assert room_id not in await eventually(sams_rooms, lambda rooms: room_id not in rooms, WAIT_S)
    await send_text(api_m, alice, room_id, "after the kick")
    assert await joined(api_m, alice, room_id) == {alice.user_id}


async def test_keys_through_synapse_as_notary(
    make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    """A Myelin server that cannot reach another server gets its keys from Synapse as
    its trusted key server (``POST /_matrix/key/v2/query``, with minimum_valid_until_ts)."""
    b = await make_server(federated=True, **FAST_RETRY)
    api_b, bob = await myelin_user(b, "bob")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.extend([api_b, api_s])
    r = await api_s.post("/createRoom", {"preset": "public_chat"}, token=sam.access_token)
    room_id = r.body["room_id"]
    assert await join(api_b, bob, room_id, via=synapse_server.server_name) == room_id
    await send_text(api_b, bob, room_id, "signed by B")
    assert await wait_bodies(api_s, sam, room_id, ["signed by B"]) == ["signed by B"]
    b_name = b.hs.config.server_name
    b_key_id = b.hs.federation.signing_key.key_id if b.hs.federation else ""
    await b.stop()  # Synapse holds B's keys; B itself is gone

    a = await make_server(
        federated=True,
        federation={
            **FAST_RETRY["federation"],
            "trusted_key_servers": [synapse_server.server_name],
        },
    )
    api_a, alice = await myelin_user(a, "alice")
    apis.append(api_a)
    assert a.hs.federation is not None
    assert await a.hs.federation.keyring.store.get_key(b_name, b_key_id) is None
    # The room's state holds Bob's join, signed by B: joining means checking B's signature.
    assert await join(api_a, alice, room_id, via=synapse_server.server_name) == room_id
    everyone = {alice.user_id, bob.user_id, sam.user_id}
    assert await joined(api_a, alice, room_id) == everyone
    stored = await a.hs.federation.keyring.store.get_key(b_name, b_key_id)
    assert stored is not None
    assert stored.verify_key == verify_key_base64(b.hs.federation.signing_key)


async def test_leave_ban_knock_and_profiles_on_a_synapse_room(
    make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    m = await make_server(federated=True, **FAST_RETRY)
    api_m, alice = await myelin_user(m, "alice")
    api_m2, amy = await myelin_user(m, "amy")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.extend([api_m, api_m2, api_s])
    s_name = synapse_server.server_name

    # Profiles both ways (/query/profile).
    r = await api_s.put(
        f"/profile/{q(sam.user_id)}/displayname", {"displayname": "Sam S"}, token=sam.access_token
    )
    assert r.status == 200, r.body
    r = await api_m.put(
        f"/profile/{q(alice.user_id)}/displayname",
        {"displayname": "Alice M"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    r = await api_m.get(f"/profile/{q(sam.user_id)}/displayname", token=alice.access_token)
    assert (r.status, r.body) == (200, {"displayname": "Sam S"})
    r = await api_s.get(f"/profile/{q(alice.user_id)}/displayname", token=sam.access_token)
    assert (r.status, r.body) == (200, {"displayname": "Alice M"})

    r = await api_s.post("/createRoom", {"preset": "public_chat"}, token=sam.access_token)
    room_id = r.body["room_id"]
    assert await join(api_m, alice, room_id, via=s_name) == room_id
    assert await join(api_m2, amy, room_id, via=s_name) == room_id
    three = {alice.user_id, amy.user_id, sam.user_id}
    assert await wait_joined(api_s, sam, room_id, three) == three
    r = await api_s.get(
        f"/rooms/{q(room_id)}/state/m.room.member/{q(alice.user_id)}", token=sam.access_token
    )
    assert r.body["displayname"] == "Alice M"

    # A Myelin user leaves a Synapse room.
    r = await api_m2.post(f"/rooms/{q(room_id)}/leave", {}, token=amy.access_token)
    assert r.status == 200, r.body
    two = {alice.user_id, sam.user_id}
    assert await wait_joined(api_s, sam, room_id, two) == two
    assert await wait_joined(api_m, alice, room_id, two) == two

    # Synapse bans a Myelin user: Myelin agrees, and the user cannot join again.
    r = await api_s.post(
        f"/rooms/{q(room_id)}/ban", {"user_id": amy.user_id}, token=sam.access_token
    )
    assert r.status == 200, r.body
    assert await wait_membership(api_m, alice, room_id, amy.user_id, "ban") == "ban"
    r = await api_m2.post(f"/join/{q(room_id)}?server_name={q(s_name)}", {}, token=amy.access_token)
    assert r.status == 403, r.body

    # Knocking on a Synapse room from Myelin, let in by an invite.
    r = await api_s.post(
        "/createRoom",
        {
            "preset": "private_chat",
            "initial_state": [
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}
            ],
        },
        token=sam.access_token,
    )
    knock_room = r.body["room_id"]
    r = await api_m.post(
        f"/knock/{q(knock_room)}?via={q(s_name)}", {"reason": "let me in"}, token=alice.access_token
    )
    assert r.status == 200, r.body
    assert knock_room in (await sync_rooms(api_m, alice)).get("knock", {})
    assert await wait_membership(api_s, sam, knock_room, alice.user_id, "knock") == "knock"
    r = await api_s.post(
        f"/rooms/{q(knock_room)}/invite", {"user_id": alice.user_id}, token=sam.access_token
    )
    assert r.status == 200, r.body
    assert await join(api_m, alice, knock_room, via=s_name) == knock_room
    assert await wait_joined(api_s, sam, knock_room, two) == two

    # And a Synapse user knocking on a Myelin room.
    r = await api_m.post(
        "/createRoom",
        {
            "preset": "private_chat",
            "room_version": "12",
            "initial_state": [
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}
            ],
        },
        token=alice.access_token,
    )
    m_room = r.body["room_id"]
    r = await api_s.post(
        f"/knock/{q(m_room)}?via={q(m.hs.config.server_name)}", {}, token=sam.access_token
    )
    assert r.status == 200, r.body
    assert await wait_membership(api_m, alice, m_room, sam.user_id, "knock") == "knock"
    r = await api_m.post(
        f"/rooms/{q(m_room)}/invite", {"user_id": sam.user_id}, token=alice.access_token
    )
    assert r.status == 200, r.body
    assert await join(api_s, sam, m_room, via=m.hs.config.server_name) == m_room
    assert await wait_joined(api_m, alice, m_room, two) == two


async def keys_query(api: Api, user: User, target: str) -> dict[str, Any]:
    r = await api.post(
        "/keys/query", {"device_keys": {target: []}, "timeout": 10000}, token=user.access_token
    )
    assert r.status == 200, r.body
    return dict(r.body)


async def to_device_inbox(api: Api, user: User, since: str | None) -> tuple[list[Any], str]:
    path = f"/sync?timeout=0&filter={q(NO_TIMELINE)}" + (f"&since={q(since)}" if since else "")
    r = await api.get(path, token=user.access_token)
    assert r.status == 200, r.body
    return list(r.body.get("to_device", {}).get("events", [])), str(r.body["next_batch"])


async def test_device_keys_to_device_and_device_lists_across(
    make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    m = await make_server(federated=True, **FAST_RETRY)
    api_m, alice = await myelin_user(m, "alice")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.extend([api_m, api_s])
    r = await api_m.post(
        "/createRoom", {"preset": "public_chat", "room_version": "12"}, token=alice.access_token
    )
    room_id = r.body["room_id"]
    assert await join(api_s, sam, room_id, via=m.hs.config.server_name) == room_id
    both = {alice.user_id, sam.user_id}
    assert await wait_joined(api_m, alice, room_id, both) == both

    alice_dev, sam_dev = Device(alice.user_id, alice.device_id), Device(sam.user_id, sam.device_id)
    for api, user, dev in ((api_m, alice, alice_dev), (api_s, sam, sam_dev)):
        r = await api.post(
            "/keys/upload",
            {"device_keys": dev.device_keys(), "one_time_keys": dev.one_time_keys(2)},
            token=user.access_token,
        )
        assert r.status == 200, r.body

    # Device keys and one-time keys of the other server's user, both ways.
    for api, user, other, dev in ((api_m, alice, sam, sam_dev), (api_s, sam, alice, alice_dev)):
        answer = await eventually(
            lambda api=api, user=user, other=other: keys_query(api, user, other.user_id),
            lambda a, other=other: other.device_id in a["device_keys"].get(other.user_id, {}),
            WAIT_S,
        )
        assert answer["failures"] == {}
        got = answer["device_keys"][other.user_id][other.device_id]
        assert got["keys"] == dev.device_keys()["keys"]
        assert got["signatures"] == dev.device_keys()["signatures"]
        r = await api.post(
            "/keys/claim",
            {"one_time_keys": {other.user_id: {other.device_id: "signed_curve25519"}}},
            token=user.access_token,
        )
        assert r.status == 200, r.body
        assert r.body["failures"] == {}
        (key_id,) = r.body["one_time_keys"][other.user_id][other.device_id]
        assert key_id.startswith("signed_curve25519:")

    # To-device messages both ways (m.direct_to_device), delivered once, opaque.
    _, since_s = await to_device_inbox(api_s, sam, None)
    _, since_m = await to_device_inbox(api_m, alice, None)
    for api, user, other in ((api_m, alice, sam), (api_s, sam, alice)):
        r = await api.put(
            f"/sendToDevice/m.room.encrypted/{tag()}",
            {
                "messages": {
                    other.user_id: {
                        other.device_id: {
                            "algorithm": "m.olm.v1",
                            "ciphertext": {"x": user.user_id},
                        }
                    }
                }
            },
            token=user.access_token,
        )
        assert r.status == 200, r.body
    for api, user, other, since in ((api_s, sam, alice, since_s), (api_m, alice, sam, since_m)):
        events, _ = await eventually(
            lambda api=api, user=user, since=since: to_device_inbox(api, user, since),
            lambda got: bool(got[0]),
            WAIT_S,
        )
        assert [(e["type"], e["sender"], e["content"]["ciphertext"]) for e in events] == [
            ("m.room.encrypted", other.user_id, {"x": other.user_id})
        ]

    # A new device of the Synapse user shows up in Alice's device_lists.changed and /keys/query.
    _, since_m = await to_device_inbox(api_m, alice, None)
    r = await api_s.login(sam.user_id, sam.password)
    assert r.status == 200, r.body
    new_device = r.body["device_id"]
    new_dev = Device(sam.user_id, new_device)
    r = await api_s.post(
        "/keys/upload", {"device_keys": new_dev.device_keys()}, token=r.body["access_token"]
    )
    assert r.status == 200, r.body

    async def changed() -> list[str]:
        r = await api_m.get(
            f"/sync?timeout=0&since={q(since_m)}&filter={q(NO_TIMELINE)}", token=alice.access_token
        )
        return list(r.body.get("device_lists", {}).get("changed", []))

    assert sam.user_id in await eventually(changed, lambda c: sam.user_id in c, WAIT_S)
    answer = await eventually(
        lambda: keys_query(api_m, alice, sam.user_id),
        lambda a: new_device in a["device_keys"].get(sam.user_id, {}),
        WAIT_S,
    )
    assert set(answer["device_keys"][sam.user_id]) == {sam.device_id, new_device}
    assert answer["device_keys"][sam.user_id][new_device]["keys"] == new_dev.device_keys()["keys"]


async def state_of(api: Api, user: User, room_id: str) -> dict[tuple[str, str], Any]:
    r = await api.get(f"/rooms/{q(room_id)}/state", token=user.access_token)
    assert r.status == 200, r.body
    return {(e["type"], e["state_key"]): e["event_id"] for e in r.body}


async def test_v12_power_and_concurrent_state_resolve_alike(
    make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    m = await make_server(federated=True, **FAST_RETRY)
    api_m, alice = await myelin_user(m, "alice")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.extend([api_m, api_s])

    # A v12 room on Synapse with the Myelin user as an additional creator: Alice has
    # unlimited power without being in the power levels, and both servers agree.
    r = await api_s.post(
        "/createRoom",
        {"preset": "public_chat", "creation_content": {"additional_creators": [alice.user_id]}},
        token=sam.access_token,
    )
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    assert await join(api_m, alice, room_id, via=synapse_server.server_name) == room_id
    r = await api_m.put(
        f"/rooms/{q(room_id)}/state/m.room.name/",
        {"name": "named on Myelin"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body

    async def name_on_synapse() -> Any:
        r = await api_s.get(f"/rooms/{q(room_id)}/state/m.room.name/", token=sam.access_token)
        return r.body.get("name") if r.status == 200 else None

    assert await eventually(name_on_synapse, lambda n: n == "named on Myelin", WAIT_S) == (
        "named on Myelin"
    )

    room = await m.hs.rooms_area.rooms.rooms.get_room(room_id)
    assert room is not None

    async def forked() -> bool:
        stream = await m.hs.rooms_area.events.room_stream(
            room.room_nid, after=None, before=None, limit=500, backwards=False
        )
        return any(len(s.event.pdu["prev_events"]) > 1 for s in stream)

    # Concurrent state changes from both sides, several rounds (more, bounded, until the
    # graph has forked: how often the two sides' events cross depends on timing): every
    # fork resolves to the same state on both servers.
    rounds = 0
    while rounds < 4 or (rounds < MAX_ROUNDS and not await forked()):
        i = rounds
        rounds += 1
        await asyncio.gather(
            api_m.put(
                f"/rooms/{q(room_id)}/state/m.room.topic/",
                {"topic": f"Myelin {i}"},
                token=alice.access_token,
            ),
            api_s.put(
                f"/rooms/{q(room_id)}/state/m.room.topic/",
                {"topic": f"Synapse {i}"},
                token=sam.access_token,
            ),
            send_text(api_m, alice, room_id, f"m{i}"),
            send_text(api_s, sam, room_id, f"s{i}"),
        )
    await send_text(api_m, alice, room_id, "final from Myelin")
    await send_text(api_s, sam, room_id, "final from Synapse")
    for api, user in ((api_m, alice), (api_s, sam)):
        got = await eventually(
            lambda api=api, user=user: bodies(api, user, room_id),
            lambda b: {"final from Myelin", "final from Synapse"} <= set(b),
            WAIT_S,
        )
        assert {f"m{i}" for i in range(rounds)} | {f"s{i}" for i in range(rounds)} <= set(got)

    async def both_states() -> tuple[dict[Any, Any], dict[Any, Any]]:
        return await state_of(api_m, alice, room_id), await state_of(api_s, sam, room_id)

    # The premise: the room's graph forked (events with several prev_events merged it).
    assert await forked()
    on_m, on_s = await eventually(both_states, lambda pair: pair[0] == pair[1], WAIT_S)
    assert on_m == on_s
    r = await api_m.get(f"/rooms/{q(room_id)}/state/m.room.topic/", token=alice.access_token)
    assert r.body["topic"] in {f"Myelin {rounds - 1}", f"Synapse {rounds - 1}"}


@pytest.mark.parametrize("version", ["1", "2"])
async def test_old_room_concurrent_state_resolves_alike(
    version: str, make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    """A v1 room (state resolution v1) and a v2 room (v2) on Synapse: concurrent power
    level and topic changes from both servers fork the graph; both servers end with the
    same state."""
    m = await make_server(federated=True, **FAST_RETRY)
    api_m, alice = await myelin_user(m, "alice")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.extend([api_m, api_s])
    r = await api_s.post(
        "/createRoom",
        {
            "preset": "public_chat",
            "room_version": version,
            "power_level_content_override": {"users": {sam.user_id: 100, alice.user_id: 100}},
        },
        token=sam.access_token,
    )
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    assert await join(api_m, alice, room_id, via=synapse_server.server_name) == room_id
    base = f"/rooms/{q(room_id)}/state/m.room.power_levels/"
    levels = (await api_s.get(base, token=sam.access_token)).body

    for i in range(3):
        await asyncio.gather(
            api_m.put(
                base,
                {**levels, "users": {**levels["users"], "@m:example.org": i}},
                token=alice.access_token,
            ),
            api_s.put(
                base,
                {**levels, "users": {**levels["users"], "@s:example.org": i}},
                token=sam.access_token,
            ),
            api_m.put(
                f"/rooms/{q(room_id)}/state/m.room.topic/",
                {"topic": f"Myelin {i}"},
                token=alice.access_token,
            ),
            api_s.put(
                f"/rooms/{q(room_id)}/state/m.room.topic/",
                {"topic": f"Synapse {i}"},
                token=sam.access_token,
            ),
        )
    await send_text(api_m, alice, room_id, "final from Myelin")
    await send_text(api_s, sam, room_id, "final from Synapse")
    for api, user in ((api_m, alice), (api_s, sam)):
        await eventually(
            lambda api=api, user=user: bodies(api, user, room_id),
            lambda b: {"final from Myelin", "final from Synapse"} <= set(b),
            WAIT_S,
        )

    async def both_states() -> tuple[dict[Any, Any], dict[Any, Any]]:
        return await state_of(api_m, alice, room_id), await state_of(api_s, sam, room_id)

    room = await m.hs.rooms_area.rooms.rooms.get_room(room_id)
    assert room is not None and room.version.identifier == version
    stream = await m.hs.rooms_area.events.room_stream(
        room.room_nid, after=None, before=None, limit=500, backwards=False
    )
    # The premise: the graph forked (events with several prev_events merged it).
    assert any(len(s.event.prev_event_ids) > 1 for s in stream)
    on_m, on_s = await eventually(both_states, lambda pair: pair[0] == pair[1], WAIT_S)
    assert on_m == on_s


async def test_presence_between_myelin_and_synapse(
    make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    m = await make_server(federated=True, **FAST_RETRY)
    api_m, alice = await myelin_user(m, "alice")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.extend([api_m, api_s])
    r = await api_m.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    assert await join(api_s, sam, room_id, via=m.hs.config.server_name) == room_id

    async def presence(api: Api, user: User, target: str) -> dict[str, Any]:
        r = await api.get(f"/presence/{q(target)}/status", token=user.access_token)
        return dict(r.body) if r.status == 200 else {}

    for api, user, other_api, other in ((api_m, alice, api_s, sam), (api_s, sam, api_m, alice)):
        status = f"busy {tag()}"
        # Synapse 1.163 has a race: a GET /presence of a remote user it holds no state for,
        # answered while the m.presence EDU for that user is being processed, writes the
        # default "offline" into its cache over the update. Asking once before the change
        # gives it that state up front, so the polling below cannot race the EDU.
        before = await presence(other_api, other, user.user_id)
        assert before.get("presence") in (None, "offline")
        r = await api.put(
            f"/presence/{q(user.user_id)}/status",
            {"presence": "unavailable", "status_msg": status},
            token=user.access_token,
        )
        assert r.status == 200, r.body
        got = await eventually(
            lambda other_api=other_api, other=other, user=user: presence(
                other_api, other, user.user_id
            ),
            lambda p, status=status: p.get("status_msg") == status,
            WAIT_S,
        )
        assert (got.get("presence"), got.get("status_msg")) == ("unavailable", status), (
            f"{other.user_id} does not see the presence of {user.user_id}"
        )


async def test_myelin_back_after_a_long_synapse_conversation(
    make_server: ServerFactory,
    restart_server: RestartFn,
    synapse_server: SynapseServer,
    apis: list[Api],
) -> None:
    """While a Myelin server is down, a Synapse user sends more than fits in one
    /get_missing_events answer, with a state change among it; when the Myelin server is
    back, Synapse's catch-up brings it all, in order, with the state change."""
    m = await make_server(federated=True, **FAST_RETRY)
    api_m, alice = await myelin_user(m, "alice")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.append(api_s)
    r = await api_s.post("/createRoom", {"preset": "public_chat"}, token=sam.access_token)
    room_id = r.body["room_id"]
    assert await join(api_m, alice, room_id, via=synapse_server.server_name) == room_id
    await send_text(api_s, sam, room_id, "before")
    assert await wait_bodies(api_m, alice, room_id, ["before"]) == ["before"]
    await api_m.__aexit__(None, None, None)
    await m.stop()

    during = [f"while Myelin is down {i}" for i in range(30)]
    for i, body in enumerate(during):
        await send_text(api_s, sam, room_id, body)
        if i == 15:
            r = await api_s.put(
                f"/rooms/{q(room_id)}/state/m.room.topic/",
                {"topic": "set during the outage"},
                token=sam.access_token,
            )
            assert r.status == 200, r.body
    m = await restart_server(m)
    api_m = Api(m.client_url)
    await api_m.__aenter__()
    apis.append(api_m)
    await send_text(api_s, sam, room_id, "after")

    got = await wait_bodies(api_m, alice, room_id, ["after"])
    assert got == ["before", *during, "after"]
    r = await api_m.get(f"/rooms/{q(room_id)}/state/m.room.topic/", token=alice.access_token)
    assert (r.status, r.body) == (200, {"topic": "set during the outage"})
    assert await state_of(api_m, alice, room_id) == await state_of(api_s, sam, room_id)
    # Myelin's users take part again: Synapse gets what they send.
    await send_text(api_m, alice, room_id, "Myelin is back")
    assert (await wait_bodies(api_s, sam, room_id, ["Myelin is back"]))[-1] == "Myelin is back"


ODD_CONTENT: dict[str, Any] = {
    "msgtype": "m.text",
    "body": 'caf\u00e9 \U0001f600 \u2028 line\u2029 "quoted" \\ tab\t nul-free \u00ff\u4e2d\u6587',
    "z_last": {"b": [1, -2, 9007199254740991, True, None, ""], "a": "\u00e9"},
    "A_upper": {},
    "\u00e9_key": "non-ASCII key",
}


@pytest.mark.parametrize("version", ["1", "6", "9", "10", "11", "12"])
async def test_room_versions_and_non_ascii_content_both_ways(
    version: str, make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    """Rooms of old and new versions (v1: server-chosen event ids and state resolution v1;
    v6: canonical JSON; v9: restricted-join redaction rules), created on either side, and
    event content whose canonical JSON (hashes, signatures) is easy to get wrong: both
    servers accept the other's events unredacted. Then each room's creator redacts the
    other server's message, and both servers serve it redacted."""
    m = await make_server(federated=True, **FAST_RETRY)
    api_m, alice = await myelin_user(m, "alice")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.extend([api_m, api_s])
    pairs = ((api_m, alice), (api_s, sam))
    rooms = []
    sent: dict[tuple[str, str], str] = {}
    for (api, user), (other_api, other), via in (
        ((api_m, alice), (api_s, sam), m.hs.config.server_name),
        ((api_s, sam), (api_m, alice), synapse_server.server_name),
    ):
        r = await api.post(
            "/createRoom",
            {"preset": "public_chat", "room_version": version},
            token=user.access_token,
        )
        assert r.status == 200, r.body
        room_id = r.body["room_id"]
        assert await join(other_api, other, room_id, via=via) == room_id
        rooms.append(room_id)

    for room_id in rooms:
        for api, user in pairs:
            r = await api.put(
                f"/rooms/{q(room_id)}/send/m.room.message/{tag()}",
                {**ODD_CONTENT, "from": user.user_id},
                token=user.access_token,
            )
            assert r.status == 200, r.body
            event_id = r.body["event_id"]
            for reader_api, reader in pairs:

                async def content(
                    reader_api: Api = reader_api,
                    reader: User = reader,
                    event_id: str = event_id,
                    room_id: str = room_id,
                ) -> Any:
                    r = await reader_api.get(
                        f"/rooms/{q(room_id)}/event/{q(event_id)}", token=reader.access_token
                    )
                    return r.body.get("content") if r.status == 200 else None

                got = await eventually(content, lambda c: c is not None, WAIT_S)
                assert got == {**ODD_CONTENT, "from": user.user_id}
            sent[(room_id, user.user_id)] = event_id
        r = await api_m.get(f"/rooms/{q(room_id)}/state/m.room.create/", token=alice.access_token)
        assert r.body["room_version"] == version

    # The creator of each room redacts the other server's message.
    for room_id, (api, user), other in (
        (rooms[0], (api_m, alice), sam),
        (rooms[1], (api_s, sam), alice),
    ):
        target = sent[(room_id, other.user_id)]
        r = await api.put(
            f"/rooms/{q(room_id)}/redact/{q(target)}/{tag()}", {}, token=user.access_token
        )
        assert r.status == 200, r.body
        for reader_api, reader in pairs:

            async def redacted(
                reader_api: Api = reader_api,
                reader: User = reader,
                room_id: str = room_id,
                target: str = target,
            ) -> Any:
                r = await reader_api.get(
                    f"/rooms/{q(room_id)}/event/{q(target)}", token=reader.access_token
                )
                return r.body.get("content") if r.status == 200 else None

            assert await eventually(redacted, lambda c: c == {}, WAIT_S) == {}


async def test_room_upgrades_followed_across(
    make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    m = await make_server(federated=True, **FAST_RETRY)
    m_name, s_name = m.hs.config.server_name, synapse_server.server_name
    api_m, alice = await myelin_user(m, "alice")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.extend([api_m, api_s])
    both = {alice.user_id, sam.user_id}

    for (api, user, home), (other_api, other, _) in (
        ((api_m, alice, m_name), (api_s, sam, s_name)),
        ((api_s, sam, s_name), (api_m, alice, m_name)),
    ):
        r = await api.post(
            "/createRoom",
            {"preset": "public_chat", "room_version": "11", "name": "to be upgraded"},
            token=user.access_token,
        )
        old_room = r.body["room_id"]
        assert await join(other_api, other, old_room, via=home) == old_room
        assert await wait_joined(api, user, old_room, both) == both
        r = await api.post(
            f"/rooms/{q(old_room)}/upgrade", {"new_version": "12"}, token=user.access_token
        )
        assert r.status == 200, r.body
        new_room = r.body["replacement_room"]

        async def tombstone(
            other_api: Api = other_api, other: User = other, old_room: str = old_room
        ) -> Any:
            r = await other_api.get(
                f"/rooms/{q(old_room)}/state/m.room.tombstone/", token=other.access_token
            )
            return r.body if r.status == 200 else None

        got = await eventually(tombstone, lambda t: t is not None, WAIT_S)
        assert got["replacement_room"] == new_room
        assert await join(other_api, other, new_room, via=home) == new_room
        assert await wait_joined(api, user, new_room, both) == both
        r = await other_api.get(
            f"/rooms/{q(new_room)}/state/m.room.create/", token=other.access_token
        )
        assert r.body["room_version"] == "12"
        assert r.body["predecessor"]["room_id"] == old_room
        r = await other_api.get(
            f"/rooms/{q(new_room)}/state/m.room.name/", token=other.access_token
        )
        assert r.body == {"name": "to be upgraded"}
        await send_text(other_api, other, new_room, "followed the upgrade")
        assert await wait_bodies(api, user, new_room, ["followed the upgrade"])


async def test_room_directories_over_federation(
    make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    m = await make_server(federated=True, **FAST_RETRY)
    m_name, s_name = m.hs.config.server_name, synapse_server.server_name
    api_m, alice = await myelin_user(m, "alice")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.extend([api_m, api_s])
    word = f"word{tag()}"
    published = {}
    for api, user in ((api_m, alice), (api_s, sam)):
        r = await api.post(
            "/createRoom",
            {"preset": "public_chat", "visibility": "public", "name": f"{word} of {user.user_id}"},
            token=user.access_token,
        )
        assert r.status == 200, r.body
        published[user.user_id] = r.body["room_id"]

    # Synapse's user lists Myelin's directory, and Myelin's user Synapse's: GET without a
    # filter, POST with one.
    for api, user, server, owner in ((api_s, sam, m_name, alice), (api_m, alice, s_name, sam)):
        r = await api.get(f"/publicRooms?server={q(server)}", token=user.access_token)
        assert r.status == 200, r.body
        listed = {room["room_id"]: room for room in r.body["chunk"]}
        assert published[owner.user_id] in listed
        room = listed[published[owner.user_id]]
        assert room["name"] == f"{word} of {owner.user_id}"
        assert room["num_joined_members"] == 1
        r = await api.post(
            f"/publicRooms?server={q(server)}",
            {"filter": {"generic_search_term": word}, "limit": 5},
            token=user.access_token,
        )
        assert r.status == 200, r.body
        assert [room["room_id"] for room in r.body["chunk"]] == [published[owner.user_id]]
        r = await api.post(
            f"/publicRooms?server={q(server)}",
            {"filter": {"generic_search_term": "no such room anywhere"}},
            token=user.access_token,
        )
        assert (r.status, r.body["chunk"]) == (200, [])


async def test_myelin_user_joins_a_restricted_synapse_room(
    make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    """A restricted join (rooms v8+): Synapse picks a member to authorise it
    (join_authorised_via_users_server), signs the join and sends it back in send_join's
    ``event``; Myelin keeps that signed event."""
    m = await make_server(federated=True, **FAST_RETRY)
    s_name = synapse_server.server_name
    api_m, alice = await myelin_user(m, "alice")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.extend([api_m, api_s])
    r = await api_s.post("/createRoom", {"preset": "public_chat"}, token=sam.access_token)
    space = r.body["room_id"]
    r = await api_s.post(
        "/createRoom",
        {
            "preset": "private_chat",
            "initial_state": [
                {
                    "type": "m.room.join_rules",
                    "state_key": "",
                    "content": {
                        "join_rule": "restricted",
                        "allow": [{"type": "m.room_membership", "room_id": space}],
                    },
                }
            ],
        },
        token=sam.access_token,
    )
    assert r.status == 200, r.body
    restricted = r.body["room_id"]

    # Not yet a member of the allowed room: refused.
    r = await api_m.post(
        f"/join/{q(restricted)}?server_name={q(s_name)}", {}, token=alice.access_token
    )
    assert r.status == 403, r.body
    assert await join(api_m, alice, space, via=s_name) == space
    assert await join(api_m, alice, restricted, via=s_name) == restricted
    both = {alice.user_id, sam.user_id}
    assert await wait_joined(api_s, sam, restricted, both) == both
    assert await joined(api_m, alice, restricted) == both
    r = await api_m.get(
        f"/rooms/{q(restricted)}/state/m.room.member/{q(alice.user_id)}", token=alice.access_token
    )
    assert r.body["join_authorised_via_users_server"] == sam.user_id
    await send_text(api_m, alice, restricted, "in through the restricted door")
    assert await wait_bodies(api_s, sam, restricted, ["in through the restricted door"])

    # Another Synapse user's authorised join reaches Myelin over /send and is accepted
    # (the auth rules check the authorising server's signature there too).
    api_s2, sue = await synapse_user(synapse_server, "sue")
    apis.append(api_s2)
    assert await join(api_s2, sue, space) == space
    assert await join(api_s2, sue, restricted) == restricted
    three = {alice.user_id, sam.user_id, sue.user_id}
    assert await wait_joined(api_m, alice, restricted, three) == three
    await send_text(api_s2, sue, restricted, "me too")
    assert (await wait_bodies(api_m, alice, restricted, ["me too"]))[-1] == "me too"


async def test_synapse_user_joins_a_restricted_myelin_room(
    make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    """Myelin as the resident server of a restricted room: make_join names a local user
    who may invite as the authoriser, send_join countersigns the join and returns it."""
    m = await make_server(federated=True, **FAST_RETRY)
    m_name = m.hs.config.server_name
    api_m, alice = await myelin_user(m, "alice")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.extend([api_m, api_s])
    r = await api_m.post(
        "/createRoom", {"preset": "public_chat", "room_version": "12"}, token=alice.access_token
    )
    space = r.body["room_id"]
    r = await api_m.post(
        "/createRoom",
        {
            "preset": "private_chat",
            "room_version": "12",
            "initial_state": [
                {
                    "type": "m.room.join_rules",
                    "state_key": "",
                    "content": {
                        "join_rule": "restricted",
                        "allow": [{"type": "m.room_membership", "room_id": space}],
                    },
                }
            ],
        },
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    restricted = r.body["room_id"]

    r = await api_s.post(
        f"/join/{q(restricted)}?server_name={q(m_name)}", {}, token=sam.access_token
    )
    assert r.status == 403, r.body
    assert await join(api_s, sam, space, via=m_name) == space
    assert await join(api_s, sam, restricted, via=m_name) == restricted
    both = {alice.user_id, sam.user_id}
    assert await wait_joined(api_m, alice, restricted, both) == both
    assert await wait_joined(api_s, sam, restricted, both) == both
    r = await api_s.get(
        f"/rooms/{q(restricted)}/state/m.room.member/{q(sam.user_id)}", token=sam.access_token
    )
    assert r.body["join_authorised_via_users_server"] == alice.user_id
    await send_text(api_s, sam, restricted, "let in by Myelin")
    assert await wait_bodies(api_m, alice, restricted, ["let in by Myelin"])
