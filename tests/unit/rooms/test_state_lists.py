"""``StateList`` (homeserver/rooms/state_lists.py): the kept answer is a ``%``-template;
rendering it must give each event's JSON with its own age, content with ``%`` as
written, no negative age for an event stamped ahead of our clock, and a redacted
event's JSON (encoded per request) in its own place."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any, cast

from homeserver.rooms import client_json
from homeserver.rooms.state_lists import StateList
from homeserver.rooms.store.events_store import StoredEvent

NOW = 1_000_000


def head(name: str, ts: int) -> tuple[bytes, int]:
    event = {"content": {"displayname": name}, "origin_server_ts": ts, "type": "m.room.member"}
    return client_json.head(event, {"prev_content": {"displayname": f"{name}%"}}), ts


def test_ages_and_percent_signs() -> None:
    names = ["plain", "100% %d %s %% %(x)s", "%"]
    heads = [head(n, NOW - 10 * (i + 1)) for i, n in enumerate(names)]
    stored = [cast(StoredEvent, object()) for _ in names]
    kept = StateList(stored, heads)
    out: list[dict[str, Any]] = json.loads(kept.render(NOW, []))
    assert [e["content"]["displayname"] for e in out] == names
    assert [e["unsigned"]["prev_content"]["displayname"] for e in out] == [n + "%" for n in names]
    assert [e["unsigned"]["age"] for e in out] == [10, 20, 30]
    later: list[dict[str, Any]] = json.loads(kept.render(NOW + 5, []))
    assert [e["unsigned"]["age"] for e in later] == [15, 25, 35]


def test_an_event_from_the_future_has_age_zero() -> None:
    heads = [head("ahead", NOW + 500), head("behind", NOW - 7)]
    kept = StateList([cast(StoredEvent, object())] * 2, heads)
    out = json.loads(kept.render(NOW, []))
    assert [e["unsigned"]["age"] for e in out] == [0, 7]


def test_a_redacted_event_takes_its_slot() -> None:
    redacted = cast(StoredEvent, object())
    heads = [head("a", NOW - 1), None, head("c", NOW - 3)]
    kept = StateList([cast(StoredEvent, object()), redacted, cast(StoredEvent, object())], heads)
    assert [s for _, s in kept.redacted] == [redacted]
    part = b'{"content":{},"type":"m.room.member","unsigned":{"age":4,"x":"%d"}}'
    out = json.loads(kept.render(NOW, [part]))
    assert out[1] == json.loads(part)
    assert [out[0]["unsigned"]["age"], out[2]["unsigned"]["age"]] == [1, 3]
    assert json.loads(StateList([], []).render(NOW, [])) == []


def test_building_a_big_answer_copies_it_once() -> None:
    """The template is the heads joined once (a copy only where a ``%`` is escaped):
    a big room's first read of its member list held a copy per head plus one per
    concatenation at once, several times the answer (the joining server's peak RSS)."""
    name = "a member of a big room with a display name of an ordinary length"
    heads = []
    for i in range(3000):
        event = {
            "content": {"displayname": f"{name} {i}", "membership": "join"},
            "event_id": f"$event{i:040d}",
            "origin_server_ts": NOW - i,
            "room_id": "!abcdefghijklmnopqrstu:server.example.org",
            "sender": f"@member{i}:server.example.org",
            "state_key": f"@member{i}:server.example.org",
            "type": "m.room.member",
        }
        heads.append((client_json.head(event, {}), NOW - i))
    stored = [cast(StoredEvent, object())] * len(heads)
    tracemalloc.start()
    try:
        kept = StateList(stored, heads)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(kept.body) > 3000 * 300
    assert peak < 1.6 * len(kept.body)
    out = json.loads(kept.render(NOW, []))
    assert [e["unsigned"]["age"] for e in out[:3]] == [0, 1, 2]
    assert out[2999]["content"]["displayname"] == f"{name} 2999"
