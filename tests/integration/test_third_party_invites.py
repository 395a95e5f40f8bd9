"""Third-party invites on one server (spec client-server "Third-party invites"): an
address already bound is an ordinary invite; an unbound one becomes an
m.room.third_party_invite that the identity server's /3pid/onbind (or the
invitee's own third_party_signed on /join) turns into the invite, after the key
checks; createRoom's invite_3pid. A real identity server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer, ServerFactory
from tests.helpers import Api, User
from tests.integration.identity_server import ACCESS_TOKEN, IdentityServer, identity_server

EMAIL = "lemurs@monkeyworld.example"


@pytest.fixture
async def ids(tmp_path: Path) -> AsyncIterator[IdentityServer]:
    async with identity_server(tmp_path) as server:
        yield server


@pytest.fixture
async def hs(make_server: ServerFactory) -> RunningServer:
    return await make_server()


def invite_body(ids: IdentityServer, address: str = EMAIL) -> dict[str, Any]:
    return {
        "id_server": ids.name,
        "id_access_token": ACCESS_TOKEN,
        "medium": "email",
        "address": address,
    }


async def private_room(api: Api, user: User, version: str | None = None) -> str:
    body = {"preset": "private_chat"} | ({"room_version": version} if version else {})
    r = await api.post("/createRoom", body, token=user.access_token)
    assert r.status == 200, r.body
    return str(r.body["room_id"])


async def membership(api: Api, viewer: User, room_id: str, user_id: str) -> str | None:
    r = await api.get(f"/rooms/{room_id}/state/m.room.member/{user_id}", token=viewer.access_token)
    return r.body.get("membership") if r.status == 200 else None


async def state_of(api: Api, viewer: User, room_id: str, event_type: str) -> list[dict[str, Any]]:
    r = await api.get(f"/rooms/{room_id}/state", token=viewer.access_token)
    return [e for e in r.body if e["type"] == event_type]


async def test_inviting_a_bound_address_invites_its_user(
    hs: RunningServer, ids: IdentityServer
) -> None:
    async with Api(hs.client_url) as api:
        alice, bob = await api.register("alice"), await api.register("bob")
        ids.bindings[("email", EMAIL)] = bob.user_id
        room = await private_room(api, alice)
        r = await api.post(f"/rooms/{room}/invite", invite_body(ids), token=alice.access_token)
        assert r.status == 200, r.body
        assert await membership(api, alice, room, bob.user_id) == "invite"
        assert await state_of(api, alice, room, "m.room.third_party_invite") == []
        # Not a member: refused before the identity server hears of it.
        carol = await api.register("carol")
        other = invite_body(ids, "other@monkeyworld.example")
        r = await api.post(f"/rooms/{room}/invite", other, token=carol.access_token)
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
        assert ids.invites == []


@pytest.mark.parametrize("version", ["1", "3", "10", "11", "12"])
async def test_unbound_address_is_invited_once_bound(
    hs: RunningServer, ids: IdentityServer, version: str
) -> None:
    async with Api(hs.client_url) as api:
        alice, bob = await api.register("alice"), await api.register("bob")
        room = await private_room(api, alice, version)
        r = await api.post(f"/rooms/{room}/invite", invite_body(ids), token=alice.access_token)
        assert r.status == 200, r.body
        # The identity server holds the invite, with what it may mail about the room.
        (stored,) = ids.invites
        assert (stored.room_id, stored.sender, stored.body["room_join_rules"]) == (
            room,
            alice.user_id,
            "invite",
        )
        (tpi,) = await state_of(api, alice, room, "m.room.third_party_invite")
        assert tpi["state_key"] == stored.token and tpi["sender"] == alice.user_id
        content = tpi["content"]
        assert content["display_name"] == "B...@e..."
        assert content["public_key"] == ids.public_keys()["ed25519:0"]
        assert {k["public_key"] for k in content["public_keys"]} == set(ids.public_keys().values())
        assert content["key_validity_url"].endswith("/_matrix/identity/v2/pubkey/isvalid")
        # Bob cannot join yet: the room is invite-only.
        r = await api.post(f"/join/{room}", {}, token=bob.access_token)
        assert r.status == 403, r.body

        resp = await ids.bind_and_notify(hs.client_url, "email", EMAIL, bob.user_id)
        assert resp.status == 200
        member = await api.get(
            f"/rooms/{room}/state/m.room.member/{bob.user_id}", token=alice.access_token
        )
        assert member.body["membership"] == "invite"
        assert member.body["third_party_invite"]["display_name"] == "B...@e..."
        assert member.body["third_party_invite"]["signed"]["token"] == stored.token
        # Bob's invite preview names who invited him.
        sync = await api.get("/sync", token=bob.access_token)
        preview = sync.body["rooms"]["invite"][room]["invite_state"]["events"]
        members = {e["state_key"] for e in preview if e["type"] == "m.room.member"}
        assert members == {alice.user_id, bob.user_id}
        r = await api.post(f"/join/{room}", {}, token=bob.access_token)
        assert r.status == 200, r.body
        assert await membership(api, alice, room, bob.user_id) == "join"


async def test_invite_survives_the_inviter_leaving(hs: RunningServer, ids: IdentityServer) -> None:
    async with Api(hs.client_url) as api:
        alice, carol, bob = [await api.register(n) for n in ("alice", "carol", "bob")]
        room = await private_room(api, alice)
        await api.post(
            f"/rooms/{room}/invite", {"user_id": carol.user_id}, token=alice.access_token
        )
        assert (await api.post(f"/join/{room}", {}, token=carol.access_token)).status == 200
        await api.post(f"/rooms/{room}/invite", invite_body(ids), token=alice.access_token)
        assert (await api.post(f"/rooms/{room}/leave", {}, token=alice.access_token)).status == 200
        await ids.bind_and_notify(hs.client_url, "email", EMAIL, bob.user_id)
        assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
        assert await membership(api, carol, room, bob.user_id) == "join"


async def test_join_with_third_party_signed(hs: RunningServer, ids: IdentityServer) -> None:
    async with Api(hs.client_url) as api:
        alice, bob, eve = [await api.register(n) for n in ("alice", "bob", "eve")]
        room = await private_room(api, alice)
        await api.post(f"/rooms/{room}/invite", invite_body(ids), token=alice.access_token)
        (tpi,) = await state_of(api, alice, room, "m.room.third_party_invite")
        # Signed by the ephemeral key, published in the event's public_keys.
        signed = ids.sign(
            {"mxid": bob.user_id, "sender": alice.user_id, "token": tpi["state_key"]},
            ephemeral=True,
        )
        # Not Eve's to use.
        r = await api.post(f"/join/{room}", {"third_party_signed": signed}, token=eve.access_token)
        assert r.status == 403
        r = await api.post(f"/join/{room}", {"third_party_signed": signed}, token=bob.access_token)
        assert r.status == 200, r.body
        assert await membership(api, alice, room, bob.user_id) == "join"


async def test_bad_or_revoked_keys_invite_nobody(hs: RunningServer, ids: IdentityServer) -> None:
    async with Api(hs.client_url) as api:
        alice, bob = await api.register("alice"), await api.register("bob")
        # Signed by keys the invite does not name: no invite.
        room1 = await private_room(api, alice)
        await api.post(f"/rooms/{room1}/invite", invite_body(ids), token=alice.access_token)
        ids.rotate_keys()
        # The identity server hears that the invite was not delivered.
        resp = await ids.bind_and_notify(hs.client_url, "email", EMAIL, bob.user_id)
        assert resp.status == 403
        assert await membership(api, alice, room1, bob.user_id) is None
        assert (await api.post(f"/join/{room1}", {}, token=bob.access_token)).status == 403

        # Signed by a key the invite names, but the identity server revoked it since.
        room2 = await private_room(api, alice)
        other = "other@monkeyworld.example"
        await api.post(f"/rooms/{room2}/invite", invite_body(ids, other), token=alice.access_token)
        (tpi,) = await state_of(api, alice, room2, "m.room.third_party_invite")
        signed = ids.sign({"mxid": bob.user_id, "sender": alice.user_id, "token": tpi["state_key"]})
        ids.rotate_keys()
        r = await api.post(f"/join/{room2}", {"third_party_signed": signed}, token=bob.access_token)
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), r.body
        assert await membership(api, alice, room2, bob.user_id) is None


async def test_create_room_with_invite_3pid(hs: RunningServer, ids: IdentityServer) -> None:
    async with Api(hs.client_url) as api:
        alice, bob = await api.register("alice"), await api.register("bob")
        ids.bindings[("email", EMAIL)] = bob.user_id
        unbound = "nobody@monkeyworld.example"
        r = await api.post(
            "/createRoom",
            {"invite_3pid": [invite_body(ids), invite_body(ids, unbound)]},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
        room = r.body["room_id"]
        assert await membership(api, alice, room, bob.user_id) == "invite"
        (tpi,) = await state_of(api, alice, room, "m.room.third_party_invite")
        assert ids.invites[0].address == unbound and tpi["state_key"] == ids.invites[0].token
        bad = await api.post(
            "/createRoom", {"invite_3pid": [{"medium": "email"}]}, token=alice.access_token
        )
        assert bad.status == 400
