"""What a woken /sync reads with its stream heads (the device's peeks, the user's
presence) is read from the database, so a change made through another process
counts (tests/integration/test_sync_woken_statements.py has the one-process side)."""

from __future__ import annotations

from homeserver.app import RunningServer
from tests.helpers import Api
from tests.integration.test_peek import world_readable_room
from tests.processes import send, woken_by


async def test_a_peek_started_on_one_is_followed_by_a_long_poll_on_the_other(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    main, other = pair
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        alice = await a.register("alice")
        bob = await a.register("bob")
        room = await world_readable_room(a, alice, preset="public_chat")
        since = (await b.get("/sync", token=bob.access_token)).body["next_batch"]

        async def peek() -> None:
            r = await a.post(f"/peek/{room}", {}, token=bob.access_token)
            assert r.status == 200, r.body

        woken, _ = await woken_by(b, bob, since, peek)
        assert room in woken.body["rooms"].get("peek", {}), woken.body
        # The worker's next long-poll reads the peek with its heads and listens on the
        # room: a message sent on main wakes it.
        woken, sent = await woken_by(
            b, bob, woken.body["next_batch"], lambda: send(a, alice, room, "on main")
        )
        events = woken.body["rooms"]["peek"][room]["timeline"]["events"]
        assert sent in [e["event_id"] for e in events]


async def test_presence_set_on_one_is_corrected_by_a_sync_on_the_other(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    main, other = pair
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        alice = await a.register("alice")
        quiet = {"set_presence": "offline"}  # leaves the state as it is
        since = (await b.get("/sync", token=alice.access_token, params=quiet)).body["next_batch"]
        r = await a.put(
            f"/presence/{alice.user_id}/status", {"presence": "online"}, token=alice.access_token
        )
        assert r.status == 200, r.body
        r = await b.get("/sync", token=alice.access_token, params={"since": since, **quiet})
        since = r.body["next_batch"]
        r = await a.put(
            f"/presence/{alice.user_id}/status",
            {"presence": "unavailable"},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
        # The worker's sync (set_presence online by default) sees "unavailable" in the
        # database and writes "online" back.
        r = await b.get("/sync", token=alice.access_token, params={"since": since})
        assert r.status == 200, r.body
        status = await a.get(f"/presence/{alice.user_id}/status", token=alice.access_token)
        assert status.body["presence"] == "online", status.body
