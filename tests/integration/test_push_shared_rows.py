"""One shared notification row per event (homeserver/push/notifications.py, migration
0395): the members it covers are the local members joined at the event (spans kept by
the evaluator), not the members of today; the members whose outcome differs (a
highlight, a keyword, a muted room, an override rule of their own) get a row of their
own; and counts, /notifications and the rows written stay exact. A message in a room
of 200 members writes one row, and its evaluation runs as many statements as in a
room of 10."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.app import HomeServer, RunningServer
from homeserver.storage.database import count_statements
from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.test_push_background import counts, mention, push_rows, room_of_three
from tests.integration.test_room_size_statement_counts import room_with_members
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_sections import sync

G = "/pushrules/global"


async def rows_of(hs: HomeServer, event_id: str) -> tuple[int, list[tuple[str, int, int]]]:
    """The event's shared rows (0 or 1) and its own rows as (user, notify, highlight)."""
    nid = await hs.db.fetchval("SELECT event_nid FROM events WHERE event_id = $1", event_id)
    shared = await hs.db.fetchval(
        "SELECT COUNT(*) FROM event_push_shared WHERE event_nid = $1", nid
    )
    own = await hs.db.fetchall(
        "SELECT user_id, notify, highlight FROM event_push_actions WHERE event_nid = $1", nid
    )
    return int(shared), sorted((str(r[0]), int(r[1]), int(r[2])) for r in own)


async def notified_bodies(api: Api, user: User, **params: str) -> list[str]:
    r = await api.get("/notifications", token=user.access_token, params=params)
    assert r.status == 200, r.body
    return [n["event"]["content"].get("body", "") for n in r.body["notifications"]]


def room_counts(body: dict[str, Any], room_id: str) -> tuple[int, int]:
    c = counts(body, room_id)
    return c["notification_count"], c["highlight_count"]


@pytest.mark.parametrize("behind", [False, True], ids=["in-step", "evaluation-behind"])
async def test_shared_rows_count_members_joined_at_each_event(
    server: RunningServer, api: Api, behind: bool
) -> None:
    """dave joins after m1, carol leaves before m3 and comes back before m4. With
    evaluation behind, all of it has happened before the first event is evaluated: the
    spans must follow the membership at each event, not the current one."""
    alice, bob, carol, room_id = await room_of_three(api)
    dave = await api.register("dave")
    evaluator = server.hs.sync_area.push_evaluator
    if behind:
        await evaluator.stop()
    m1 = await send_text(api, alice, room_id, "m1", "t1")
    assert (await api.post(f"/join/{room_id}", {}, token=dave.access_token)).status == 200
    m2 = await send_text(api, alice, room_id, "m2", "t2")
    assert (await api.post(f"/rooms/{room_id}/leave", {}, token=carol.access_token)).status == 200
    m3 = await send_text(api, alice, room_id, "m3", "t3")
    assert (await api.post(f"/join/{room_id}", {}, token=carol.access_token)).status == 200
    m4 = await send_text(api, alice, room_id, "m4", "t4")
    if behind:
        server.hs.background.append(evaluator.start())

    assert room_counts(await sync(api, bob), room_id) == (4, 0)
    assert room_counts(await sync(api, dave), room_id) == (3, 0)
    assert room_counts(await sync(api, carol), room_id) == (3, 0)
    assert room_counts(await sync(api, alice), room_id) == (0, 0)  # her own messages
    assert await notified_bodies(api, carol) == ["m4", "m2", "m1"]
    assert await notified_bodies(api, dave) == ["m4", "m3", "m2"]
    assert await notified_bodies(api, alice) == []
    assert await push_rows(server.hs.db, m1) == sorted([bob.user_id, carol.user_id])
    assert await push_rows(server.hs.db, m3) == sorted([bob.user_id, dave.user_id])
    for event_id in (m1, m2, m3, m4):
        assert await rows_of(server.hs, event_id) == (1, [])  # one shared row, no other

    # A receipt resets the count to what follows it, shared rows included.
    r = await api.post(f"/rooms/{room_id}/receipt/m.read/{m2}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    assert room_counts(await sync(api, bob), room_id) == (2, 0)
    r = await api.post(f"/rooms/{room_id}/receipt/m.read/{m3}", {}, token=carol.access_token)
    assert r.status == 200, r.body
    assert room_counts(await sync(api, carol), room_id) == (1, 0)
    # A member who left is not counted for what came after.
    assert (await api.post(f"/rooms/{room_id}/leave", {}, token=dave.access_token)).status == 200
    await send_text(api, alice, room_id, "m5", "t5")
    assert await notified_bodies(api, dave) == ["m4", "m3", "m2"]
    assert room_counts(await sync(api, bob), room_id) == (3, 0)


async def test_exceptions_get_rows_of_their_own(server: RunningServer, api: Api) -> None:
    """A mention and a keyword highlight, a muted room and an override rule: each member
    whose outcome differs from the shared one has a row of their own, the others none."""
    alice, bob, carol, room_id = await room_of_three(api)
    dave = await api.register("dave")
    erin = await api.register("erin")
    frank = await api.register("frank")  # default rules: the shared row is his outcome
    for user in (dave, erin, frank):
        assert (await api.post(f"/join/{room_id}", {}, token=user.access_token)).status == 200
    # carol mutes the room; dave never hears of secrets; erin wants bananas highlighted.
    r = await api.put(f"{G}/room/{room_id}", {"actions": []}, token=carol.access_token)
    assert r.status == 200, r.body
    secret = {
        "conditions": [{"kind": "event_match", "key": "content.body", "pattern": "*secret*"}],
        "actions": [],
    }
    r = await api.put(f"{G}/override/nosecret", secret, token=dave.access_token)
    assert r.status == 200, r.body
    banana = {"pattern": "banana", "actions": ["notify", {"set_tweak": "highlight"}]}
    r = await api.put(f"{G}/content/banana", banana, token=erin.access_token)
    assert r.status == 200, r.body

    plain = await send_text(api, alice, room_id, "hello all", "p1")
    shout = await mention(api, alice, room_id, bob, "p2")
    fruit = await send_text(api, alice, room_id, "a banana", "p3")
    hush = await send_text(api, alice, room_id, "a secret", "p4")

    assert room_counts(await sync(api, bob), room_id) == (4, 1)
    assert room_counts(await sync(api, carol), room_id) == (0, 0)
    assert room_counts(await sync(api, dave), room_id) == (3, 0)
    assert room_counts(await sync(api, erin), room_id) == (4, 1)
    assert room_counts(await sync(api, frank), room_id) == (4, 0)

    # dave's own rule did not match "hello all": the shared row covers him, no row.
    assert await rows_of(server.hs, plain) == (1, [(carol.user_id, 0, 0)])
    assert await rows_of(server.hs, shout) == (1, [(bob.user_id, 1, 1), (carol.user_id, 0, 0)])
    assert await rows_of(server.hs, fruit) == (1, [(carol.user_id, 0, 0), (erin.user_id, 1, 1)])
    assert await rows_of(server.hs, hush) == (1, [(carol.user_id, 0, 0), (dave.user_id, 0, 0)])
    assert await push_rows(server.hs.db, hush) == sorted([bob.user_id, erin.user_id, frank.user_id])

    assert await notified_bodies(api, carol) == []
    assert await notified_bodies(api, dave) == ["a banana", "look", "hello all"]
    assert await notified_bodies(api, bob, only="highlight") == ["look"]
    assert await notified_bodies(api, erin, only="highlight") == ["a banana"]
    assert await notified_bodies(api, erin, limit="2") == ["a secret", "a banana"]
    r = await api.get("/notifications", token=erin.access_token, params={"limit": "2"})
    older = r.body["next_token"]
    assert await notified_bodies(api, erin, limit="2", **{"from": older}) == ["look", "hello all"]


async def test_an_event_nobody_is_notified_of_by_default_has_no_shared_row(
    server: RunningServer, api: Api
) -> None:
    """A notice (``.m.rule.suppress_notices``) notifies nobody by default: no shared row,
    and only a member whose own rules notify them has a row."""
    alice, bob, carol, room_id = await room_of_three(api)
    loud = {
        "conditions": [{"kind": "event_match", "key": "content.msgtype", "pattern": "m.notice"}],
        "actions": ["notify"],
    }
    r = await api.put(f"{G}/override/notices", loud, token=bob.access_token)
    assert r.status == 200, r.body
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/n1",
        {"msgtype": "m.notice", "body": "bot says"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    notice = r.body["event_id"]
    assert room_counts(await sync(api, bob), room_id) == (1, 0)
    assert room_counts(await sync(api, carol), room_id) == (0, 0)
    assert await rows_of(server.hs, notice) == (0, [(bob.user_id, 1, 0)])


async def test_a_message_writes_one_push_row_however_big_the_room(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        owner = await api.register("owner")
        small, _ = await room_with_members(api, hs, owner, 10, "s")
        big, reader = await room_with_members(api, hs, owner, 200, "b")
        evaluator = hs.sync_area.push_evaluator
        costs = []
        for room_id in (small, big):
            await send_text(api, owner, room_id, "warm up", f"w{room_id}")
            await sync(api, owner)  # evaluated: the spans of the room are written
            await evaluator.stop()
            event_id = await send_text(api, owner, room_id, "hello", f"h{room_id}")
            with count_statements() as counter:
                await evaluator.step()
            hs.background.append(evaluator.start())
            costs.append((counter.total, await rows_of(hs, event_id)))
        (small_statements, small_rows), (big_statements, big_rows) = costs
        assert small_rows == big_rows == (1, [])  # one shared row, nothing else
        assert big_statements == small_statements
        spans = await hs.db.fetchval(
            "SELECT COUNT(*) FROM push_member_spans m JOIN rooms r ON r.room_nid = m.room_nid"
            " WHERE r.room_id = $1 AND m.end_so IS NULL",
            big,
        )
        assert spans == 200
        assert room_counts(await sync(api, reader), big) == (2, 0)
