"""A long-polling /sync is never left asleep by an event that lands while it reads.

Found by matrix-js-sdk (tests/interop): its sync loop and a burst of sends raced, and a
notification that arrived while the request was building its (empty) answer was wiped before
the request went to sleep, so the newest message waited for the long-poll's full timeout.
"""

from __future__ import annotations

import asyncio
import time

from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text

MESSAGES = 60
# A lost wake-up stalls the loop for a whole long-poll (60 s); a working server finishes
# far sooner. The margin keeps the check meaningful on a loaded machine.
LONG_POLL_MS = 60_000


async def test_every_send_wakes_a_sync_loop_in_time(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    since = (await api.get("/sync", token=bob.access_token)).body["next_batch"]
    seen: list[str] = []

    async def sync_loop() -> None:
        nonlocal since
        while len(seen) < MESSAGES:
            r = await api.get(
                "/sync",
                token=bob.access_token,
                params={"since": since, "timeout": str(LONG_POLL_MS)},
            )
            assert r.status == 200, r.body
            since = r.body["next_batch"]
            joined = r.body["rooms"]["join"].get(room_id)
            if joined:
                seen.extend(e["event_id"] for e in joined["timeline"]["events"])

    loop = asyncio.create_task(sync_loop())
    started = time.monotonic()
    sent = [await send_text(api, alice, room_id, f"m{i}", f"t{i}") for i in range(MESSAGES)]
    # Bob's loop wakes for each send; a lost wake-up would stall it for the whole long-poll.
    await asyncio.wait_for(loop, timeout=LONG_POLL_MS / 1000 / 2)
    assert time.monotonic() - started < LONG_POLL_MS / 1000 / 2
    assert seen[-1] == sent[-1]
    assert set(sent) <= set(seen)


async def test_stopping_the_server_ends_long_polls_at_once(make_server: ServerFactory) -> None:
    server = await make_server()
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        since = (await api.get("/sync", token=alice.access_token)).body["next_batch"]
        poll = asyncio.create_task(
            api.get("/sync", token=alice.access_token, params={"since": since, "timeout": "60000"})
        )
        await asyncio.sleep(0.3)  # the request is now asleep in its long-poll
        assert not poll.done()
        started = time.monotonic()
        await server.stop()
        # Without the wake-up, stop waits out the shutdown timeout for the sleeping request.
        assert time.monotonic() - started < 2.0
        r = await asyncio.wait_for(poll, 2.0)
    assert r.status == 200, r.body
    assert r.body["next_batch"] == since
    assert r.body["rooms"]["join"] == {}
