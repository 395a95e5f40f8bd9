"""MSC2228 self-destructing events: with msc2228_self_destructing_events on, a message
naming a time in org.matrix.self_destruct_after is served pruned from then on (Sytest
30rooms/04messages and 50federation/31room-send "Ephemeral messages ... correctly
expired"); state events, later times and servers with it off keep their content."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from homeserver.app import RunningServer
from homeserver.rooms.self_destruct import SELF_DESTRUCT_AFTER
from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room


async def send(api: Api, user: User, room: str, txn: str, expiry: int) -> str:
    r = await api.put(
        f"/rooms/{room}/send/m.room.message/{txn}",
        {"msgtype": "m.text", "body": txn, SELF_DESTRUCT_AFTER: expiry},
        token=user.access_token,
    )
    assert r.status == 200, r.body
    return str(r.body["event_id"])


async def content(api: Api, user: User, room: str, event_id: str) -> dict[str, Any]:
    r = await api.get(f"/rooms/{room}/event/{event_id}", token=user.access_token)
    assert r.status == 200, r.body
    out: dict[str, Any] = r.body["content"]
    return out


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_expired_messages_are_pruned(make_server: ServerFactory) -> None:
    server: RunningServer = await make_server(msc2228_self_destructing_events=True)
    job = server.hs.rooms_area.self_destruct
    assert job is not None
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        room = await create_room(api, alice)
        past = await send(api, alice, room, "gone", now_ms() - 1000)
        later = await send(api, alice, room, "kept", now_ms() + 3_600_000)
        r = await api.put(
            f"/rooms/{room}/state/m.room.topic/",
            {"topic": "stays", SELF_DESTRUCT_AFTER: now_ms() - 1000},
            token=alice.access_token,
        )
        assert r.status == 200
        await job.expire_due()
        assert await content(api, alice, room, past) == {}
        assert (await content(api, alice, room, later))["body"] == "kept"
        r = await api.get(f"/rooms/{room}/state/m.room.topic/", token=alice.access_token)
        assert r.body["topic"] == "stays"
        r = await api.get(
            f"/rooms/{room}/messages",
            token=alice.access_token,
            params={"dir": "b", "filter": '{"types": ["m.room.message"]}'},
        )
        assert [e["content"] for e in r.body["chunk"]][1] == {}
        # The background job wakes for a new, soon expiry and prunes it on time.
        soon = await send(api, alice, room, "soon", now_ms() + 200)
        for _ in range(200):
            if await content(api, alice, room, soon) == {}:
                break
            await asyncio.sleep(0.05)
        assert await content(api, alice, room, soon) == {}
        assert (await content(api, alice, room, later))["body"] == "kept"


async def test_off_by_default(api: Api, server: RunningServer) -> None:
    assert server.hs.rooms_area.self_destruct is None
    alice = await api.register("alice")
    room = await create_room(api, alice)
    past = await send(api, alice, room, "stays", now_ms() - 1000)
    assert (await content(api, alice, room, past))["body"] == "stays"
    assert await server.hs.db.fetchval("SELECT COUNT(*) FROM event_expiry") == 0
