"""A room upgrade writes its successor (the create event, every event the upgrade sends
into it, the moved aliases and directory listing) in ONE transaction, as createRoom
does: no successor is ever seen half made, and it costs one commit, not one per event."""

from __future__ import annotations

import pytest

from homeserver.app import RunningServer
from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_send_batches import rooms_of, transactions_seen


@pytest.mark.parametrize("new_version", ["10", "12"])
async def test_successor_is_one_transaction(
    server: RunningServer, api: Api, new_version: str
) -> None:
    rooms = rooms_of(server)
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(
        api,
        alice,
        room_version="11",
        preset="public_chat",
        name="Old name",
        topic="Old topic",
        room_alias_name=f"club{new_version}",
        visibility="public",
    )
    tok = alice.access_token
    assert (await api.post(f"/rooms/{room}/join", {}, token=bob.access_token)).status == 200
    r = await api.post(f"/rooms/{room}/ban", {"user_id": bob.user_id}, token=tok)
    assert r.status == 200, r.body
    with transactions_seen(rooms) as seen:
        r = await api.post(f"/rooms/{room}/upgrade", {"new_version": new_version}, token=tok)
        assert r.status == 200, r.body
    new = r.body["replacement_room"]
    r = await api.get(f"/rooms/{new}/messages?dir=f&limit=50", token=tok)
    assert r.status == 200, r.body
    successor = [e["event_id"] for e in r.body["chunk"]]
    types = [e["type"] for e in r.body["chunk"]]
    assert types[0] == "m.room.create"
    assert {"m.room.member", "m.room.power_levels", "m.room.name", "m.room.topic"} <= set(types)
    assert "m.room.canonical_alias" in types
    assert all(i in seen for i in successor)
    assert len({id(seen[i]) for i in successor}) == 1
    # The ban came over, the alias and the listing moved, in that transaction.
    r = await api.get(f"/rooms/{new}/state/m.room.member/{bob.user_id}", token=tok)
    assert r.status == 200 and r.body["membership"] == "ban"
    r = await api.get(f"/directory/room/%23club{new_version}:{server.hs.config.server_name}")
    assert r.status == 200 and r.body["room_id"] == new
    r = await api.get(f"/directory/list/room/{new}")
    assert r.body["visibility"] == "public"
    r = await api.get(f"/directory/list/room/{room}")
    assert r.body["visibility"] == "private"
