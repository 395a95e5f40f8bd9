"""createRoom's statements (round trips on PostgreSQL, where 4 users creating rooms at
once wait on them): each of its state events makes its state group in one statement
(the parent's depth is read by the insert) and sets its current-state row in one
(an upsert, not a delete and an insert), and the federation outbox reads the room's
servers once per membership change, not once per event. The room is the same as
before: its state, read back, is what the events set."""

from __future__ import annotations

from homeserver.rooms.creation import CreateRoomRequest
from homeserver.storage.database import count_statements
from tests.conftest import ServerFactory
from tests.helpers import Api


async def test_create_room_state_costs_one_statement_per_table(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        creator = server.hs.rooms_area.creator
        await creator.create_room(CreateRoomRequest(creator=alice.user_id, preset="private_chat"))
        with count_statements() as counter:
            room = await creator.create_room(
                CreateRoomRequest(creator=alice.user_id, preset="private_chat", name="n", topic="t")
            )
        by_sql = counter.by_sql
        groups = sum(n for s, n in by_sql.items() if s.startswith("INSERT INTO state_groups"))
        current = sum(n for s, n in by_sql.items() if s.startswith("INSERT INTO current_state"))
        events = sum(n for s, n in by_sql.items() if s.startswith("INSERT INTO events"))
        assert events >= 8, by_sql  # create, join, power levels, rules, visibility, ...
        assert groups == current == events, by_sql
        assert not [s for s in by_sql if "SELECT delta_depth" in s], by_sql
        assert not [s for s in by_sql if s.startswith("DELETE FROM current_state")], by_sql
        # The federation outbox reads the room's servers again only after a membership
        # change: for the create event and after the creator's join, not for each event
        # (it was once per event); and once more after the commit, outside the chain.
        servers = sum(n for s, n in by_sql.items() if "servers(name)" in s)
        assert servers <= 3 < events, by_sql
        r = await api.get(f"/rooms/{room.room_id}/state", token=alice.access_token)
        assert r.status == 200, r.body
        state = {(e["type"], e["state_key"]): e["content"] for e in r.body}
        assert state[("m.room.name", "")] == {"name": "n"}
        assert state[("m.room.topic", "")]["topic"] == "t"
        assert state[("m.room.member", alice.user_id)]["membership"] == "join"
        assert state[("m.room.join_rules", "")] == {"join_rule": "invite"}
        # Setting a key again replaces its row (the upsert), in the state read back too.
        r = await api.put(
            f"/rooms/{room.room_id}/state/m.room.name/", {"name": "n2"}, token=alice.access_token
        )
        assert r.status == 200, r.body
        r = await api.get(f"/rooms/{room.room_id}/state/m.room.name/", token=alice.access_token)
        assert r.status == 200 and r.body == {"name": "n2"}, r.body
