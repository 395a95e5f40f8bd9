"""Filters named by /sync are parsed once per process (issue 15: every /sync names its
filter again, and a stored one cost a statement per request). Stored filters are never
changed or deleted and their ids never reused, so the cache needs no invalidation; what
it must not do is hand one user's filter to another, or keep an error."""

from __future__ import annotations

import pytest

from homeserver.errors import MatrixError
from homeserver.storage.database import count_statements
from homeserver.userdata.filtering import parse_filter
from tests.conftest import ServerFactory
from tests.helpers import Api

STORED = {"room": {"timeline": {"limit": 3}}, "presence": {"not_types": ["*"]}}
INLINE = '{"room":{"timeline":{"limit":2}}}'


async def test_stored_filter_read_once_and_only_by_its_owner(make_server: ServerFactory) -> None:
    server = await make_server()
    hs = server.hs
    filters = hs.sync_area.sync.src.filters
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        r = await api.post(f"/user/{alice.user_id}/filter", STORED, token=alice.access_token)
        assert r.status == 200, r.body
        filter_id = r.body["filter_id"]
        alice_row = await hs.accounts.store.get_user(alice.user_id)
        bob_row = await hs.accounts.store.get_user(bob.user_id)
        assert alice_row is not None and bob_row is not None

        with count_statements() as first:
            loaded = await filters.load(alice_row.user_nid, filter_id)
        with count_statements() as again:
            assert await filters.load(alice_row.user_nid, filter_id) is loaded
        assert loaded == parse_filter(STORED)
        assert first.total == 1
        assert again.total == 0

        # bob names alice's filter id: not his, cached or not.
        for _ in range(2):
            with pytest.raises(MatrixError) as e:
                await filters.load(bob_row.user_nid, filter_id)
            assert (e.value.status, e.value.errcode) == (400, "M_INVALID_PARAM")

        # Over HTTP: the filter applies on every sync that names it.
        room = (
            await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
        ).body["room_id"]
        for i in range(5):
            r = await api.put(
                f"/rooms/{room}/send/m.room.message/t{i}",
                {"msgtype": "m.text", "body": str(i)},
                token=alice.access_token,
            )
            assert r.status == 200, r.body
        for _ in range(2):
            r = await api.get("/sync", token=alice.access_token, params={"filter": filter_id})
            assert r.status == 200, r.body
            assert len(r.body["rooms"]["join"][room]["timeline"]["events"]) == 3
        r = await api.get("/sync", token=bob.access_token, params={"filter": filter_id})
        assert r.status == 400 and r.body["errcode"] == "M_INVALID_PARAM", r.body


async def test_inline_filter_parsed_once_and_errors_not_kept(make_server: ServerFactory) -> None:
    server = await make_server()
    filters = server.hs.sync_area.sync.src.filters
    first = await filters.load(1, INLINE)
    assert await filters.load(2, INLINE) is first
    assert first == parse_filter({"room": {"timeline": {"limit": 2}}})
    for bad in ('{"room": [', '{"room": {"timeline": {"limit": "x"}}}'):
        for _ in range(2):
            with pytest.raises(MatrixError) as e:
                await filters.load(1, bad)
            assert (e.value.status, e.value.errcode) == (400, "M_INVALID_PARAM")
