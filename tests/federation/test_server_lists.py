"""federation.deny_list / allow_list and invite_protection.blocked_servers between two
real servers: a denied server's requests are refused (403 M_FORBIDDEN), nothing is sent
to it, joins through it fail clearly, and its users' invites never reach our users."""

from __future__ import annotations

import pytest

from federation.errors import DestinationDenied, FederationError
from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY, fed
from tests.federation.rooms_support import name, q, register, settle, sync_rooms


async def test_denied_server_is_refused_both_ways(make_server: ServerFactory) -> None:
    b = await make_server(federated=True, **FAST_RETRY)
    a = await make_server(
        federated=True, federation={**FAST_RETRY["federation"], "deny_list": [name(b)]}
    )
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    try:
        # Inbound: B's signed request is refused before A looks at anything else.
        with pytest.raises(FederationError) as refused:
            await fed(b).client.get_json(
                name(a), "/_matrix/federation/v1/query/profile", {"user_id": alice.user_id}
            )
        assert (refused.value.status, refused.value.errcode) == (403, "M_FORBIDDEN")

        # Outbound: A's client will not send to B at all.
        with pytest.raises(DestinationDenied):
            await fed(a).client.get_json(
                name(b), "/_matrix/federation/v1/query/profile", {"user_id": bob.user_id}
            )

        # Joining a room on B through B fails with a clear 403.
        r = await api_b.post("/createRoom", {"preset": "public_chat"}, token=bob.access_token)
        room_b = r.body["room_id"]
        r = await api_a.post(
            f"/join/{q(room_b)}", {}, token=alice.access_token, params={"via": name(b)}
        )
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), r.body
        assert "not allowed" in r.body["error"]

        # Bob's invite to Alice is refused by A (B's /invite gets 403): no invite shown.
        r = await api_b.post(
            f"/rooms/{q(room_b)}/invite", {"user_id": alice.user_id}, token=bob.access_token
        )
        assert r.status == 403, r.body
        assert room_b not in (await sync_rooms(api_a, alice)).get("invite", {})

        # A room on A that Bob cannot join through A either.
        r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
        room_a = r.body["room_id"]
        r = await api_b.post(
            f"/join/{q(room_a)}", {}, token=bob.access_token, params={"via": name(a)}
        )
        assert r.status == 403, r.body
        r = await api_a.get(f"/rooms/{q(room_a)}/joined_members", token=alice.access_token)
        assert list(r.body["joined"]) == [alice.user_id]
        # Nothing was queued for B.
        await settle(a)
        assert name(b) not in fed(a).relay.sender.busy_destinations()  # type: ignore[union-attr]
    finally:
        await api_a.__aexit__(None, None, None)
        await api_b.__aexit__(None, None, None)


async def test_invites_from_blocked_servers_are_refused(make_server: ServerFactory) -> None:
    b = await make_server(federated=True, **FAST_RETRY)
    a = await make_server(
        federated=True, **FAST_RETRY, invite_protection={"blocked_servers": [name(b)]}
    )
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    try:
        r = await api_b.post("/createRoom", {"preset": "public_chat"}, token=bob.access_token)
        room_b = r.body["room_id"]
        r = await api_b.post(
            f"/rooms/{q(room_b)}/invite", {"user_id": alice.user_id}, token=bob.access_token
        )
        assert r.status == 403, r.body
        await settle(a, b)
        assert room_b not in (await sync_rooms(api_a, alice)).get("invite", {})
        # Only invites are blocked: Alice may still join Bob's public room herself.
        r = await api_a.post(
            f"/join/{q(room_b)}", {}, token=alice.access_token, params={"via": name(b)}
        )
        assert r.status == 200, r.body
    finally:
        await api_a.__aexit__(None, None, None)
        await api_b.__aexit__(None, None, None)
