"""The room ``summary`` of /sync from kept values (``homeserver/sync/summary_cache.py``).

A repeated initial sync reads neither the member counts, nor the heroes, nor whether the
room is named (the counts alone read every membership row of the room: issue 15 #5, the
lazy-loaded initial sync of a 2,000-member room); and every change that moves them shows
in the next sync: joins, invites and leaves (the membership caches' drops), a name set,
emptied or redacted (the current state cache's drops, and the event cache for the
redaction, which changes no state row).
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.app import HomeServer
from homeserver.storage.database import StatementCounter
from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_sync_statement_counts import counted_sync

LAZY = json.dumps({"room": {"timeline": {"limit": 5}, "state": {"lazy_load_members": True}}})


def summary_reads(counter: StatementCounter) -> list[str]:
    """The statements that read what a ``summary`` is made of."""
    return [
        sql
        for sql in counter.by_sql
        if ("COUNT(*)" in sql and "FROM room_memberships WHERE room_nid" in sql)
        or ("m.room.canonical_alias" in sql and "JOIN current_state" in sql)
        or ("UNION ALL" in sql and "'leave', 'ban'" in sql and "FROM room_memberships" in sql)
    ]


async def summary_of(hs: HomeServer, user: User, room_id: str) -> tuple[Any, list[str]]:
    """``user``'s initial (lazy-loaded) sync's summary of the room, and its summary reads."""
    body, counter = await counted_sync(hs, user, filter_param=LAZY)
    return body["rooms"]["join"][room_id]["summary"], summary_reads(counter)


async def test_summary_kept_between_syncs_and_changed_by_members_and_names(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        alice, bob, carol = [await api.register(n) for n in ("alice", "bob", "carol")]
        room_id = await create_room(api, alice, preset="public_chat")
        assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200

        first, reads = await summary_of(hs, alice, room_id)
        assert first == {
            "m.heroes": [bob.user_id],
            "m.joined_member_count": 2,
            "m.invited_member_count": 0,
        }
        assert reads, "the first sync reads the summary"
        again, reads = await summary_of(hs, alice, room_id)
        assert again == first
        assert reads == [], reads
        # Another reader: the same kept values, their own heroes (never themselves).
        assert await summary_of(hs, bob, room_id) == (
            {
                "m.heroes": [alice.user_id],
                "m.joined_member_count": 2,
                "m.invited_member_count": 0,
            },
            [],
        )

        # An invite moves the counts and the heroes.
        r = await api.post(
            f"/rooms/{room_id}/invite", {"user_id": carol.user_id}, token=alice.access_token
        )
        assert r.status == 200, r.body
        assert (await summary_of(hs, alice, room_id))[0] == {
            "m.heroes": [bob.user_id, carol.user_id],
            "m.joined_member_count": 2,
            "m.invited_member_count": 1,
        }
        # The invite taken, bob gone: joined 2 (alice, carol), bob a hero no more.
        assert (await api.post(f"/join/{room_id}", {}, token=carol.access_token)).status == 200
        r = await api.post(f"/rooms/{room_id}/leave", {}, token=bob.access_token)
        assert r.status == 200, r.body
        assert (await summary_of(hs, alice, room_id))[0] == {
            "m.heroes": [carol.user_id],
            "m.joined_member_count": 2,
            "m.invited_member_count": 0,
        }

        # A name: no heroes. An empty name, or the name redacted: heroes again.
        r = await api.put(
            f"/rooms/{room_id}/state/m.room.name/", {"name": "Named"}, token=alice.access_token
        )
        assert r.status == 200, r.body
        named = {"m.joined_member_count": 2, "m.invited_member_count": 0}
        assert (await summary_of(hs, alice, room_id))[0] == named
        assert await summary_of(hs, alice, room_id) == (named, [])
        r = await api.put(
            f"/rooms/{room_id}/state/m.room.name/", {"name": ""}, token=alice.access_token
        )
        assert r.status == 200, r.body
        assert (await summary_of(hs, alice, room_id))[0]["m.heroes"] == [carol.user_id]
        r = await api.put(
            f"/rooms/{room_id}/state/m.room.name/", {"name": "Again"}, token=alice.access_token
        )
        assert r.status == 200, r.body
        name_event = r.body["event_id"]
        assert (await summary_of(hs, alice, room_id))[0] == named
        r = await api.put(f"/rooms/{room_id}/redact/{name_event}/r1", {}, token=alice.access_token)
        assert r.status == 200, r.body
        assert (await summary_of(hs, alice, room_id))[0]["m.heroes"] == [carol.user_id]
