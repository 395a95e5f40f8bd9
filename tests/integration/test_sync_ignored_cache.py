"""The ignored-users list of /sync is read again only when the account-data stream moved
(issue 15: one statement less per woken sync), and a change to it, from this process or
any other (the check is the stream's head in the database, not a local event), is obeyed
by the next sync."""

from __future__ import annotations

from typing import Any

from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.sync_support import count
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_sections import shared_room
from tests.integration.test_sync_statement_counts import counted_sync

IGNORED = "m.ignored_user_list"
# The one-key account-data read (the list's type is a parameter, not in the SQL).
READ_ONE = "SELECT content FROM account_data WHERE"


async def ignore(api: Api, user: User, *others: User) -> None:
    r = await api.put(
        f"/user/{user.user_id}/account_data/{IGNORED}",
        {"ignored_users": {o.user_id: {} for o in others}},
        token=user.access_token,
    )
    assert r.status == 200, r.body


def bodies(body: dict[str, Any], room_id: str) -> list[str]:
    room = body["rooms"]["join"].get(room_id)
    if room is None:
        return []
    return [e["content"].get("body") for e in room["timeline"]["events"] if "body" in e["content"]]


async def test_ignored_list_read_once_until_account_data_moves(make_server: ServerFactory) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        carol = await api.register("carol")
        room_id = await shared_room(api, alice, bob)
        r = await api.post(f"/rooms/{room_id}/join", {}, token=carol.access_token)
        assert r.status == 200, r.body
        await ignore(api, alice, bob)
        first, counter = await counted_sync(hs, alice)
        assert count(counter, READ_ONE) == 1

        await send_text(api, bob, room_id, "hidden", "b1")
        await send_text(api, carol, room_id, "shown", "c1")
        body, counter = await counted_sync(hs, alice, first["next_batch"])
        assert bodies(body, room_id) == ["shown"]
        assert count(counter, READ_ONE) == 0  # account data did not move: the list is known

        # Another user's account data moves the stream: read again, same answer.
        r = await api.put(
            f"/user/{carol.user_id}/account_data/org.example.x", {"a": 1}, token=carol.access_token
        )
        assert r.status == 200, r.body
        await send_text(api, bob, room_id, "hidden 2", "b2")
        body, counter = await counted_sync(hs, alice, body["next_batch"])
        assert count(counter, READ_ONE) == 1
        assert room_id not in body["rooms"]["join"]

        # Written as another process would: committed to the database with no hook or
        # notification run in this one. bob is shown again.
        user = await hs.accounts.store.get_user(alice.user_id)
        assert user is not None
        account_data = hs.sync_area.sync.src.account_data
        async with account_data.db.transaction() as txn:
            await account_data.put_in(txn, user.user_nid, None, IGNORED, {"ignored_users": {}})
        await send_text(api, bob, room_id, "visible", "b3")
        body, counter = await counted_sync(hs, alice, body["next_batch"])
        assert bodies(body, room_id) == ["visible"]
        assert count(counter, READ_ONE) == 1

        # And ignored again over the API.
        await ignore(api, alice, bob, carol)
        await send_text(api, carol, room_id, "hidden 3", "c2")
        body, _ = await counted_sync(hs, alice, body["next_batch"])
        assert room_id not in body["rooms"]["join"]
