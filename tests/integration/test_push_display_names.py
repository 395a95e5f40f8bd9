"""A ``contains_display_name`` push condition with the names read from ``room_memberships``
(homeserver/push/notifications.py, ``MembershipStore.push_members``): a member's current
name highlights, a rename after the message (evaluation lagging) does not count for it,
and a room from before migration 0340, whose rows may lack names, still reads them from
the member events."""

from __future__ import annotations

from homeserver.app import RunningServer
from tests.helpers import Api, User
from tests.integration.test_push_background import counts, push_rows, room_of_three
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_sections import sync


async def rename(api: Api, user: User, name: str) -> None:
    r = await api.put(
        f"/profile/{user.user_id}/displayname", {"displayname": name}, token=user.access_token
    )
    assert r.status == 200, r.body


async def highlight_my_name(api: Api, user: User) -> None:
    """The legacy ``.m.rule.contains_display_name`` is gone from the defaults (v1.17);
    a user may still have a rule of their own with that condition."""
    r = await api.put(
        "/pushrules/global/override/my_name",
        {
            "conditions": [{"kind": "contains_display_name"}],
            "actions": ["notify", {"set_tweak": "highlight"}],
        },
        token=user.access_token,
    )
    assert r.status == 200, r.body


async def highlights(api: Api, user: User, room_id: str) -> int:
    return counts(await sync(api, user), room_id)["highlight_count"]


async def test_current_display_name_highlights_and_a_later_rename_does_not(
    server: RunningServer, api: Api
) -> None:
    alice, bob, carol, room_id = await room_of_three(api)
    await highlight_my_name(api, bob)
    await rename(api, bob, "Robertino")
    await send_text(api, alice, room_id, "hi ROBERTINO, lunch?", "t1")
    assert await highlights(api, bob, room_id) == 1
    assert await highlights(api, carol, room_id) == 0
    # Evaluation falls behind; the message names bob's *next* name, which he takes later.
    evaluator = server.hs.sync_area.push_evaluator
    await evaluator.stop()
    early = await send_text(api, alice, room_id, "hey bobbo", "t2")
    await rename(api, bob, "Bobbo")
    server.hs.background.append(evaluator.start())
    assert await highlights(api, bob, room_id) == 1  # still only the first message
    assert bob.user_id in await push_rows(server.hs.db, early)  # notified, not highlighted
    await send_text(api, alice, room_id, "bobbo, now you", "t3")
    assert await highlights(api, bob, room_id) == 2


async def test_a_room_whose_rows_lack_names_reads_the_member_events(
    server: RunningServer, api: Api
) -> None:
    alice, bob, _carol, room_id = await room_of_three(api)
    await highlight_my_name(api, bob)
    await rename(api, bob, "Robertino")
    db = server.hs.db
    room = await server.hs.rooms_area.rooms.rooms.get_room(room_id)
    assert room is not None
    # As a room from before migration 0340 that the backfill has not reached yet.
    await db.execute(
        "UPDATE room_memberships SET displayname = NULL WHERE room_nid = $1", room.room_nid
    )
    await db.execute(
        "UPDATE rooms SET directory_flags_known = 0 WHERE room_nid = $1", room.room_nid
    )
    await send_text(api, alice, room_id, "robertino?", "t1")
    assert await highlights(api, bob, room_id) == 1
