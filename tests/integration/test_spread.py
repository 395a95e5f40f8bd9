"""The three-process fixture itself (tests/spread.py): requests really are spread over
main, sync and client, and a client that hops between them at random still sees what
another process took in (typing, messages) without a gap or a repeat."""

from __future__ import annotations

import pytest

from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.processes import send, typing_in
from tests.spread import SpreadServer

pytestmark = pytest.mark.parametrize("processes", [3], indirect=True)

ROUNDS = 60  # bounded /sync loop; each long-poll is woken or times out after 2 s


async def test_requests_are_spread_and_a_hopping_client_misses_nothing(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    assert isinstance(server, SpreadServer) and server.proxy is not None
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
        room_id = r.body["room_id"]
        assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
        since = (await api.get("/sync", token=bob.access_token)).body["next_batch"]
        sent = []
        for i in range(10):
            sent.append(await send(api, alice, room_id, f"m{i}"))
        r = await api.put(
            f"/rooms/{room_id}/typing/{alice.user_id}",
            {"typing": True, "timeout": 60000},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
        seen: list[str] = []
        typing: list[str] = []
        for _ in range(ROUNDS):
            r = await api.get(
                "/sync",
                token=bob.access_token,
                params={"since": since, "timeout": "2000"},
            )
            assert r.status == 200, r.body
            since = r.body["next_batch"]
            room = r.body.get("rooms", {}).get("join", {}).get(room_id, {})
            seen += [e["event_id"] for e in room.get("timeline", {}).get("events", [])]
            typing = typing_in(r.body, room_id) or typing
            if set(sent) <= set(seen) and typing == [alice.user_id]:
                break
        messages = [e for e in seen if e in sent]
        assert messages == sent  # every message once, in order, across process hops
        assert typing == [alice.user_id]
    counts = server.proxy.counts
    assert set(counts) == {"main", "sync", "client"}, counts
