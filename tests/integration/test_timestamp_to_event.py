"""GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event ("jump to date")."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text

PATH = "/_matrix/client/v1/rooms/{}/timestamp_to_event"


async def lookup(api: Api, user: User, room: str, ts: int | str, direction: str) -> Any:
    return await api.get(
        PATH.format(room), token=user.access_token, params={"ts": str(ts), "dir": direction}
    )


async def test_nearest_event_each_way(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(api, alice)
    for i in range(5):
        await send_text(api, alice, room, f"m{i}", f"t{i}")
    r = await api.get(
        f"/rooms/{room}/messages", token=alice.access_token, params={"dir": "f", "limit": "50"}
    )
    events = [(e["origin_server_ts"], e["event_id"]) for e in r.body["chunk"]]
    middle_ts = events[len(events) // 2][0]

    r = await lookup(api, alice, room, middle_ts, "f")
    assert r.status == 200, r.body
    # The first event (in room order) at or after the timestamp.
    assert r.body == {
        "event_id": next(e for ts, e in events if ts >= middle_ts),
        "origin_server_ts": middle_ts,
    }
    r = await lookup(api, alice, room, middle_ts, "b")
    assert r.body["event_id"] == [e for ts, e in events if ts <= middle_ts][-1]
    r = await lookup(api, alice, room, events[-1][0] + 10_000, "b")
    assert r.body["event_id"] == events[-1][1]

    r = await lookup(api, alice, room, events[-1][0] + 10_000, "f")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    r = await lookup(api, alice, room, 0, "b")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    for ts, direction in (("x", "f"), ("1", "up"), ("-5", "f")):
        r = await lookup(api, alice, room, ts, direction)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), (ts, direction)
    r = await api.get(PATH.format(room), token=alice.access_token, params={"ts": "1"})
    assert (r.status, r.errcode) == (400, "M_MISSING_PARAM")
    r = await lookup(api, bob, room, middle_ts, "f")
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    r = await api.get(PATH.format(room), params={"ts": "1", "dir": "f"})
    assert r.status == 401
