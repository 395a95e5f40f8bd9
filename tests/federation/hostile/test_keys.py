"""Hostile keys: a server key whose ``valid_until_ts`` has passed (rooms v5+: a key
signs only events up to that time; requests need a key valid now), and a notary
that answers with keys of a server it was not asked about."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from homeserver.events.keys import generate_signing_key, verify_key_base64
from homeserver.events.signing import sign_json
from tests.conftest import ServerFactory, free_port
from tests.federation.fedutil import fed
from tests.federation.hostile.conftest import build_arena
from tests.federation.hostile.support import Arena
from tests.federation.scripted_peer import ScriptedPeer

HOUR_MS = 3600 * 1000


@pytest.fixture
async def stale(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    """A second peer whose published key stopped being valid an hour ago."""
    async with ScriptedPeer(tmp_path / "stale") as p:
        p.key_valid_until_ts = int(time.time() * 1000) - HOUR_MS
        yield p


async def test_requests_signed_with_an_expired_key_are_refused(
    arena: Arena, stale: ScriptedPeer
) -> None:
    before = await arena.snapshot()
    arena.clear_logs()
    reply = await stale.send_transaction(arena.name, [], [])
    assert (reply.status, reply.body["errcode"]) == (401, "M_UNAUTHORIZED")
    assert await arena.snapshot() == before
    arena.assert_logged_once(stale.server_name)


async def test_events_signed_after_their_key_expired_are_dropped(
    arena: Arena, stale: ScriptedPeer
) -> None:
    """Relayed by the joined peer: an event of the stale server's user, signed at
    "now", is dropped for its signature; the same signed before the key's end gets
    as far as the auth rules (its sender is not in the room)."""
    now = int(time.time() * 1000)
    eve = stale.user("eve")
    late = stale.build(
        arena.room.version,
        {
            **arena.peer.event_fields(arena.room, "m.room.message", arena.message(), sender=eve),
            "origin_server_ts": now,
        },
    )
    early = stale.build(
        arena.room.version,
        {
            **arena.peer.event_fields(arena.room, "m.room.message", arena.message(), sender=eve),
            "origin_server_ts": now - 2 * HOUR_MS,
        },
    )
    before = await arena.snapshot()
    arena.clear_logs()
    reply = await arena.send([late.pdu, early.pdu])
    assert reply.status == 200
    assert set(reply.body["pdus"]) == {late.event_id, early.event_id}
    assert reply.body["pdus"][late.event_id]["error"] == "Invalid event or signature"
    assert reply.body["pdus"][early.event_id].get("error") != "Invalid event or signature"
    assert await arena.snapshot() == before
    lines = arena.lines_naming(arena.peer.server_name)
    assert len(lines) == 2, lines  # one per event
    (dropped,) = [line for line in lines if late.event_id in line]
    assert "no valid key" in dropped or "no trusted key" in dropped


def foreign_key_response(server_name: str) -> dict[str, Any]:
    """A self-signed key response of ``server_name``, as a notary could relay it."""
    key = generate_signing_key("z" + secrets.token_hex(2))
    body = {
        "server_name": server_name,
        "verify_keys": {key.key_id: {"key": verify_key_base64(key)}},
        "old_verify_keys": {},
        "valid_until_ts": int(time.time() * 1000) + HOUR_MS,
    }
    return sign_json(body, server_name, key)


async def test_notary_answer_for_a_server_not_asked_about_is_ignored(
    make_server: ServerFactory,
    peer: ScriptedPeer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with ScriptedPeer(tmp_path / "notary") as notary:
        asked: list[Any] = []
        unasked = f"127.0.0.1:{free_port()}"

        async def query(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
            asked.append(body)
            answer = sign_json(
                foreign_key_response(unasked), notary.server_name, notary.signing_key
            )
            return web.json_response({"server_keys": [answer]})

        notary.route("POST", "/_matrix/key/v2/query", query)
        arena = await build_arena(
            make_server, peer, caplog, federation={"trusted_key_servers": [notary.server_name]}
        )
        try:
            # An event of a server that is down: its key can only come from the notary.
            gone = ScriptedPeer(tmp_path / "gone")
            event = gone.build(
                arena.room.version,
                arena.peer.event_fields(
                    arena.room, "m.room.message", arena.message(), sender=gone.user("eve")
                ),
            )
            before = await arena.snapshot()
            arena.clear_logs()
            reply = await arena.send([event.pdu])
            assert "error" in reply.body["pdus"][event.event_id]
            assert [list(b["server_keys"]) for b in asked] == [[gone.server_name]]
            assert await arena.snapshot() == before
            keyring = fed(arena.hs).keyring
            assert await keyring.store.get_response(unasked) is None
            line = arena.assert_logged_once(notary.server_name)
            assert f"not for {gone.server_name}" in line
            arena.assert_logged_once()  # the event's refusal, naming the origin
        finally:
            await arena.api.__aexit__(None, None, None)


async def test_key_answer_nested_too_deeply_is_a_401_not_a_500(
    arena: Arena, tmp_path: Path
) -> None:
    """The key we must fetch to check a request comes back as absurdly nested JSON."""
    async with ScriptedPeer(tmp_path / "nested") as nested:

        async def key(request: web.Request, params: dict[str, str], body: Any) -> web.Response:
            depth = 100_000
            return web.Response(body=b"[" * depth + b"]" * depth, content_type="application/json")

        nested.route("GET", "/_matrix/key/v2/server", key)
        arena.clear_logs()
        reply = await nested.send_transaction(arena.name, [], [])
        assert (reply.status, reply.body["errcode"]) == (401, "M_UNAUTHORIZED")
        assert [r for r in arena.caplog.records if r.levelno >= logging.ERROR] == []
        # Two acts, one line each: the bad key answer, and the request it left unverified.
        lines = arena.lines_naming(nested.server_name)
        assert len(lines) == 2, lines
        assert "key fetch" in lines[0] and "not JSON" in lines[0]
        assert "refused" in lines[1]
