"""A lazy-loaded initial /sync of a big room reads only the members it answers with.

The state before the timeline is filtered on its keys before any event is read
(``RoomService.state_at_many``'s ``keep``): of the m.room.member events only the
timeline senders' and the user's own are loaded. Counted, not timed: the event
rows one sync reads (the ``event_nid IN (...)`` placeholders, with the event cache
emptied first) against the room's members: the full state would be all of them.
"""

from __future__ import annotations

import json
import re

from homeserver.storage.database import StatementCounter
from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_statement_counts import counted_sync

MEMBERS = 40
LAZY = json.dumps({"room": {"timeline": {"limit": 1}, "state": {"lazy_load_members": True}}})


def events_read(counter: StatementCounter) -> int:
    """Event rows asked for by id (the event store's ``by_nids``)."""
    return sum(
        n * len(re.findall(r"\$\d+", sql))
        for sql, n in counter.by_sql.items()
        if "WHERE e.event_nid IN (" in sql
    )


async def test_lazy_initial_sync_loads_only_needed_members(make_server: ServerFactory) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        room = await create_room(api, alice, preset="public_chat")
        for user in [bob, *[await api.register(f"m{i}") for i in range(MEMBERS)]]:
            r = await api.post(f"/rooms/{room}/join", {}, token=user.access_token)
            assert r.status == 200, r.body
        await send_text(api, alice, room, "hello", "t1")

        # Alice's sync waits for the push evaluator (which reads every member's event
        # for the message), so that emptying the cache after it holds.
        await counted_sync(hs, alice)
        hs.rooms_area.rooms.events.drop_cached(None)
        lazy, lazy_counter = await counted_sync(hs, bob, filter_param=LAZY)
        body = lazy["rooms"]["join"][room]
        timeline = body["timeline"]["events"]
        members = {e["state_key"] for e in body["state"]["events"] if e["type"] == "m.room.member"}
        # The answer: the timeline sender's membership and the user's own; the rest of
        # the state is all there.
        assert [e["content"]["body"] for e in timeline] == ["hello"]
        assert members == {alice.user_id, bob.user_id}
        assert {"m.room.create", "m.room.power_levels", "m.room.join_rules"} <= {
            e["type"] for e in body["state"]["events"]
        }
        # The work: the other members' events were never read.
        assert events_read(lazy_counter) < MEMBERS // 2, events_read(lazy_counter)
