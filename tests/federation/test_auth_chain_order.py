"""Auth chains are served in order: each event after the auth events it cites,
older before newer (``federation.pdu.graph.auth_order``).

Sytest's joining server reads a send_join answer's auth chain, then its state,
keeping one copy of each event and the last event it reads for each state key.
When the chain came in a set's order, an older power-levels event cited by the
newer one could come last and win: the joiner then built its next event on the
older levels and it was rejected ("Outbound federation requests missing
prev_events and then asks for /state_ids and resolves the state" failed about
every other run). Five power-levels events and three join rules events here
leave a random order almost no chance to pass. (Sytest's room was version 1;
the order does not depend on the version.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.events.signing import compute_event_id
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, q, register
from tests.federation.scripted_peer import ScriptedPeer
from tests.federation.test_send_join_omit_members import _send_join

LEVEL_CHANGES = 5
JOIN_RULE_CHANGES = 3


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


def _in_order(pdus: list[dict[str, Any]], version: str) -> list[tuple[str, dict[str, Any]]]:
    rv = KNOWN_ROOM_VERSIONS[version]
    return [(compute_event_id(p, rv), p) for p in pdus]


def _cited(pdu: dict[str, Any]) -> set[str]:
    """Auth event ids: plain in v3+, ``[id, hashes]`` pairs in v1-v2."""
    return {a[0] if isinstance(a, list) else a for a in pdu["auth_events"]}


def _assert_cited_first(chain: list[tuple[str, dict[str, Any]]]) -> None:
    seen: set[str] = set()
    ids = {i for i, _ in chain}
    for event_id, pdu in chain:
        cited = _cited(pdu) & ids
        assert cited <= seen, f"{pdu['type']} {event_id} comes before its auth events"
        seen.add(event_id)


def _last_by_key(pdus: list[tuple[str, dict[str, Any]]]) -> dict[tuple[str, str], str]:
    """What a reader keeping the last event per state key ends with (Sytest's way)."""
    out: dict[tuple[str, str], str] = {}
    for event_id, pdu in pdus:
        if "state_key" in pdu:
            out[(pdu["type"], pdu["state_key"])] = event_id
    return out


@pytest.mark.parametrize("version", ["10", "12"])
async def test_send_join_and_state_serve_the_chain_in_auth_order(
    make_server: ServerFactory, peer: ScriptedPeer, version: str
) -> None:
    server = await make_server(federated=True)
    api, alice = await register(server, "alice")
    body = {"preset": "public_chat", "room_version": version}
    r = await api.post("/createRoom", body, token=alice.access_token)
    assert r.status == 200, r.body
    room_id = str(r.body["room_id"])
    path = f"/rooms/{q(room_id)}/state/m.room.power_levels"
    for i in range(LEVEL_CHANGES):
        levels = (await api.get(path, token=alice.access_token)).body
        levels.setdefault("users", {})[peer.user("joiner")] = 10 + i
        r = await api.put(path, levels, token=alice.access_token)
        assert r.status == 200, r.body
        # A join rules event cites the levels, not the join rules before it: only
        # the depth orders these among themselves.
        if i < JOIN_RULE_CHANGES:
            r = await api.put(
                f"/rooms/{q(room_id)}/state/m.room.join_rules",
                {"join_rule": "public"},
                token=alice.access_token,
            )
            assert r.status == 200, r.body

    sent, join_id = await _send_join(peer, server, room_id, None)
    assert sent.status == 200, sent.body
    chain = _in_order(sent.body["auth_chain"], version)
    state = _in_order(sent.body["state"], version)
    _assert_cited_first(chain)
    assert len([p for _, p in chain if p["type"] == "m.room.power_levels"]) == LEVEL_CHANGES + 1
    # Read as Sytest reads it (chain, then the state's events not already read),
    # the newest levels and join rules win, as in the state itself.
    chain_ids = {i for i, _ in chain}
    read = _last_by_key([*chain, *((i, p) for i, p in state if i not in chain_ids)])
    want = _last_by_key(state)
    for key in (("m.room.power_levels", ""), ("m.room.join_rules", "")):
        assert read[key] == want[key]

    # The same order in /state (the state at an event, with its chain).
    at = await peer.request(
        name(server),
        "GET",
        f"/_matrix/federation/v1/state/{q(room_id)}",
        query={"event_id": join_id},
    )
    assert at.status == 200, at.body
    _assert_cited_first(_in_order(at.body["auth_chain"], version))
    await api.__aexit__(None, None, None)


async def test_event_auth_is_in_auth_order(make_server: ServerFactory, peer: ScriptedPeer) -> None:
    server = await make_server(federated=True)
    api, alice = await register(server, "alice")
    version = "10"
    body = {"preset": "public_chat", "room_version": version}
    r = await api.post("/createRoom", body, token=alice.access_token)
    assert r.status == 200, r.body
    room_id = str(r.body["room_id"])
    path = f"/rooms/{q(room_id)}/state/m.room.power_levels"
    for i in range(LEVEL_CHANGES):
        levels = (await api.get(path, token=alice.access_token)).body
        levels.setdefault("users", {})[peer.user("joiner")] = 10 + i
        r = await api.put(path, levels, token=alice.access_token)
        assert r.status == 200, r.body
    last = str(r.body["event_id"])
    sent, _ = await _send_join(peer, server, room_id, None)  # the peer may now read the room
    assert sent.status == 200, sent.body
    path = f"/_matrix/federation/v1/event_auth/{q(room_id)}/{quote(last, safe='')}"
    got = await peer.request(name(server), "GET", path)
    assert got.status == 200, got.body
    chain = _in_order(got.body["auth_chain"], version)
    _assert_cited_first(chain)
    assert len([p for _, p in chain if p["type"] == "m.room.power_levels"]) == LEVEL_CHANGES
    await api.__aexit__(None, None, None)
