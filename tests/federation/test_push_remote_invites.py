"""A push for an invite to a room on another server (Push Gateway API): this server
holds none of the room's state, only the stripped state the invite carried, and
the notification still names the room from it (as Sytest's 61push expects)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest

from homeserver.app import RunningServer
from homeserver.push.delivery import names_from_invite_state
from tests.conftest import ServerFactory
from tests.federation.fedutil import federated, register
from tests.helpers import Api
from tests.integration.test_pushers import Gateway, is_type, pusher_body, set_pusher


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway()
    await gw.start()
    yield gw
    await gw.stop()


async def test_invite_from_another_server_is_pushed_with_the_room_name(
    make_server: ServerFactory, gateway: Gateway
) -> None:
    a: RunningServer = await federated(make_server)
    b: RunningServer = await federated(make_server)
    alice, charlie = await register(a, "alice"), await register(b, "charlie")
    async with Api(a.client_url) as api_a, Api(b.client_url) as api_b:
        await set_pusher(api_a, alice, pusher_body(gateway.url))
        r = await api_b.post(
            "/createRoom", {"preset": "private_chat", "name": "Lemurs"}, token=charlie.access_token
        )
        assert r.status == 200, r.body
        room_id = str(r.body["room_id"])
        r = await api_b.post(
            f"/rooms/{quote(room_id)}/invite",
            {"user_id": alice.user_id},
            token=charlie.access_token,
        )
        assert r.status == 200, r.body
    invite = await gateway.next(is_type("m.room.member"))
    assert invite["room_id"] == room_id and invite["sender"] == charlie.user_id
    assert invite["membership"] == "invite" and invite["user_is_target"] is True
    assert invite["room_name"] == "Lemurs"


def test_names_from_invite_state() -> None:
    sender = "@charlie:b.example"

    def pdu(*state: dict[str, object]) -> dict[str, object]:
        return {"unsigned": {"invite_room_state": list(state)}}

    name = {"type": "m.room.name", "state_key": "", "content": {"name": "Lemurs"}}
    alias = {"type": "m.room.canonical_alias", "state_key": "", "content": {"alias": "#l:b"}}
    member = {"type": "m.room.member", "state_key": sender, "content": {"displayname": "C"}}
    assert names_from_invite_state(pdu(alias, name, member), sender) == {
        "room_name": "Lemurs",
        "sender_display_name": "C",
    }
    assert names_from_invite_state(pdu(alias), sender) == {"room_name": "#l:b"}
    # Nothing usable: no names (never a crash on odd shapes).
    assert names_from_invite_state({}, sender) == {}
    assert names_from_invite_state({"unsigned": {"invite_room_state": "x"}}, sender) == {}
    assert names_from_invite_state(pdu({"type": "m.room.name", "content": 5}), sender) == {}
