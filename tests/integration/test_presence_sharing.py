"""/sync's presence: only the reader and the users who share a joined room with them, in one
statement; for a range of a few positions (an incremental sync's) driven from the presence
rows in it (issue 15 #5: a sync in a room of thousands must not build that room's member
list first), for a wide one from the users sharing a room.

The plan check is SQLite's (``EXPLAIN QUERY PLAN``): written as ``user_id IN (SELECT ...
sharing)``, SQLite materialized the whole sharing list at every /sync (~3 ms in a room of
2,000 members, most of a lazy-loaded initial sync) even with no presence row in range.
"""

from __future__ import annotations

from homeserver.app import HomeServer, RunningServer
from homeserver.storage.database import count_statements, to_sqlite_sql
from homeserver.userdata.presence import MOST_CHECKED
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room


async def set_presence(api: Api, user: User, state: str) -> None:
    r = await api.put(
        f"/presence/{user.user_id}/status", {"presence": state}, token=user.access_token
    )
    assert r.status == 200, r.body


async def changes_for(
    hs: HomeServer, user: User, since: int, most_checked: int = MOST_CHECKED
) -> tuple[dict[str, str], str]:
    """The presence a sync of ``user`` gets since ``since`` (sender -> state), and the SQL
    of the one statement that read it; a range wider than ``most_checked`` positions is
    read from the users sharing a room."""
    pres = hs.userdata.presence
    upto = await pres.current_position()
    with count_statements() as counter:
        rows = await pres.store.changed_sharing(user.user_id, since, upto, most_checked)
    (sql,) = counter.by_sql
    return {r.user_id: r.state for r in rows}, sql


async def test_presence_of_room_mates_only_from_the_rows_in_range(
    api: Api, server: RunningServer
) -> None:
    hs = server.hs
    alice, bob, carol, dave, erin = [
        await api.register(n) for n in ("alice", "bob", "carol", "dave", "erin")
    ]
    shared = await create_room(api, alice, preset="public_chat")
    other = await create_room(api, carol, preset="public_chat")
    for user, room in ((bob, shared), (dave, shared), (erin, other)):
        assert (await api.post(f"/join/{room}", {}, token=user.access_token)).status == 200
    # dave was a room mate and left: no longer shares a joined room with alice.
    assert (await api.post(f"/rooms/{shared}/leave", {}, token=dave.access_token)).status == 200
    start = await hs.userdata.presence.current_position()
    for user, state in ((alice, "online"), (bob, "unavailable"), (carol, "online")):
        await set_presence(api, user, state)
    await set_presence(api, dave, "online")
    await set_presence(api, erin, "online")

    got, sql = await changes_for(hs, alice, start)
    # The same answers read from either end (a wide range: from the users sharing a room).
    for most_checked in (MOST_CHECKED, 0):
        got, _ = await changes_for(hs, alice, start, most_checked)
        assert got == {alice.user_id: "online", bob.user_id: "unavailable"}
        # Nothing in range: nothing, whoever shares a room.
        end = await hs.userdata.presence.current_position()
        assert (await changes_for(hs, alice, end, most_checked))[0] == {}
        # carol and erin share a room; bob does not share one with them.
        assert (await changes_for(hs, erin, start, most_checked))[0] == {
            carol.user_id: "online",
            erin.user_id: "online",
        }

    if hs.db.engine == "postgres":
        # Each row in range checked by its own lookups, whatever the statistics say: as a
        # hashed list of the co-members or a semi-join from the member list, PostgreSQL
        # read a whole big room's members at every sync until its next analyze.
        rows = await hs.db.fetchall("EXPLAIN " + sql, alice.user_id, start, start + 100)
        listed = "\n".join(str(r[0]) for r in rows)
        assert "SubPlan" in listed, listed
        assert "hashed SubPlan" not in listed, listed
        assert "Semi Join" not in listed and "HashAggregate" not in listed, listed
        return
    plan = await hs.db.fetchall(
        "EXPLAIN QUERY PLAN " + to_sqlite_sql(sql), alice.user_id, start, start + 100
    )
    details = [str(row["detail"]) for row in plan]
    listed = "\n".join(details)
    # Driven from the rows in range (by their position's index), each checked by key.
    assert any("presence_by_pos" in d for d in details), listed
    assert any("remote_presence_pos" in d for d in details), listed
    assert not any(d.startswith(("MATERIALIZE", "SCAN")) for d in details), listed
