"""``GET /members`` and ``GET /state`` answers are kept whole per state (homeserver/rooms/
state_lists.py): the kept answer must equal the per-event path (``RoomReader.state``,
through the serializer) for a joined requester, for one who left (the state at their
leave), for every ``membership`` / ``not_membership`` filter and for ``at``; content with
``%`` in it (the template's own character) must come out as written; and a change made by
another process (a redaction, over the bus) must reach the kept answer.
"""

from __future__ import annotations

from typing import Any

from homeserver.app import RunningServer
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_state_lists_json import ok, without_age
from tests.processes import eventually, room_with

# Every character the template treats specially, as a client may write it.
PERCENT_NAME = "100% %d %s %% %(x)s"
FILTERS: list[dict[str, str]] = [
    {},
    *({"membership": m} for m in ("join", "invite", "leave", "ban")),
    *({"not_membership": m} for m in ("join", "invite", "leave", "ban")),
    {"membership": "join", "not_membership": "leave"},
    {"membership": "leave", "not_membership": "leave"},
]


def expected_members(state: list[dict[str, Any]], flt: dict[str, str]) -> list[dict[str, Any]]:
    """What ``GET /members`` lists of ``state`` (client events): member events by user
    id, filtered as the spec says."""
    members = sorted(
        (e for e in state if e["type"] == "m.room.member"), key=lambda e: e["state_key"]
    )
    want, unwanted = flt.get("membership"), flt.get("not_membership")
    return [
        e
        for e in members
        if (want is None or e["content"]["membership"] == want)
        and (unwanted is None or e["content"]["membership"] != unwanted)
    ]


async def members(api: Api, user: User, room: str, params: dict[str, str]) -> list[Any]:
    body = await ok(await api.get(f"/rooms/{room}/members", token=user.access_token, params=params))
    chunk: list[Any] = body["chunk"]
    return chunk


async def check_answers(server: RunningServer, api: Api, user: User, room: str) -> None:
    """``user``'s /state and /members (each filter), built and then kept, against the
    serializer's per-event answer."""
    reference = await server.hs.rooms_area.reader.state(user.user_id, room)
    for _ in range(2):  # built, then served from what the first answer kept
        state = await ok(await api.get(f"/rooms/{room}/state", token=user.access_token))
        assert without_age(state) == without_age(reference)
        for flt in FILTERS:
            listed = await members(api, user, room, flt)
            assert without_age(listed) == without_age(expected_members(reference, flt)), flt


async def test_answers_equal_the_per_event_path_for_each_requester_and_filter(
    server: RunningServer, api: Api
) -> None:
    alice, bob, carol, dave, eve, frank = [
        await api.register(n) for n in ("alice", "bob", "carol", "dave", "eve", "frank")
    ]
    room = await create_room(api, alice, preset="public_chat", topic="first")
    for user in (bob, carol, eve):
        await ok(await api.post(f"/rooms/{room}/join", {}, token=user.access_token))
    await ok(
        await api.put(
            f"/rooms/{room}/state/m.room.member/{bob.user_id}",
            {"membership": "join", "displayname": PERCENT_NAME},
            token=bob.access_token,
        )
    )
    await ok(
        await api.post(f"/rooms/{room}/invite", {"user_id": dave.user_id}, token=alice.access_token)
    )
    await ok(
        await api.post(f"/rooms/{room}/ban", {"user_id": eve.user_id}, token=alice.access_token)
    )
    await ok(await api.post(f"/rooms/{room}/leave", {}, token=carol.access_token))
    await check_answers(server, api, alice, room)
    listed = await members(api, alice, room, {})
    bobs = next(e for e in listed if e["state_key"] == bob.user_id)
    assert bobs["content"]["displayname"] == PERCENT_NAME
    assert {e["state_key"]: e["content"]["membership"] for e in listed} == {
        alice.user_id: "join",
        bob.user_id: "join",
        carol.user_id: "leave",
        dave.user_id: "invite",
        eve.user_id: "ban",
    }

    # A token from now, then changes after it.
    before = await ok(await api.get("/sync", token=alice.access_token, params={"timeout": "0"}))
    at = before["next_batch"]
    at_then = {tuple(sorted(f.items())): await members(api, alice, room, f) for f in FILTERS}
    await ok(await api.post(f"/rooms/{room}/join", {}, token=frank.access_token))
    await ok(
        await api.put(
            f"/rooms/{room}/state/m.room.topic", {"topic": "second"}, token=alice.access_token
        )
    )
    await check_answers(server, api, alice, room)

    # Carol left before those: she reads the state at her leave, kept apart from the
    # current one, and so does everyone's ``at`` from before them.
    await check_answers(server, api, carol, room)
    await check_answers(server, api, eve, room)  # banned: the state at her ban
    # Dave, only invited, may read neither (the room is not world-readable).
    for path in ("members", "state"):
        r = await api.get(f"/rooms/{room}/{path}", token=dave.access_token)
        assert r.status == 403 and r.body["errcode"] == "M_FORBIDDEN", r.body
    frozen = await ok(await api.get(f"/rooms/{room}/state", token=carol.access_token))
    assert next(e for e in frozen if e["type"] == "m.room.topic")["content"]["topic"] == "first"
    assert frank.user_id not in {e["state_key"] for e in await members(api, carol, room, {})}
    for _ in range(2):
        for flt in FILTERS:
            listed = await members(api, alice, room, {**flt, "at": at})
            assert without_age(listed) == without_age(at_then[tuple(sorted(flt.items()))]), flt
    # The current answer still has frank (the kept answers are per state).
    assert frank.user_id in {e["state_key"] for e in await members(api, alice, room, {})}


async def test_a_redaction_in_another_process_reaches_the_kept_answer(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    """The redaction changes no state, only an event: the worker's ``EventStore.forget``
    reaches main over the bus, and main's kept answers must not outlive it."""
    main, other = pair
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        alice = await a.register("alice")
        bob = await b.register("bob")
        room = await room_with(a, alice, b, bob)
        named = await ok(
            await b.put(
                f"/rooms/{room}/state/m.room.member/{bob.user_id}",
                {"membership": "join", "displayname": "Bob"},
                token=bob.access_token,
            )
        )

        def bobs(events: list[dict[str, Any]]) -> dict[str, Any]:
            return next(e for e in events if e.get("state_key") == bob.user_id)

        r = await eventually(
            lambda: a.get(f"/rooms/{room}/members", token=alice.access_token),
            lambda r: (
                r.status == 200 and bobs(r.body["chunk"])["content"].get("displayname") == "Bob"
            ),
        )
        assert bobs(r.body["chunk"])["content"]["displayname"] == "Bob", r.body
        state = await ok(await a.get(f"/rooms/{room}/state", token=alice.access_token))
        assert bobs(state)["content"]["displayname"] == "Bob"
        red = await ok(
            await b.put(f"/rooms/{room}/redact/{named['event_id']}/r1", {}, token=bob.access_token)
        )

        def redacted(r: Any) -> bool:
            events = r.body["chunk"] if isinstance(r.body, dict) else r.body
            unsigned = bobs(events)["unsigned"]
            return bool(
                r.status == 200
                and unsigned.get("redacted_because", {}).get("event_id") == red["event_id"]
            )

        for path in ("members", "state"):
            r = await eventually(
                lambda p=path: a.get(f"/rooms/{room}/{p}", token=alice.access_token), redacted
            )
            assert redacted(r), r.body
            events = r.body["chunk"] if path == "members" else r.body
            assert bobs(events)["content"] == {"membership": "join"}
