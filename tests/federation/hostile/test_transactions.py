"""Hostile transaction bodies (server-server "Transactions"): too many PDUs or EDUs,
bytes that are not UTF-8, JSON with duplicate keys, lone surrogates or absurd
nesting. Each is refused whole with a Matrix error, logged once with the origin,
and nothing in it is processed."""

from __future__ import annotations

import json
from typing import Any

from tests.federation.hostile.support import Arena

SEND = "/_matrix/federation/v1/send/"


async def refused_whole(arena: Arena, uri: str, raw: bytes, signed: Any) -> dict[str, Any]:
    """Send ``raw`` as a transaction body; a 400 Matrix error, the room as before."""
    before = await arena.snapshot()
    arena.clear_logs()
    reply = await arena.peer.send_raw(arena.name, "PUT", uri, raw, signed)
    assert reply.status == 400, reply.body
    assert isinstance(reply.body, dict) and isinstance(reply.body.get("error"), str), reply.body
    assert reply.body.get("errcode") in ("M_NOT_JSON", "M_BAD_JSON"), reply.body
    assert await arena.snapshot() == before
    arena.assert_logged_once()
    return dict(reply.body)


async def test_more_than_50_pdus_refused_whole(arena: Arena) -> None:
    valid = arena.peer.event(arena.room, "m.room.message", arena.message())
    junk = [{"room_id": arena.room_id, "n": i} for i in range(50)]
    body = arena.peer.transaction([valid.pdu, *junk])
    raw = json.dumps(body).encode()
    answer = await refused_whole(arena, SEND + "many-pdus", raw, body)
    assert answer["errcode"] == "M_BAD_JSON"


async def test_more_than_100_edus_refused_whole(arena: Arena) -> None:
    typing = {
        "edu_type": "m.typing",
        "content": {
            "room_id": arena.room_id,
            "user_id": arena.peer.user("mallory"),
            "typing": True,
        },
    }
    body = arena.peer.transaction([], [typing] * 101)
    await refused_whole(arena, SEND + "many-edus", json.dumps(body).encode(), body)


async def test_invalid_utf8_refused(arena: Arena) -> None:
    event = arena.peer.event(arena.room, "m.room.message", arena.message())
    body = arena.peer.transaction([event.pdu])
    raw = (
        json.dumps(body)
        .encode()
        .replace(arena.secret.encode(), b"\xff\xfe" + arena.secret.encode())
    )
    await refused_whole(arena, SEND + "bad-utf8", raw, body)


async def test_lone_surrogate_refused(arena: Arena) -> None:
    event = arena.peer.event(arena.room, "m.room.message", arena.message())
    body = arena.peer.transaction([event.pdu])
    raw = (
        json.dumps(body).encode().replace(arena.secret.encode(), b"\\ud800" + arena.secret.encode())
    )
    await refused_whole(arena, SEND + "surrogate", raw, body)


async def test_duplicate_keys_refused(arena: Arena) -> None:
    """Two readers of ``{"body": "a", "body": "b"}`` may disagree on the event: refused."""
    event = arena.peer.event(arena.room, "m.room.message", arena.message("shown"))
    body = arena.peer.transaction([event.pdu])
    text = json.dumps(body)
    dup = text.replace('"body": "shown"', f'"body": "shown", "body": "{arena.secret}"')
    assert dup != text
    # Signed as a last-wins parser reads it, so only the duplicate can be the reason.
    await refused_whole(arena, SEND + "dup-in-pdu", dup.encode(), json.loads(dup))
    # At the top level too.
    dup = text.replace('"pdus": [', '"pdus": [], "pdus": [', 1)
    await refused_whole(arena, SEND + "dup-top", dup.encode(), json.loads(dup))


async def test_absurd_nesting_refused(arena: Arena) -> None:
    """Nesting deeper than any parser's stack: a 400, never a 500."""
    body = arena.peer.transaction([])
    depth = 100_000
    raw = json.dumps(body)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
    await refused_whole(arena, SEND + "nested", raw.encode(), body)


async def test_deeply_nested_content_in_a_pdu(arena: Arena) -> None:
    """Nesting a parser accepts but that is absurd for an event: dropped, no 500."""
    deep: Any = arena.secret
    for _ in range(900):
        deep = [deep]
    fields = arena.peer.event_fields(arena.room, "m.room.message", arena.message(deep=[]))
    fields["content"] = {**fields["content"], "deep": deep}
    pdu = dict(fields, hashes={"sha256": "x"}, signatures={}, origin_server_ts=1)
    body = arena.peer.transaction([pdu])
    before = await arena.snapshot()
    arena.clear_logs()
    raw = json.dumps(body).encode()
    reply = await arena.peer.send_raw(arena.name, "PUT", SEND + "deep-pdu", raw, body)
    assert reply.status in (200, 400), reply.body
    if reply.status == 200:
        assert all("error" in v for v in reply.body["pdus"].values())
    assert await arena.snapshot() == before


async def test_body_over_the_size_limit_refused(arena: Arena) -> None:
    limit = arena.hs.hs.config.limits.max_json_body_bytes
    event = arena.peer.event(arena.room, "m.room.message", arena.message())
    body = {**arena.peer.transaction([event.pdu]), "pad": "x" * limit}
    before = await arena.snapshot()
    arena.clear_logs()
    reply = await arena.peer.send_raw(
        arena.name, "PUT", SEND + "huge", json.dumps(body).encode(), body
    )
    assert (reply.status, reply.body["errcode"]) == (413, "M_TOO_LARGE")
    assert await arena.snapshot() == before
    arena.assert_logged_once()


async def test_transaction_claiming_another_origin_refused(arena: Arena) -> None:
    event = arena.peer.event(arena.room, "m.room.message", arena.message())
    body = {**arena.peer.transaction([event.pdu]), "origin": arena.name}
    answer = await refused_whole(arena, SEND + "other-origin", json.dumps(body).encode(), body)
    assert answer["errcode"] == "M_BAD_JSON"
