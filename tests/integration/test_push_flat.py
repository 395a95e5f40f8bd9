"""Push evaluation of an ordinary message costs the same in a room of 200 as of 10
(homeserver/push/room_members.py, issue 15): the room's members are read once per
membership change, and only the members that may not share the default outcome are
looked at. Each thing that can make a member's outcome differ is seen by the next
message: a new display name, a keyword rule, a muted room, a pusher added or removed,
and (on PostgreSQL) the same changes made through a second process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from homeserver.app import HomeServer, RunningServer
from homeserver.push.service import PushRuleService
from homeserver.storage.database import count_statements
from tests.conftest import ServerFactory
from tests.helpers import Api, Reply, User
from tests.integration.test_push_background import counts, push_rows, room_of_three
from tests.integration.test_push_delivery import gateway  # noqa: F401  (fixture)
from tests.integration.test_push_display_names import highlight_my_name, rename
from tests.integration.test_push_shared_rows import rows_of
from tests.integration.test_pushers import Gateway, is_type, pusher_body, set_pusher
from tests.integration.test_room_size_statement_counts import local_user, room_with_members
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_sections import sync
from tests.processes import eventually, main_and_worker, room_with, send

G = "/pushrules/global"


async def room_counts(api: Api, user: User, room_id: str) -> tuple[int, int]:
    c = counts(await sync(api, user), room_id)
    return c["notification_count"], c["highlight_count"]


async def test_a_new_display_name_is_seen_by_the_next_message(
    server: RunningServer, api: Api
) -> None:
    """bob's rule highlights his display name; the room's members were read (a message
    evaluated) before he renames, and the next message uses his new name."""
    alice, bob, carol, room_id = await room_of_three(api)
    await highlight_my_name(api, bob)
    await send_text(api, alice, room_id, "hello", "t0")
    assert await room_counts(api, bob, room_id) == (1, 0)
    await rename(api, bob, "Robertino")
    await send_text(api, alice, room_id, "robertino, lunch?", "t1")
    assert await room_counts(api, bob, room_id) == (2, 1)
    await rename(api, bob, "Bobbo")
    await send_text(api, alice, room_id, "robertino again", "t2")
    await send_text(api, alice, room_id, "BOBBO!", "t3")
    assert await room_counts(api, bob, room_id) == (4, 2)
    assert await room_counts(api, carol, room_id) == (4, 0)


async def test_a_keyword_rule_added_and_deleted_is_seen_by_the_next_message(
    server: RunningServer, api: Api
) -> None:
    alice, bob, carol, room_id = await room_of_three(api)
    await send_text(api, alice, room_id, "banana bread", "t0")
    assert await room_counts(api, carol, room_id) == (1, 0)
    banana = {"pattern": "banana", "actions": ["notify", {"set_tweak": "highlight"}]}
    r = await api.put(f"{G}/content/banana", banana, token=carol.access_token)
    assert r.status == 200, r.body
    split = await send_text(api, alice, room_id, "banana split", "t1")
    assert await room_counts(api, carol, room_id) == (2, 1)
    assert await room_counts(api, bob, room_id) == (2, 0)
    assert await rows_of(server.hs, split) == (1, [(carol.user_id, 1, 1)])
    r = await api.delete(f"{G}/content/banana", token=carol.access_token)
    assert r.status == 200, r.body
    again = await send_text(api, alice, room_id, "banana again", "t2")
    assert await room_counts(api, carol, room_id) == (3, 1)
    # Her rules are the defaults again: the shared row says it, no row of her own.
    assert await rows_of(server.hs, again) == (1, [])


async def test_muting_a_room_is_seen_by_the_next_message(server: RunningServer, api: Api) -> None:
    alice, bob, carol, room_id = await room_of_three(api)
    await send_text(api, alice, room_id, "one", "t0")
    assert await room_counts(api, bob, room_id) == (1, 0)
    r = await api.put(f"{G}/room/{room_id}", {"actions": []}, token=bob.access_token)
    assert r.status == 200, r.body
    muted = await send_text(api, alice, room_id, "two", "t1")
    assert await room_counts(api, bob, room_id) == (1, 0)
    assert await room_counts(api, carol, room_id) == (2, 0)
    assert bob.user_id not in await push_rows(server.hs.db, muted)
    r = await api.delete(f"{G}/room/{room_id}", token=bob.access_token)
    assert r.status == 200, r.body
    await send_text(api, alice, room_id, "three", "t2")
    assert await room_counts(api, bob, room_id) == (2, 0)


async def test_a_pusher_added_later_gets_the_next_message_and_a_removed_one_nothing(
    api: Api,
    gateway: Gateway,  # noqa: F811
) -> None:
    """The users that have a pusher are read once; a pusher added afterwards is woken
    by the next message, and one removed is not (the gateway sees m2, then m4: never m3,
    sent while alice had none)."""
    alice, bob, _carol, room_id = await room_of_three(api)
    await set_pusher(api, bob, pusher_body(gateway.url, pushkey="bob"))
    await send_text(api, alice, room_id, "m1", "t1")  # the users with a pusher are read
    note = await gateway.next(is_type("m.room.message"))
    assert (note["content"]["body"], note["devices"][0]["pushkey"]) == ("m1", "bob")
    await set_pusher(api, alice, pusher_body(gateway.url, pushkey="alice"))
    await send_text(api, bob, room_id, "m2", "t2")
    note = await gateway.next(is_type("m.room.message"))
    assert note["content"]["body"] == "m2"
    assert note["devices"][0]["pushkey"] == "alice"
    removal = {**pusher_body(gateway.url, pushkey="alice"), "kind": None}
    await set_pusher(api, alice, removal)
    await send_text(api, bob, room_id, "m3", "t3")
    assert (await api.get("/pushers", token=alice.access_token)).body == {"pushers": []}
    await sync(api, alice)  # m3 evaluated while she had no pusher
    await set_pusher(api, alice, pusher_body(gateway.url, pushkey="alice"))
    await send_text(api, bob, room_id, "m4", "t4")
    note = await gateway.next(is_type("m.room.message"))
    assert note["content"]["body"] == "m4"
    assert note["devices"][0]["pushkey"] == "alice"


def count_rule_lookups(push: PushRuleService) -> list[str]:
    """Record every per-member rule lookup of the evaluator (the real methods run)."""
    calls: list[str] = []
    for name in ("uses_defaults", "rules_for_user"):
        real: Callable[[str], Awaitable[Any]] = getattr(push, name)

        def counted(user_id: str, real: Callable[[str], Awaitable[Any]] = real) -> Awaitable[Any]:
            calls.append(user_id)
            return real(user_id)

        setattr(push, name, counted)
    return calls


async def test_an_ordinary_message_costs_the_same_at_10_and_200_members(
    make_server: ServerFactory,
) -> None:
    """Per-member work of one message's evaluation: no rule lookup for members who use
    the defaults and are not mentioned, no read of the room's members, the same
    statements at both sizes; a mention looks at the mentioned member only."""
    server = await make_server()
    hs: HomeServer = server.hs
    async with Api(server.client_url) as api:
        owner = await api.register("owner")
        small, small_reader = await room_with_members(api, hs, owner, 10, "s")
        big, reader = await room_with_members(api, hs, owner, 200, "b")
        # One member with a rule of their own in each room: looked at, every message.
        for room_id, user in ((small, small_reader), (big, reader)):
            r = await api.put(f"{G}/room/{room_id}", {"actions": []}, token=user.access_token)
            assert r.status == 200, r.body
        evaluator = hs.sync_area.push_evaluator
        lookups = count_rule_lookups(hs.push)
        costs = []
        for room_id in (small, big):
            await send_text(api, owner, room_id, "warm up", f"w{room_id}")
            await sync(api, owner)  # evaluated: the room's members are read
            await evaluator.stop()
            lookups.clear()
            await send_text(api, owner, room_id, "hello", f"h{room_id}")
            with count_statements() as counter:
                await evaluator.step()
            hs.background.append(evaluator.start())
            members_read = sum(n for sql, n in counter.by_sql.items() if "room_memberships" in sql)
            costs.append((counter.total, members_read, sorted(set(lookups))))
        (small_n, small_read, small_looked), (big_n, big_read, big_looked) = costs
        assert small_n == big_n
        assert small_read == big_read == 0
        assert small_looked == [small_reader.user_id]  # the one with rules of their own
        assert big_looked == [reader.user_id]
        assert await room_counts(api, reader, big) == (0, 0)  # muted
        # A mention: the mentioned member is looked at, and the one with rules of
        # their own; nobody else.
        named = "@b7:" + hs.config.server_name
        lookups.clear()
        r = await api.put(
            f"/rooms/{big}/send/m.room.message/mention",
            {"msgtype": "m.text", "body": "look", "m.mentions": {"user_ids": [named]}},
            token=owner.access_token,
        )
        assert r.status == 200, r.body
        await sync(api, owner)
        assert set(lookups) == {named, reader.user_id}


async def test_a_join_the_members_cache_cannot_follow_looks_up_no_member_with_default_rules(
    make_server: ServerFactory,
) -> None:
    """A membership change the room's cached members cannot follow (a remote user's join,
    or any after the cache was dropped) is evaluated over every member; whether each
    uses the default rules is told by ``customised`` (one read), not by reading each
    member's rules (three statements a member not cached: 15,000 for a remote user's
    join into a room of 5,000 local members, 0.6-1.5 s before the room's /sync woke).
    The joiner's notifications are still decided: the member with rules of their own is
    looked at, and the statements are the same for 10 members as for 40."""
    server = await make_server()
    hs: HomeServer = server.hs
    async with Api(server.client_url) as api:
        owner = await api.register("owner")
        evaluator = hs.sync_area.push_evaluator
        lookups = count_rule_lookups(hs.push)
        costs = []
        for size, tag in ((10, "s"), (40, "b")):
            room_id, reader = await room_with_members(api, hs, owner, size, tag)
            # Every membership change notifies the reader: a rule of their own.
            rule = {
                "actions": ["notify"],
                "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.member"}],
            }
            r = await api.put(f"{G}/override/joins", rule, token=reader.access_token)
            assert r.status == 200, r.body
            await sync(api, owner)  # everything so far evaluated
            joiner = await local_user(hs, f"{tag}-late")
            await evaluator.stop()
            room = await hs.rooms_area.rooms.rooms.get_room(room_id)
            assert room is not None
            # The members and rules as a restarted server has them: nothing cached.
            hs.sync_area.notifications.room_members.drop([room.room_nid])
            hs.push.drop_cached(None)
            r = await api.post(f"/join/{room_id}", {}, token=joiner.access_token)
            assert r.status == 200, r.body
            join_id = await hs.rooms_area.rooms.events.current_position()
            lookups.clear()
            with count_statements() as counter:
                await evaluator.step()
            hs.background.append(evaluator.start())
            members_read = sum(n for sql, n in counter.by_sql.items() if "room_memberships" in sql)
            assert members_read > 0  # evaluated over every member: not the cached path
            assert sorted(set(lookups)) == [reader.user_id], join_id
            costs.append(counter.total)
            # The join notifies the reader (their rule), nobody else.
            assert await room_counts(api, reader, room_id) == (1, 0)
            assert await room_counts(api, owner, room_id) == (0, 0)
        assert costs[0] == costs[1]


# --------------------------------------------------------- two processes (PostgreSQL)


async def test_changes_made_through_a_worker_are_seen_by_the_evaluating_process(
    make_server: ServerFactory,
    gateway: Gateway,  # noqa: F811
) -> None:
    """The main process evaluates; a rule change, a join and a pusher made through the
    worker reach it over the bus (a join: also the probe of the membership rows, as
    the bus may come later than the next message)."""
    from tests.conftest import ENGINE

    if ENGINE != "postgres":
        pytest.skip("several processes need PostgreSQL")
    async with main_and_worker(make_server) as (main, other):
        async with Api(main.client_url) as a, Api(other.client_url) as b:
            alice = await a.register("alice")
            bob = await a.register("bob")
            carol = await a.register("carol")
            room_id = await room_with(a, alice, a, bob)
            await send(b, alice, room_id, "one")
            assert (await room_counts(a, bob, room_id))[0] >= 1
            base = (await room_counts(a, bob, room_id))[0]
            # bob mutes the room through the worker; once the main process serves the
            # rule (its cache dropped), its evaluation uses it.
            r = await b.put(f"{G}/room/{room_id}", {"actions": []}, token=bob.access_token)
            assert r.status == 200, r.body

            def read_rule() -> Awaitable[Reply]:
                return a.get(f"{G}/room/{room_id}", token=bob.access_token)

            await eventually(read_rule, lambda r: r.status == 200)
            await send(b, alice, room_id, "two")
            assert await room_counts(a, bob, room_id) == (base, 0)
            # carol joins through the worker and a message follows at once.
            r = await a.post(
                f"/rooms/{room_id}/invite", {"user_id": carol.user_id}, token=alice.access_token
            )
            assert r.status == 200, r.body
            r = await b.post(f"/rooms/{room_id}/join", {}, token=carol.access_token)
            assert r.status == 200, r.body
            three = await send(b, alice, room_id, "three")
            assert await room_counts(b, carol, room_id) == (2, 0)  # the invite, "three"
            assert carol.user_id in await push_rows(main.hs.db, three)
            # carol's pusher is added through the worker; the next message reaches it.
            await set_pusher(b, carol, pusher_body(gateway.url, pushkey="carol"))
            await send(b, alice, room_id, "four")
            note = await gateway.next(is_type("m.room.message"))
            assert note["content"]["body"] == "four"
