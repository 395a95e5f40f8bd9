"""Moderation over real HTTP (issue 14): the content policy on unencrypted rooms (and
its blindness to m.room.encrypted), flags filed as event reports, server-wide invite
blocks, the per-user invite rate limit, and guests against m.room.guest_access."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.config import ConfigError
from tests.conftest import ServerFactory, make_config
from tests.helpers import Api, Reply, User
from tests.integration.admin_support import V1, make_admin
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text

POLICY = {"blocked_words": ["frobnicate"], "blocked_patterns": [r"buy\s+now\b"]}


async def send(
    api: Api, user: User, room_id: str, etype: str, content: dict[str, Any], txn: str
) -> Reply:
    return await api.put(f"/rooms/{room_id}/send/{etype}/{txn}", content, token=user.access_token)


async def test_blocked_words_refused_in_unencrypted_rooms(make_server: ServerFactory) -> None:
    server = await make_server(content_policy=POLICY)
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        room_id = await create_room(api, alice)
        for i, body in enumerate(["please FROBNICATE it", "Buy   now!"]):
            r = await send(api, alice, room_id, "m.room.message", {"body": body}, f"b{i}")
            assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), r.body
            assert "policy" in r.body["error"]
        # Whole words only; and state events are checked too (a room name).
        await send_text(api, alice, room_id, "frobnicated is another word", "ok1")
        r = await api.put(
            f"/rooms/{room_id}/state/m.room.name/",
            {"name": "frobnicate club"},
            token=alice.access_token,
        )
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
        # Nothing refused was stored.
        r = await api.get(
            f"/rooms/{room_id}/messages", token=alice.access_token, params={"dir": "b"}
        )
        bodies = [e["content"].get("body") for e in r.body["chunk"]]
        assert bodies[0] == "frobnicated is another word"
        assert not any("FROBNICATE" in str(b) or "Buy" in str(b) for b in bodies)

        # m.room.encrypted is never inspected: the same policy lets it through as is,
        # even where its (made-up) fields hold the blocked word in the clear.
        r = await api.put(
            f"/rooms/{room_id}/state/m.room.encryption/",
            {"algorithm": "m.megolm.v1.aes-sha2"},
            token=alice.access_token,
        )
        assert r.status == 200
        encrypted = {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": "frobnicate buy now",
            "sender_key": "k",
            "session_id": "s",
            "device_id": alice.device_id,
        }
        r = await send(api, alice, room_id, "m.room.encrypted", encrypted, "e1")
        assert r.status == 200, r.body
        r = await api.get(f"/rooms/{room_id}/event/{r.body['event_id']}", token=alice.access_token)
        assert r.body["content"] == encrypted
        # Leaving is never refused, whatever the reason says.
        r = await api.post(
            f"/rooms/{room_id}/leave", {"reason": "frobnicate"}, token=alice.access_token
        )
        assert r.status == 200


async def test_flagging_module_files_an_event_report(make_server: ServerFactory) -> None:
    server = await make_server(
        content_policy={
            "modules": [
                {
                    "module": "tests.integration.policy_modules:FlagWord",
                    "config": {"word": "casino"},
                }
            ]
        }
    )
    async with Api(server.client_url) as api:
        root = await make_admin(server, api)
        alice = await api.register("alice")
        room_id = await create_room(api, alice)
        await send_text(api, alice, room_id, "hello", "t1")
        flagged = await send_text(api, alice, room_id, "visit my casino", "t2")
        r = await api.get(V1 + "/event_reports", token=root.access_token)
        assert r.status == 200, r.body
        (report,) = r.body["event_reports"]
        assert report["event_id"] == flagged and report["room_id"] == room_id
        assert report["sender"] == alice.user_id
        assert report["user_id"] == "localhost"  # filed by the server, not a user
        assert report["reason"] == "content policy: mentions casino"


@pytest.mark.parametrize(
    ("module", "needle"),
    [
        ({"module": "tests.integration.no_such_module:X"}, "cannot import"),
        ({"module": "tests.integration.policy_modules:Missing"}, "has no 'Missing'"),
        ({"module": "tests.integration.policy_modules:NeedsSetting"}, "setting is required"),
    ],
)
async def test_policy_module_errors_are_config_errors(
    make_server: ServerFactory, module: dict[str, str], needle: str
) -> None:
    with pytest.raises(ConfigError) as e:
        await make_server(content_policy={"modules": [module]})
    assert "content_policy.modules[0]" in str(e.value) and needle in str(e.value)


async def test_bad_pattern_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"content_policy.blocked_patterns\[0\]"):
        make_config(tmp_path, "sqlite:///x.db", content_policy={"blocked_patterns": ["("]})


async def test_invites_from_blocked_users_are_refused(make_server: ServerFactory) -> None:
    server = await make_server(invite_protection={"blocked_users": ["@spammer:localhost"]})
    async with Api(server.client_url) as api:
        spammer = await api.register("spammer")
        alice = await api.register("alice")
        bob = await api.register("bob")
        room_id = await create_room(api, spammer)
        r = await api.post(
            f"/rooms/{room_id}/invite", {"user_id": alice.user_id}, token=spammer.access_token
        )
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
        assert "blocked" in r.body["error"]
        r = await api.post("/createRoom", {"invite": [alice.user_id]}, token=spammer.access_token)
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
        # Refused before the room was made: only the first room exists.
        r = await api.get("/joined_rooms", token=spammer.access_token)
        assert r.body["joined_rooms"] == [room_id]
        # Others invite as before.
        other = await create_room(api, bob)
        r = await api.post(
            f"/rooms/{other}/invite", {"user_id": alice.user_id}, token=bob.access_token
        )
        assert r.status == 200


async def test_invite_rate_limit_per_user(make_server: ServerFactory) -> None:
    server = await make_server(
        rate_limits={
            "enabled": True,
            "registration": {"per_second": 1000, "burst_count": 1000},
            "per_ip": {"per_second": 1000, "burst_count": 1000},
            "invites_per_user": {"per_second": 0.001, "burst_count": 2},
        }
    )
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        carol = await api.register("carol")
        invitees = [await api.register(f"u{i}") for i in range(3)]
        # createRoom's invite list counts as a whole: three is over the budget of two,
        # and the room is not made.
        r = await api.post(
            "/createRoom",
            {"invite": [u.user_id for u in invitees]},
            token=alice.access_token,
        )
        assert (r.status, r.errcode) == (429, "M_LIMIT_EXCEEDED")
        assert (await api.get("/joined_rooms", token=alice.access_token)).body == {
            "joined_rooms": []
        }
        room_id = await create_room(api, alice)
        for u in invitees[:2]:
            r = await api.post(
                f"/rooms/{room_id}/invite", {"user_id": u.user_id}, token=alice.access_token
            )
            assert r.status == 200, r.body
        r = await api.post(
            f"/rooms/{room_id}/invite", {"user_id": invitees[2].user_id}, token=alice.access_token
        )
        assert (r.status, r.errcode) == (429, "M_LIMIT_EXCEEDED")
        assert r.body["retry_after_ms"] > 0
        # The budget is per user: carol still has hers.
        own = await create_room(api, carol)
        r = await api.post(
            f"/rooms/{own}/invite", {"user_id": invitees[2].user_id}, token=carol.access_token
        )
        assert r.status == 200


async def test_sliding_sync_hides_invites_from_ignored_users(make_server: ServerFactory) -> None:
    server = await make_server()
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        carol = await api.register("carol")
        from_bob = await create_room(api, bob)
        from_carol = await create_room(api, carol)
        for inviter, room in ((bob, from_bob), (carol, from_carol)):
            r = await api.post(
                f"/rooms/{room}/invite", {"user_id": alice.user_id}, token=inviter.access_token
            )
            assert r.status == 200
        r = await api.put(
            f"/user/{alice.user_id}/account_data/m.ignored_user_list",
            {"ignored_users": {bob.user_id: {}}},
            token=alice.access_token,
        )
        assert r.status == 200
        r = await api.post(
            "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync",
            {"lists": {"all": {"ranges": [[0, 10]], "timeline_limit": 1}}},
            token=alice.access_token,
            params={"timeout": "0"},
        )
        assert r.status == 200, r.body
        assert set(r.body["rooms"]) == {from_carol}


async def guest_rooms(api: Api, owner: User) -> tuple[str, str]:
    """Two public rooms of ``owner``: the first lets guests join (m.room.guest_access
    can_join), the second has no guest access."""
    open_room = await create_room(api, owner, preset="public_chat")
    closed_room = await create_room(api, owner, preset="public_chat")
    r = await api.put(
        f"/rooms/{open_room}/state/m.room.guest_access/",
        {"guest_access": "can_join"},
        token=owner.access_token,
    )
    assert r.status == 200
    return open_room, closed_room


async def test_guests_join_only_rooms_that_allow_them(make_server: ServerFactory) -> None:
    server = await make_server(registration={"allow_guests": True})
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        guest = await api.register_guest()
        open_room, closed_room = await guest_rooms(api, alice)
        r = await api.post(f"/rooms/{open_room}/join", {}, token=guest.access_token)
        assert r.status == 200, r.body
        await send_text(api, guest, open_room, "hi from a guest", "g1")
        r = await api.post(f"/rooms/{closed_room}/join", {}, token=guest.access_token)
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
        # Outside the spec's list for guests: M_GUEST_ACCESS_FORBIDDEN.
        r = await api.post("/createRoom", {}, token=guest.access_token)
        assert (r.status, r.errcode) == (403, "M_GUEST_ACCESS_FORBIDDEN")
        r = await api.put(
            f"/profile/{guest.user_id}/avatar_url",
            {"avatar_url": "mxc://localhost/x"},
            token=guest.access_token,
        )
        assert (r.status, r.errcode) == (403, "M_GUEST_ACCESS_FORBIDDEN")
        r = await api.put(
            f"/profile/{guest.user_id}/displayname", {"displayname": "G"}, token=guest.access_token
        )
        assert r.status == 200
        r = await api.post(
            "/keys/upload",
            {"one_time_keys": {"curve25519:AAAAAQ": "a2V5IG9mIGEgZ3Vlc3Q"}},
            token=guest.access_token,
        )
        assert r.status == 200, r.body
        # Reading: a guest sees a room it joined.
        r = await api.get(
            f"/rooms/{open_room}/messages", token=guest.access_token, params={"dir": "b"}
        )
        assert r.status == 200
        assert any(e["content"].get("body") == "hi from a guest" for e in r.body["chunk"])
