"""The in-memory caches stay within ``caches.*`` (config), and what they evict is read back
from the database: a server with tiny caches serves the same events and states."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.config import ConfigError, parse_config
from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text


async def test_event_and_state_caches_hold_at_most_their_bound(
    make_server: ServerFactory,
) -> None:
    server = await make_server(caches={"events": 3, "state_groups": 2})
    area = server.hs.rooms_area
    assert area.events.cache_size == 3
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        room_id = await create_room(api, alice, preset="public_chat")
        r = await api.post(f"/join/{room_id}", {}, token=bob.access_token)
        assert r.status == 200, r.body
        sent = [await send_text(api, alice, room_id, f"m{i}", f"t{i}") for i in range(6)]
        r = await api.put(
            f"/rooms/{room_id}/state/m.room.topic", {"topic": "bounded"}, token=alice.access_token
        )
        assert r.status == 200, r.body
        topic_id = r.body["event_id"]

        # Far more events than that were loaded; the cache kept its bound.
        assert len(area.events._cache) <= 3
        assert len(area.events._ids) <= 3

        # Every state group read whole (room creation made several): at most two are kept,
        # and a group read again after its eviction is the same state.
        state = area.rooms.state
        rows = await server.hs.db.fetchall("SELECT state_group FROM state_groups")
        groups = sorted(int(row["state_group"]) for row in rows)
        assert len(groups) > 2
        first = {g: dict(await state.state_at_group(g)) for g in groups}
        assert len(state._cache) <= 2
        assert {g: dict(await state.state_at_group(g)) for g in groups} == first
        assert len(state._cache) <= 2

        # Evicted events and states are read back: every message, and the room's state.
        for i, event_id in enumerate(sent):
            r = await api.get(f"/rooms/{room_id}/event/{event_id}", token=bob.access_token)
            assert r.status == 200, r.body
            assert r.body["content"]["body"] == f"m{i}"
        r = await api.get(f"/rooms/{room_id}/state", token=bob.access_token)
        assert r.status == 200, r.body
        kinds = {(e["type"], e["state_key"]) for e in r.body}
        assert ("m.room.member", bob.user_id) in kinds and ("m.room.topic", "") in kinds
        synced = await api.get("/sync", token=bob.access_token)
        assert synced.status == 200, synced.body
        timeline = synced.body["rooms"]["join"][room_id]["timeline"]["events"]
        assert timeline[-1]["event_id"] == topic_id
        assert timeline[-2]["content"]["body"] == "m5"
        assert len(area.events._cache) <= 3


def test_cache_bounds_default_and_are_checked(tmp_path: Path) -> None:
    config = parse_config({"server_name": "example.org"}, tmp_path)
    assert (config.caches.events, config.caches.state_groups) == (5_000, 512)
    with pytest.raises(ConfigError, match="caches"):
        parse_config({"server_name": "example.org", "caches": {"events": 0}}, tmp_path)
