"""A sync filter's ``room.rooms`` / ``room.not_rooms`` limit the joined rooms of an
incremental /sync (spec: "Filtering"). The builder skips the per-room check when the
filter names no room (the usual filter); these show the check still runs when it does,
and that the same user's unfiltered sync sees every room."""

from __future__ import annotations

import itertools
import json

from tests.integration.sync_support import TwoUsers
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text

_TXN = itertools.count()


async def _joined_after_one_message_each(
    t: TwoUsers, filter_: dict[str, object] | None, rooms: list[str], since: str
) -> set[str]:
    for i, room in enumerate(rooms):
        await send_text(t.api, t.alice, room, f"news {i}", f"filter-{next(_TXN)}")
    params = {"since": since, "timeout": "0"}
    if filter_ is not None:
        params["filter"] = json.dumps(filter_)
    r = await t.api.get("/sync", token=t.alice.access_token, params=params)
    assert r.status == 200, r.body
    return set(r.body["rooms"]["join"])


async def test_incremental_sync_honours_rooms_and_not_rooms(alice_and_bob: TwoUsers) -> None:
    t = alice_and_bob
    a = await create_room(t.api, t.alice)
    b = await create_room(t.api, t.alice)
    since = await t.next_batch(t.alice)

    assert await _joined_after_one_message_each(t, None, [a, b], since) == {a, b}
    assert await _joined_after_one_message_each(t, {"room": {"rooms": [a]}}, [a, b], since) == {a}
    not_a = {"room": {"not_rooms": [a]}}
    assert await _joined_after_one_message_each(t, not_a, [a, b], since) == {b}
    # not_rooms wins over rooms (spec).
    both = {"room": {"rooms": [a, b], "not_rooms": [b]}}
    assert await _joined_after_one_message_each(t, both, [a, b], since) == {a}
    assert await _joined_after_one_message_each(t, {"room": {"rooms": []}}, [a, b], since) == set()
