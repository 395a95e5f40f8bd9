"""The server ACL is cached per room (``federation.pdu.acl_cache``), "no ACL" included,
and an ACL set later takes effect at once: for the next PDU of the same process, and
(PostgreSQL, a main process and a worker) when another process set it.

Every test server is an IP literal (``127.0.0.1:PORT``), so the ACL here denies IP
literals: the scripted peer's PDUs are then refused, the local user's events are not
(they never pass the inbound check).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from homeserver.app import RunningServer, start_worker
from homeserver.storage.database import count_statements
from tests.conftest import ENGINE, ServerFactory, free_port, stop_or_explain
from tests.federation.rooms_support import name, peer_in_public_room, q
from tests.federation.scripted_peer import PeerRoom, ScriptedPeer
from tests.helpers import Api
from tests.processes import ROUNDS

ACL = {"allow": ["*"], "deny": [], "allow_ip_literals": False}
DENIED = "Server is denied by the room's ACL"


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


async def push(peer: ScriptedPeer, server: str, room: PeerRoom, body: str) -> dict[str, object]:
    """One message from the peer in its own transaction; that PDU's result."""
    event = peer.event(room, "m.room.message", {"msgtype": "m.text", "body": body})
    reply = await peer.send_transaction(server, [event.pdu])
    assert reply.status == 200, reply.body
    result: dict[str, object] = reply.body["pdus"][event.event_id]
    if not result:
        room.add(event)
    return result


async def test_no_acl_is_cached_and_a_later_acl_applies_at_once(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs, api, alice, room_id, room = await peer_in_public_room(make_server, peer)
    fed = hs.hs.federation
    assert fed is not None and fed.rooms is not None
    pipeline = fed.rooms.pipeline
    info = await hs.hs.rooms_area.rooms.rooms.get_room(room_id)
    assert info is not None

    assert await push(peer, name(hs), room, "first") == {}
    # "No ACL" is remembered: asking again reads nothing.
    with count_statements() as counted:
        assert await pipeline.server_allowed(info, peer.server_name)
    assert counted.total == 0

    r = await api.put(f"/rooms/{q(room_id)}/state/m.room.server_acl", ACL, token=alice.access_token)
    assert r.status == 200, r.body
    assert await push(peer, name(hs), room, "after the ACL") == {"error": DENIED}
    # The new ACL is cached in turn, and lifting it applies at once too.
    with count_statements() as counted:
        assert not await pipeline.server_allowed(info, peer.server_name)
    assert counted.total == 0
    open_acl = {"allow": ["*"], "deny": [], "allow_ip_literals": True}
    r = await api.put(
        f"/rooms/{q(room_id)}/state/m.room.server_acl", open_acl, token=alice.access_token
    )
    assert r.status == 200, r.body
    assert await push(peer, name(hs), room, "lifted") == {}
    await api.__aexit__(None, None, None)


@pytest.mark.skipif(ENGINE != "postgres", reason="worker processes need PostgreSQL")
async def test_acl_set_by_another_process_applies_at_once(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    main = await make_server(federated=True, workers={"w1": {"client_port": free_port()}})
    worker: RunningServer = await start_worker(main.hs.config, "w1")
    try:
        async with Api(worker.client_url) as w:
            alice = await w.register("alice")
            r = await w.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
            assert r.status == 200, r.body
            room_id = r.body["room_id"]
            room = await peer.join(name(main), room_id)
            # The main process (which alone takes inbound federation) caches "no ACL".
            assert await push(peer, name(main), room, "first") == {}
            r = await w.put(
                f"/rooms/{q(room_id)}/state/m.room.server_acl", ACL, token=alice.access_token
            )
            assert r.status == 200, r.body
            # The worker's bus message reaches the main process, asynchronously; until
            # it does, the main process has not seen the ACL's commit either way.
            fed = main.hs.federation
            assert fed is not None and fed.rooms is not None
            acls = fed.rooms.pipeline.acls
            info = await main.hs.rooms_area.rooms.rooms.get_room(room_id)
            assert info is not None
            for _ in range(ROUNDS):
                if info.room_nid not in acls:
                    break
                await asyncio.sleep(0.05)
            assert info.room_nid not in acls
            assert await push(peer, name(main), room, "after the ACL") == {"error": DENIED}
    finally:
        await stop_or_explain(worker)
