"""Third-party invites across servers (server-server "Third-party invites"): the
address turns out to belong to a user of another server. The identity server
tells that server (/3pid/onbind); it hands the signed block to the inviter's
server (exchange_third_party_invite), which sends the invite as the inviter and
delivers it over federation; the invitee joins through it. Also when the
invitee's server is itself in the room, and when the exchange is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homeserver.rooms.store.rooms_store import RoomInfo
from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY, eventually
from tests.federation.rooms_support import name, q, register
from tests.integration.identity_server import ACCESS_TOKEN, identity_server

EMAIL = "lemurs@monkeyworld.example"


async def test_invite_of_an_address_bound_to_a_remote_user(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    api_c, carol = await register(b, "carol")
    async with identity_server(tmp_path) as ids:
        invite = {
            "id_server": ids.name,
            "id_access_token": ACCESS_TOKEN,
            "medium": "email",
            "address": EMAIL,
        }
        # Room 1: only server A is in it.
        r = await api_a.post("/createRoom", {"preset": "private_chat"}, token=alice.access_token)
        room1 = r.body["room_id"]
        r = await api_a.post(f"/rooms/{q(room1)}/invite", invite, token=alice.access_token)
        assert r.status == 200, r.body
        # Room 2: Carol of server B is in it too, so B holds its state.
        r = await api_a.post("/createRoom", {"preset": "private_chat"}, token=alice.access_token)
        room2 = r.body["room_id"]
        r = await api_a.post(
            f"/rooms/{q(room2)}/invite", {"user_id": carol.user_id}, token=alice.access_token
        )
        assert r.status == 200, r.body
        r = await api_b.post(f"/join/{q(room2)}", {}, token=carol.access_token)
        assert r.status == 200, r.body
        r = await api_a.post(f"/rooms/{q(room2)}/invite", invite, token=alice.access_token)
        assert r.status == 200, r.body

        async def tpi_at_b() -> int:
            r = await api_c.get(f"/rooms/{q(room2)}/state", token=carol.access_token)
            return sum(e["type"] == "m.room.third_party_invite" for e in r.body)

        # Server B holds room 2's third-party invite: it will send that invite itself.
        assert await eventually(tpi_at_b, lambda n: n == 1) == 1

        resp = await ids.bind_and_notify(b.client_url, "email", EMAIL, bob.user_id)
        assert resp.status == 200

        async def invited() -> dict[str, Any]:
            r = await api_b.get("/sync", token=bob.access_token)
            return dict(r.body.get("rooms", {}).get("invite", {}))

        rooms = await eventually(invited, lambda got: room1 in got and room2 in got)
        # Room 1's invite was sent by server A (asked over exchange_third_party_invite),
        # room 2's by server B itself; both in Alice's name, and A took B's signature.
        # (A's invite of a user of B is countersigned by B, as every remote invite.)
        for room, signers in ((room1, {name(a), name(b)}), (room2, {name(b)})):
            info = await a.hs.rooms_area.rooms.rooms.get_room(room)
            assert info is not None

            async def invite_at_a(info: RoomInfo = info) -> Any:
                return await a.hs.rooms_area.rooms.current_state_event(
                    info, "m.room.member", bob.user_id
                )

            stored = await eventually(invite_at_a, lambda s: s is not None)
            assert stored.event.sender == alice.user_id
            assert stored.event.content["membership"] == "invite"
            assert set(stored.event.pdu["signatures"]) == signers

        for room in (room1, room2):
            preview = rooms[room]["invite_state"]["events"]
            assert alice.user_id in {e["state_key"] for e in preview}
            r = await api_b.post(f"/join/{q(room)}", {}, token=bob.access_token)
            assert r.status == 200, r.body

            async def member(room: str = room) -> dict[str, Any]:
                r = await api_a.get(
                    f"/rooms/{q(room)}/state/m.room.member/{bob.user_id}",
                    token=alice.access_token,
                )
                return dict(r.body) if r.status == 200 else {}

            joined = await eventually(member, lambda m: m.get("membership") == "join")
            assert joined["membership"] == "join"

        # An exchange the inviter's server refuses (keys rotated since the invite)
        # reaches the identity server as an error, and invites nobody.
        r = await api_a.post("/createRoom", {"preset": "private_chat"}, token=alice.access_token)
        room3 = r.body["room_id"]
        other = {**invite, "address": "other@monkeyworld.example"}
        r = await api_a.post(f"/rooms/{q(room3)}/invite", other, token=alice.access_token)
        assert r.status == 200, r.body
        ids.rotate_keys()
        resp = await ids.bind_and_notify(
            b.client_url, "email", "other@monkeyworld.example", bob.user_id
        )
        assert resp.status == 403
        r = await api_a.get(
            f"/rooms/{q(room3)}/state/m.room.member/{bob.user_id}", token=alice.access_token
        )
        assert r.status == 404
    for api in (api_a, api_b, api_c):
        await api.__aexit__(None, None, None)
