"""Applied redactions change what the server itself uses, not only what clients see.

Spec: client-server "Redactions" (the stripped event "is thereafter returned
anytime a client or remote server requests it"), rooms/v* "Redactions" and
"Handling redactions". The auth rules read the redacted form of a redacted
state event.
"""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.app import RunningServer
from tests.conftest import RestartFn
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room


async def ok(reply: Any) -> Any:
    assert reply.status == 200, reply.body
    return reply.body


async def pl_of(api: Api, user: User, room: str) -> Any:
    return await ok(
        await api.get(f"/rooms/{room}/state/m.room.power_levels/", token=user.access_token)
    )


# Room version -> may a user at the default level invite once the power levels
# (invite: 50) are redacted? v10's algorithm drops `invite` (default 0), v11+ keep it.
INVITE_AFTER_REDACTION = {"10": True, "11": False, "12": False}


@pytest.mark.parametrize("version", sorted(INVITE_AFTER_REDACTION))
async def test_redacted_power_levels_drive_invites(api: Api, version: str) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await create_room(
        api,
        alice,
        room_version=version,
        preset="public_chat",
        power_level_content_override={"invite": 50, "notifications": {"room": 20}},
    )
    await ok(await api.post(f"/rooms/{room}/join", {}, token=bob.access_token))
    before = await api.post(
        f"/rooms/{room}/invite", {"user_id": carol.user_id}, token=bob.access_token
    )
    assert before.status == 403 and before.errcode == "M_FORBIDDEN"

    pl_id = await ok(await api.get(f"/rooms/{room}/state", token=alice.access_token))
    pl_id = next(e["event_id"] for e in pl_id if e["type"] == "m.room.power_levels")
    red = await ok(await api.put(f"/rooms/{room}/redact/{pl_id}/r1", {}, token=alice.access_token))

    pl = await pl_of(api, alice, room)
    assert ("invite" in pl) is not INVITE_AFTER_REDACTION[version]
    assert "notifications" not in pl and "users_default" in pl and "users" in pl
    served = await ok(await api.get(f"/rooms/{room}/event/{pl_id}", token=alice.access_token))
    assert served["unsigned"]["redacted_because"]["event_id"] == red["event_id"]

    after = await api.post(
        f"/rooms/{room}/invite", {"user_id": carol.user_id}, token=bob.access_token
    )
    if INVITE_AFTER_REDACTION[version]:
        assert after.status == 200, after.body
        members = await ok(await api.get(f"/rooms/{room}/members", token=alice.access_token))
        got = {e["state_key"]: e["content"]["membership"] for e in members["chunk"]}
        assert got[carol.user_id] == "invite"
    else:
        assert after.status == 403 and after.errcode == "M_FORBIDDEN"


async def test_redacted_join_rules_keep_join_rule(api: Api) -> None:
    """The algorithm keeps ``join_rule`` (and ``allow``) of m.room.join_rules in every
    version we serve: a redacted public room stays joinable; other keys are gone."""
    alice = await api.register("alice")
    dave = await api.register("dave")
    room = await create_room(api, alice, room_version="10", preset="private_chat")
    rules_id = (
        await ok(
            await api.put(
                f"/rooms/{room}/state/m.room.join_rules/",
                {"join_rule": "public", "org.example.note": "kept?"},
                token=alice.access_token,
            )
        )
    )["event_id"]
    await ok(await api.put(f"/rooms/{room}/redact/{rules_id}/r1", {}, token=alice.access_token))
    rules = await ok(
        await api.get(f"/rooms/{room}/state/m.room.join_rules/", token=alice.access_token)
    )
    assert rules == {"join_rule": "public"}
    await ok(await api.post(f"/rooms/{room}/join", {}, token=dave.access_token))

    # And a redacted `invite` rule still keeps strangers out.
    invite_id = (
        await ok(
            await api.put(
                f"/rooms/{room}/state/m.room.join_rules/",
                {"join_rule": "invite", "org.example.note": "x"},
                token=alice.access_token,
            )
        )
    )["event_id"]
    await ok(await api.put(f"/rooms/{room}/redact/{invite_id}/r2", {}, token=alice.access_token))
    eve = await api.register("eve")
    r = await api.post(f"/rooms/{room}/join", {}, token=eve.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"


async def test_redaction_is_stored_not_only_cached(
    server: RunningServer, restart_server: RestartFn
) -> None:
    """The pruned form is what the database holds: after a restart (empty caches)
    the event is still redacted, and the original text is gone from the row."""
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        room = await create_room(api, alice, room_version="11")
        msg = (
            await ok(
                await api.put(
                    f"/rooms/{room}/send/m.room.message/t1",
                    {"msgtype": "m.text", "body": "do-not-keep-me"},
                    token=alice.access_token,
                )
            )
        )["event_id"]
        red = await ok(
            await api.put(f"/rooms/{room}/redact/{msg}/r1", {}, token=alice.access_token)
        )
    raw = await server.hs.db.fetchval("SELECT json FROM events WHERE event_id = $1", msg)
    assert "do-not-keep-me" not in str(raw)
    server = await restart_server(server)
    async with Api(server.client_url) as api:
        got = await ok(await api.get(f"/rooms/{room}/event/{msg}", token=alice.access_token))
    assert got["content"] == {}
    assert got["unsigned"]["redacted_because"]["event_id"] == red["event_id"]
