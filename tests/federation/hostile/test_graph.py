"""Hostile event graphs: prev_events leading into an endless past, auth_events chains
the peer makes us walk one event at a time, and answers that loop back to the event
being processed. Work stays bounded, the events are refused, each logged once."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from aiohttp import web

from federation.pdu.pipeline import PREVS_NOT_GIVEN
from homeserver.events.model import Event
from tests.federation.hostile.support import Arena
from tests.federation.scripted_peer import matrix_error

FED = "/_matrix/federation/v1"


def serve_events(arena: Arena, events: dict[str, Event]) -> None:
    """``/event/{id}`` answers from ``events``; ``/event_auth`` and ``/state_ids`` refuse."""

    async def event(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        found = events.get(params["eventId"])
        if found is None:
            return matrix_error(404, "M_NOT_FOUND", "Unknown event")
        return web.json_response(
            {"origin": arena.peer.server_name, "origin_server_ts": 1, "pdus": [found.pdu]}
        )

    async def refuse(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        return matrix_error(404, "M_NOT_FOUND", "Not telling")

    arena.peer.route("GET", FED + "/event/{eventId}", event)
    arena.peer.route("GET", FED + "/event_auth/{roomId}/{eventId}", refuse)
    arena.peer.route("GET", FED + "/state_ids/{roomId}", refuse)
    arena.peer.route("GET", FED + "/state/{roomId}", refuse)


def requests_by_kind(arena: Arena) -> Counter[str]:
    return Counter(r.path.split("/")[4] for r in arena.peer.received if r.path.startswith(FED))


def assert_each_logged_once(arena: Arena, event_ids: list[str]) -> None:
    lines = arena.lines_naming(arena.peer.server_name)
    for event_id in event_ids:
        assert len([line for line in lines if event_id in line]) <= 1, (event_id, lines)
    for r in arena.caplog.records:
        assert arena.secret not in r.getMessage()


def endless_past(arena: Arena, length: int) -> list[Event]:
    """Messages chained by prev_events whose oldest cites an event that never existed."""
    peer, room = arena.peer, arena.room
    chain: list[Event] = []
    prev = ["$" + "A" * 43]
    for i in range(length):
        fields = peer.event_fields(room, "m.room.message", arena.message(f"{arena.secret}-{i}"))
        fields.update(prev_events=prev, depth=room.depth + 10_000 + i)
        event = peer.build(room.version, fields)
        chain.append(event)
        prev = [event.event_id]
    return chain


async def test_prev_events_into_an_endless_past(arena: Arena) -> None:
    chain = endless_past(arena, 60)

    async def missing(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        limit = body.get("limit", 10) if isinstance(body, dict) else 10
        # Always the events just before the latest asked for: there is no bottom.
        latest = body["latest_events"][0] if isinstance(body, dict) else ""
        at = next((i for i, e in enumerate(chain) if e.event_id == latest), len(chain))
        return web.json_response({"events": [e.pdu for e in chain[max(0, at - limit) : at]]})

    serve_events(arena, {e.event_id: e for e in chain})
    arena.peer.route("POST", FED + "/get_missing_events/{roomId}", missing)
    before = await arena.snapshot()
    arena.clear_logs()
    latest = chain[-1]
    reply = await arena.send([latest.pdu])
    assert "error" in reply.body["pdus"][latest.event_id]
    assert await arena.snapshot() == before
    asked = requests_by_kind(arena)
    assert asked["get_missing_events"] <= 1, asked
    assert sum(asked.values()) <= 50, asked
    assert_each_logged_once(arena, [e.event_id for e in chain])
    print(f"\nendless past: requests made to the peer {dict(asked)}")


async def test_missing_events_answer_loops_back(arena: Arena) -> None:
    """get_missing_events answers with the event itself and its own descendants."""
    chain = endless_past(arena, 5)
    latest = chain[2]

    async def missing(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        return web.json_response({"events": [e.pdu for e in chain[2:]] * 3})

    serve_events(arena, {e.event_id: chain[2] for e in chain})  # every id answers the same
    arena.peer.route("POST", FED + "/get_missing_events/{roomId}", missing)
    before = await arena.snapshot()
    arena.clear_logs()
    reply = await arena.send([latest.pdu])
    assert "error" in reply.body["pdus"][latest.event_id]
    assert await arena.snapshot() == before
    asked = requests_by_kind(arena)
    assert asked["get_missing_events"] <= 1 and sum(asked.values()) <= 50, asked
    assert_each_logged_once(arena, [e.event_id for e in chain])


def member_chain(arena: Arena, length: int) -> list[Event]:
    """Mallory's profile changes, each citing the previous one as its auth event."""
    peer, room = arena.peer, arena.room
    mallory = peer.user("mallory")
    chain: list[Event] = []
    for i in range(length):
        content = {"membership": "join", "displayname": f"m{i}"}
        fields = peer.event_fields(room, "m.room.member", content, state_key=mallory)
        if chain:
            own = room.state[("m.room.member", mallory)].event_id
            fields["auth_events"] = [
                chain[-1].event_id if a == own else a for a in fields["auth_events"]
            ]
        fields["depth"] = room.depth + 1 + i
        chain.append(peer.build(room.version, fields))
    return chain


async def test_auth_events_walked_one_by_one_is_bounded(arena: Arena) -> None:
    """The peer refuses /event_auth and makes us fetch a 300-long auth chain by /event."""
    chain = member_chain(arena, 300)
    serve_events(arena, {e.event_id: e for e in chain})
    own = arena.room.state[("m.room.member", arena.peer.user("mallory"))].event_id
    fields = arena.peer.event_fields(arena.room, "m.room.message", arena.message())
    fields["auth_events"] = [chain[-1].event_id if a == own else a for a in fields["auth_events"]]
    event = arena.peer.build(arena.room.version, fields)
    before = await arena.snapshot()
    arena.clear_logs()
    reply = await arena.send([event.pdu])
    assert reply.status == 200
    assert reply.body["pdus"][event.event_id] == {"error": "Missing auth events"}
    assert await arena.snapshot() == before
    asked = requests_by_kind(arena)
    assert sum(asked.values()) <= 50, asked
    line = arena.assert_logged_once()
    assert event.event_id in line
    print(f"\nauth chain walk: requests made to the peer {dict(asked)}")


async def test_auth_events_answer_loops_back(arena: Arena) -> None:
    """/event for a missing auth event answers with the event being checked."""
    fields = arena.peer.event_fields(arena.room, "m.room.message", arena.message())
    fields["auth_events"] = [*fields["auth_events"], "$" + "B" * 43]
    event = arena.peer.build(arena.room.version, fields)
    serve_events(arena, {"$" + "B" * 43: event})

    async def auth(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        return web.json_response({"auth_chain": [event.pdu] * 5})

    arena.peer.route("GET", FED + "/event_auth/{roomId}/{eventId}", auth)
    before = await arena.snapshot()
    arena.clear_logs()
    reply = await arena.send([event.pdu])
    assert reply.body["pdus"][event.event_id] == {"error": "Missing auth events"}
    assert await arena.snapshot() == before
    assert sum(requests_by_kind(arena).values()) <= 10
    assert event.event_id in arena.assert_logged_once()


async def test_answer_nested_too_deeply(arena: Arena) -> None:
    """/get_missing_events and /state_ids answer with JSON nested past any parser's
    stack: the event is refused like any unanswered one, and nothing crashes."""
    chain = endless_past(arena, 3)

    async def nested(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        depth = 100_000
        return web.Response(body=b"[" * depth + b"]" * depth, content_type="application/json")

    arena.peer.route("POST", FED + "/get_missing_events/{roomId}", nested)
    arena.peer.route("GET", FED + "/state_ids/{roomId}", nested)
    before = await arena.snapshot()
    arena.clear_logs()
    reply = await arena.send([chain[-1].pdu])
    assert reply.body["pdus"][chain[-1].event_id] == {"error": PREVS_NOT_GIVEN}
    assert await arena.snapshot() == before
    assert [r for r in arena.caplog.records if r.levelno >= logging.ERROR] == []
    assert chain[-1].event_id in arena.assert_logged_once()
