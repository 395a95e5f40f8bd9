"""Two Myelin servers over one PostgreSQL database, joined by the signal bus.

``main`` holds the database's process lock (outbox sender, background jobs);
``other`` is a worker beside it (``start_worker``, as ``myelin run --worker``). Both run
in this test process, each with its own database pool, caches, notifier and
bus connection, so all they share is PostgreSQL. Clients use both at once.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import RunningServer, start_worker
from homeserver.config import ConfigError
from homeserver.rooms.write_order import room_turn
from tests.conftest import free_port, make_config, write_data_dir
from tests.helpers import Api, Reply
from tests.integration.admin_support import V1, V2, make_admin
from tests.processes import (
    WAIT_S,
    eventually,
    new_room,
    room_with,
    send,
    typing_in,
    until,
    woken_by,
)


async def test_sqlite_refuses_workers(tmp_path: Path) -> None:
    write_data_dir(tmp_path, "localhost")
    url = f"sqlite:///{tmp_path / 'homeserver.db'}"
    with pytest.raises(ConfigError, match="PostgreSQL"):
        make_config(tmp_path, url, workers={"w1": {"client_port": free_port()}})
    with pytest.raises(ConfigError, match="SQLite"):
        await start_worker(make_config(tmp_path, url), "w1")


async def test_logout_on_one_is_refused_by_the_other(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    main, other = pair
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        alice = await a.register("alice")
        # The other process caches the token on first use...
        assert (await b.get("/account/whoami", token=alice.access_token)).status == 200
        assert (await a.post("/logout", {}, token=alice.access_token)).status == 200
        # ...and drops it when the logout's message arrives, long before the cache expires.
        r = await eventually(
            lambda: b.get("/account/whoami", token=alice.access_token),
            lambda r: r.status == 401,
        )
        assert r.status == 401 and r.errcode == "M_UNKNOWN_TOKEN", r.body


async def test_long_poll_on_one_wakes_for_a_send_on_the_other(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    main, other = pair
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        alice = await a.register("alice")
        room_id = await new_room(a, alice)
        first = await b.get("/sync", token=alice.access_token)
        assert first.status == 200, first.body
        since = first.body["next_batch"]
        r, event_id = await woken_by(
            b, alice, since, lambda: send(a, alice, room_id, "hello from main")
        )
        assert r.status == 200, r.body
        timeline = r.body["rooms"]["join"][room_id]["timeline"]["events"]
        assert event_id in [e["event_id"] for e in timeline]


async def test_concurrent_sends_keep_the_room_linear_and_positions_gap_free(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    main, other = pair
    per_side = 15
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        alice = await a.register("alice")
        room_id = await new_room(a, alice)
        sent = await asyncio.gather(
            *[send(a, alice, room_id, f"a{i}") for i in range(per_side)],
            *[send(b, alice, room_id, f"b{i}") for i in range(per_side)],
        )
        assert len(set(sent)) == 2 * per_side
    db = main.hs.db
    room_nid = await db.fetchval("SELECT room_nid FROM rooms WHERE room_id = $1", room_id)
    rows = await db.fetchall(
        "SELECT event_nid, event_id, stream_ordering FROM events"
        " WHERE room_nid = $1 ORDER BY stream_ordering",
        room_nid,
    )
    ids = [str(r["event_id"]) for r in rows]
    assert set(sent) <= set(ids) and len(ids) == len(set(ids))
    # One linear room: each event's only prev event is the one before it in the stream.
    for before, row in itertools.pairwise(rows):
        prevs = await db.fetchall(
            "SELECT prev_event_id FROM event_edges WHERE event_nid = $1", row["event_nid"]
        )
        assert [str(p["prev_event_id"]) for p in prevs] == [str(before["event_id"])]
    extremities = await db.fetchall(
        "SELECT event_nid FROM forward_extremities WHERE room_nid = $1", room_nid
    )
    assert [int(e["event_nid"]) for e in extremities] == [int(rows[-1]["event_nid"])]
    # Gap-free positions: the only room on the server holds every position up to the current.
    positions = [int(r["stream_ordering"]) for r in rows]
    current = await db.fetchval(
        "SELECT position FROM stream_positions WHERE stream_name = 'events'"
    )
    assert positions == list(range(positions[0], int(current) + 1))
    # And /sync on each process serves all of them, once, in that order.
    for url in (main.client_url, other.client_url):
        async with Api(url) as api:
            r = await api.get(
                "/sync",
                token=alice.access_token,
                params={"filter": '{"room":{"timeline":{"limit":100}}}'},
            )
            events = r.body["rooms"]["join"][room_id]["timeline"]["events"]
            assert [e["event_id"] for e in events] == ids


async def test_a_redaction_on_one_is_served_by_the_other(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    main, other = pair
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        alice = await a.register("alice")
        room_id = await new_room(a, alice)
        event_id = await send(a, alice, room_id, "regrettable")
        path = f"/rooms/{room_id}/event/{event_id}"

        def read() -> Awaitable[Reply]:
            return b.get(path, token=alice.access_token)

        before = await read()  # now in the other process's event cache
        assert before.status == 200 and before.body["content"]["body"] == "regrettable"
        r = await a.put(
            f"/rooms/{room_id}/redact/{event_id}/{secrets.token_hex(4)}",
            {"reason": "oops"},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
        after = await eventually(read, lambda r: r.body.get("content") == {})
        assert after.body["content"] == {}
        assert after.body["unsigned"]["redacted_because"]["event_id"] == r.body["event_id"]


async def test_a_push_rule_change_on_one_is_served_by_the_other(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    main, other = pair
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        alice = await a.register("alice")
        rule = "/pushrules/global/override/.m.rule.master/enabled"

        def read() -> Awaitable[Reply]:
            return b.get(rule, token=alice.access_token)

        assert (await read()).body == {"enabled": False}  # cached by the other process
        r = await a.put(rule, {"enabled": True}, token=alice.access_token)
        assert r.status == 200, r.body
        after = await eventually(read, lambda r: r.body == {"enabled": True})
        assert after.body == {"enabled": True}


async def test_typing_on_one_wakes_a_long_poll_on_the_other_and_tokens_cross(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    main, other = pair
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        alice = await a.register("alice")
        bob = await a.register("bob")
        room_id = await room_with(a, alice, b, bob)
        first = await b.get("/sync", token=bob.access_token)

        def typing(api: Api, on: bool) -> Callable[[], Awaitable[None]]:
            async def act() -> None:
                path = f"/rooms/{room_id}/typing/{alice.user_id}"
                body = {"typing": True, "timeout": 60000} if on else {"typing": False}
                r = await api.put(path, body, token=alice.access_token)
                assert r.status == 200, r.body

            return act

        # Bob long-polls the other process; Alice starts typing through the main one.
        woken, _ = await woken_by(b, bob, first.body["next_batch"], typing(a, True))
        assert typing_in(woken.body, room_id) == [alice.user_id], woken.body
        # The other process's token means the same on the main one: nothing new there.
        token = woken.body["next_batch"]
        same = await a.get("/sync", token=bob.access_token, params={"since": token})
        assert typing_in(same.body, room_id) is None, same.body
        # Alice stops through the other process; a long-poll on the main one sees it.
        stopped, _ = await woken_by(a, bob, token, typing(b, False))
        assert typing_in(stopped.body, room_id) == [], stopped.body


async def test_presence_set_on_one_wakes_a_long_poll_on_the_other(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    main, other = pair
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        alice = await a.register("alice")
        bob = await a.register("bob")
        await room_with(a, alice, b, bob)
        since = (await b.get("/sync", token=bob.access_token)).body["next_batch"]

        async def set_presence() -> None:
            r = await a.put(
                f"/presence/{alice.user_id}/status",
                {"presence": "unavailable", "status_msg": "at lunch"},
                token=alice.access_token,
            )
            assert r.status == 200, r.body

        woken, _ = await woken_by(b, bob, since, set_presence)
        events = woken.body.get("presence", {}).get("events", [])
        mine = [e["content"] for e in events if e["sender"] == alice.user_id]
        assert mine and mine[-1]["presence"] == "unavailable", woken.body
        assert mine[-1]["status_msg"] == "at lunch"


async def test_a_room_purged_on_one_is_gone_on_the_other(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    main, other = pair
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        root = await make_admin(main, a)
        alice = await a.register("alice")
        room_id = await new_room(a, alice)
        await send(a, alice, room_id, "soon gone")

        def read() -> Awaitable[Reply]:
            return b.get(f"{V1}/rooms/{room_id}", token=root.access_token)

        assert (await read()).status == 200  # the other process now caches the room
        r = await a.delete(f"{V2}/rooms/{room_id}", {}, token=root.access_token)
        assert r.status == 200, r.body
        r = await a.get(f"{V2}/rooms/delete_status/{r.body['delete_id']}", token=root.access_token)
        assert r.body["status"] == "complete", r.body
        after = await eventually(read, lambda r: r.status == 404)
        assert (after.status, after.errcode) == (404, "M_NOT_FOUND"), after.body


async def test_an_admin_flag_set_on_one_is_honoured_by_the_other(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    main, other = pair
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        root = await make_admin(main, a)
        bob = await a.register("bob")

        def read() -> Awaitable[Reply]:
            return b.get(f"{V2}/users/{bob.user_id}", token=bob.access_token)

        assert (await read()).status == 403  # bob's session is now cached, not admin
        r = await a.put(f"{V2}/users/{bob.user_id}", {"admin": True}, token=root.access_token)
        assert r.status == 200, r.body
        after = await eventually(read, lambda r: r.status == 200)
        assert after.status == 200 and after.body["admin"], after.body


async def test_after_a_lost_bus_connection_typing_is_ended_everywhere(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    """Typing changes sent while a process was not listening are lost to it, so after its
    reconnect it ends the typing it knew of, on every process (typing is ephemeral)."""
    main, other = pair
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        alice = await a.register("alice")
        room_id = await new_room(a, alice)
        r = await a.put(
            f"/rooms/{room_id}/typing/{alice.user_id}",
            {"typing": True, "timeout": 120000},
            token=alice.access_token,
        )
        assert r.status == 200, r.body

        def read_on(api: Api) -> Callable[[], Awaitable[Reply]]:
            return lambda: api.get("/sync", token=alice.access_token)

        def typists(reply: Reply) -> list[str] | None:
            return typing_in(reply.body, room_id)

        r = await eventually(read_on(b), lambda r: typists(r) == [alice.user_id])
        assert typists(r) == [alice.user_id]
        bus = other.hs.signal_bus
        assert bus is not None and bus.connections == 1
        pid = bus._conn.get_server_pid()
        assert await main.hs.db.fetchval("SELECT pg_terminate_backend($1)", pid)
        for api in (b, a):
            r = await eventually(read_on(api), lambda r: typists(r) == [])
            assert typists(r) == [], r.body
        assert bus.connections >= 2


async def test_counts_of_a_send_on_the_worker_are_exact_on_both(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    """Push rules are evaluated by one process, the background lease's holder (here the
    main process; homeserver.push.evaluation): the worker announces its new events, and
    a sync on either process waits for the evaluator's cursor, so neither answers a
    count that misses the send."""
    main, other = pair
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        alice = await a.register("alice")
        bob = await a.register("bob")
        room_id = await room_with(a, alice, a, bob)

        async def unread(api: Api) -> Any:
            r = await api.get("/sync", token=bob.access_token)
            assert r.status == 200, r.body
            return r.body["rooms"]["join"][room_id]["unread_notifications"]

        base = (await unread(a))["notification_count"]  # the invite notified bob
        for i in range(3):
            await send(b, alice, room_id, f"from the worker {i}")
            for api in (b, a):
                expected = {"notification_count": base + i + 1, "highlight_count": 0}
                assert await unread(api) == expected
        assert main.hs.sync_area.push_evaluator.position is not None
        assert other.hs.sync_area.push_evaluator.position is not None


async def test_a_process_taking_its_turn_holds_the_others_writes_to_that_room(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    """A process that kept losing a busy room takes a turn (``write_order.room_turn``):
    it builds and persists while the other process's write to that room waits, which
    then goes in after it, rebuilt on its event, so the room stays linear."""
    main, other = pair
    rooms = main.hs.rooms_area.rooms
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        alice = await a.register("alice")
        room_id = await new_room(a, alice)
        room = await rooms.rooms.get_room(room_id)
        assert room is not None
        async with room_turn(rooms.persister.db, room.room_nid):
            waiting = asyncio.create_task(send(b, alice, room_id, "from the other process"))
            # Its own write, in the task holding the turn, does not wait for itself...
            mine = await rooms.send_event(
                alice.user_id, room_id, "m.room.message", {"msgtype": "m.text", "body": "turn"}
            )
            # ...while the other process's is held at the room's lock.
            done, _ = await asyncio.wait({waiting}, timeout=0.5)
            assert not done
        theirs = await asyncio.wait_for(waiting, WAIT_S)
    stored = await rooms.events.by_ids([mine, theirs])
    assert stored[theirs].event.prev_event_ids == [mine]
    assert len(await rooms.events.extremities(room.room_nid)) == 1


async def test_a_join_on_one_reaches_the_others_cached_members_and_wakes_the_joiner(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    main, other = pair
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        alice = await a.register("alice")
        bob = await b.register("bob")
        room_id = await new_room(a, alice)
        r = await a.post(
            f"/rooms/{room_id}/invite", {"user_id": bob.user_id}, token=alice.access_token
        )
        assert r.status == 200, r.body
        await send(a, alice, room_id, "before bob")  # main now caches its local members
        rooms = main.hs.rooms_area.rooms
        room = await rooms.rooms.get_room(room_id)
        assert room is not None

        async def on_main() -> list[str]:
            return await rooms.members.local_users(room.room_nid, rooms.server_name)

        async def bob_on_main(present: bool) -> bool:
            return (bob.user_id in await on_main()) == present

        assert (await on_main()).count(bob.user_id) == 1  # invited
        r = await b.post(f"/rooms/{room_id}/leave", {}, token=bob.access_token)
        assert r.status == 200, r.body
        # The worker's commit reaches main's cache through the bus, not by expiry.
        assert await until(lambda: bob_on_main(False))
        r = await a.post(
            f"/rooms/{room_id}/invite", {"user_id": bob.user_id}, token=alice.access_token
        )
        assert r.status == 200, r.body
        r = await b.post(f"/join/{room_id}", {}, token=bob.access_token)
        assert r.status == 200, r.body
        assert await until(lambda: bob_on_main(True))
        # And a send on main wakes Bob's long-poll on the worker.
        first = await b.get("/sync", token=bob.access_token)
        assert first.status == 200, first.body
        since = first.body["next_batch"]
        woken, event_id = await woken_by(b, bob, since, lambda: send(a, alice, room_id, "for bob"))
        assert woken.status == 200, woken.body
        timeline = woken.body["rooms"]["join"][room_id]["timeline"]["events"]
        assert event_id in [e["event_id"] for e in timeline]


async def test_state_groups_changed_in_place_on_one_are_read_again_by_the_other(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    """A partial-state join's merge adds the missing members to the room's snapshot
    groups in place (``StateStore.add_to_roots``); another process that cached those
    groups must read them again, or it judges the next PDU without the members."""
    main, other = pair
    async with Api(main.client_url) as a:
        alice = await a.register("alice")
        room_id = await new_room(a, alice)
        room = await main.hs.rooms_area.rooms.rooms.get_room(room_id)
        assert room is not None
        on_main = main.hs.rooms_area.rooms.state
        on_other = other.hs.rooms_area.rooms.state
        root = await main.hs.db.fetchval(
            "SELECT MIN(state_group) FROM state_groups WHERE room_nid = $1", room.room_nid
        )
        before = await on_other.state_at_group(int(root))  # the worker caches the group
        key = max(before) + 1_000_000  # a key no real state uses
        event_nid = next(iter(before.values()))
        async with main.hs.db.transaction() as q:
            await on_main.add_to_roots(q, room.room_nid, {key: event_nid})
        on_main.changed_in_place()

        async def seen_on_other() -> bool:
            return key in await on_other.state_at_group(int(root))

        assert await until(seen_on_other)
