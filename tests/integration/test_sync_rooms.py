"""/sync room sections over real HTTP: unread counts from stored push actions,
/notifications, summary, filters by id, lazy-loaded members, include_leave, tokens."""

from __future__ import annotations

import json
from typing import Any

import pytest

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.test_moderation import guest_rooms
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_sections import shared_room, sync

# Also through one homeserver of three processes (tests/spread.py, PostgreSQL only).
pytestmark = pytest.mark.spread


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    """Guest accounts are off by default; this module's tests use them."""
    return await make_server(registration={"allow_guests": True})


def counts(body: dict[str, Any], room_id: str) -> dict[str, int]:
    c: dict[str, int] = body["rooms"]["join"][room_id]["unread_notifications"]
    return c


async def test_unread_counts_rise_highlight_and_reset_on_receipt(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await shared_room(api, alice, bob)
    b0 = await sync(api, bob)
    assert counts(b0, room_id) == {"notification_count": 0, "highlight_count": 0}
    await send_text(api, alice, room_id, "one", "t1")
    await send_text(api, alice, room_id, "two", "t2")
    b1 = await sync(api, bob, b0["next_batch"])
    assert counts(b1, room_id) == {"notification_count": 2, "highlight_count": 0}
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/t3",
        {"msgtype": "m.text", "body": "hey bob", "m.mentions": {"user_ids": [bob.user_id]}},
        token=alice.access_token,
    )
    assert r.status == 200
    mention = r.body["event_id"]
    b2 = await sync(api, bob, b1["next_batch"])
    assert counts(b2, room_id) == {"notification_count": 3, "highlight_count": 1}
    # alice's own messages never count for her.
    a = await sync(api, alice)
    assert counts(a, room_id) == {"notification_count": 0, "highlight_count": 0}
    r = await api.get("/notifications", token=bob.access_token)
    assert r.status == 200
    notes = r.body["notifications"]
    assert [n["event"]["content"]["body"] for n in notes] == ["hey bob", "two", "one"]
    assert notes[0]["room_id"] == room_id and notes[0]["read"] is False
    assert {"set_tweak": "highlight"} in notes[0]["actions"]
    r = await api.get("/notifications", token=bob.access_token, params={"only": "highlight"})
    assert [n["event"]["event_id"] for n in r.body["notifications"]] == [mention]
    r = await api.get("/notifications", token=bob.access_token, params={"limit": "2"})
    assert len(r.body["notifications"]) == 2
    r = await api.get(
        "/notifications", token=bob.access_token, params={"from": r.body["next_token"]}
    )
    assert [n["event"]["content"]["body"] for n in r.body["notifications"]] == ["one"]
    # A read receipt on the newest event resets both counts (the room shows up for it).
    r = await api.post(f"/rooms/{room_id}/receipt/m.read/{mention}", {}, token=bob.access_token)
    assert r.status == 200
    b3 = await sync(api, bob, b2["next_batch"])
    assert counts(b3, room_id) == {"notification_count": 0, "highlight_count": 0}
    r = await api.get("/notifications", token=bob.access_token)
    assert all(n["read"] for n in r.body["notifications"])


async def test_thread_notifications_when_asked(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await shared_room(api, alice, bob)
    root = await send_text(api, alice, room_id, "root", "t1")
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/t2",
        {
            "msgtype": "m.text",
            "body": "in thread",
            "m.relates_to": {"rel_type": "m.thread", "event_id": root},
        },
        token=alice.access_token,
    )
    assert r.status == 200
    flt = json.dumps({"room": {"timeline": {"unread_thread_notifications": True}}})
    body = await sync(api, bob, filter=flt)
    room = body["rooms"]["join"][room_id]
    assert room["unread_notifications"]["notification_count"] == 1
    assert room["unread_thread_notifications"] == {
        root: {"notification_count": 1, "highlight_count": 0}
    }
    plain = await sync(api, bob)
    assert counts(plain, room_id)["notification_count"] == 2
    assert "unread_thread_notifications" not in plain["rooms"]["join"][room_id]


async def test_summary_heroes_and_counts_when_membership_changes(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await shared_room(api, alice, bob)
    a0 = await sync(api, alice)
    assert a0["rooms"]["join"][room_id]["summary"] == {
        "m.heroes": [bob.user_id],
        "m.joined_member_count": 2,
        "m.invited_member_count": 0,
    }
    r = await api.post(
        f"/rooms/{room_id}/invite", {"user_id": carol.user_id}, token=alice.access_token
    )
    assert r.status == 200
    a1 = await sync(api, alice, a0["next_batch"])
    assert a1["rooms"]["join"][room_id]["summary"] == {
        "m.heroes": [bob.user_id, carol.user_id],
        "m.joined_member_count": 2,
        "m.invited_member_count": 1,
    }
    await send_text(api, bob, room_id, "no membership change", "t1")
    a2 = await sync(api, alice, a1["next_batch"])
    assert "summary" not in a2["rooms"]["join"][room_id]
    # Once the room has a name, heroes are left out (Sytest 31sync/16room-summary).
    r = await api.put(
        f"/rooms/{room_id}/state/m.room.name/", {"name": "Named"}, token=alice.access_token
    )
    assert r.status == 200
    assert (await api.post(f"/join/{room_id}", {}, token=carol.access_token)).status == 200
    a3 = await sync(api, alice, a2["next_batch"])
    assert a3["rooms"]["join"][room_id]["summary"] == {
        "m.joined_member_count": 3,
        "m.invited_member_count": 0,
    }


async def test_filter_by_id_applies_to_timeline_and_account_data(api: Api) -> None:
    alice = await api.register("alice")
    room_id = await create_room(api, alice)
    flt = {
        "room": {"timeline": {"types": ["org.example.keep"]}, "state": {"types": ["m.room.name"]}},
        "account_data": {"not_types": ["m.push_rules"]},
    }
    r = await api.post(f"/user/{alice.user_id}/filter", flt, token=alice.access_token)
    assert r.status == 200
    filter_id = r.body["filter_id"]
    base = await sync(api, alice, filter=filter_id)
    assert base["account_data"]["events"] == []
    state_types = {e["type"] for e in base["rooms"]["join"][room_id]["state"]["events"]}
    assert state_types <= {"m.room.name"}
    since = base["next_batch"]
    for i, t in enumerate(["org.example.keep", "org.example.drop", "org.example.keep"]):
        r = await api.put(f"/rooms/{room_id}/send/{t}/f{i}", {"i": i}, token=alice.access_token)
        assert r.status == 200
    body = await sync(api, alice, since, filter=filter_id)
    events = body["rooms"]["join"][room_id]["timeline"]["events"]
    assert [(e["type"], e["content"]["i"]) for e in events] == [
        ("org.example.keep", 0),
        ("org.example.keep", 2),
    ]
    unfiltered = await sync(api, alice, since)
    assert len(unfiltered["rooms"]["join"][room_id]["timeline"]["events"]) == 3
    r = await api.get("/sync", token=alice.access_token, params={"filter": "999999"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_lazy_loading_members(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await shared_room(api, alice, bob)
    assert (await api.post(f"/join/{room_id}", {}, token=carol.access_token)).status == 200
    for i in range(3):
        await send_text(api, bob, room_id, f"b{i}", f"b{i}")
    lazy = {"room": {"timeline": {"limit": 2}, "state": {"lazy_load_members": True}}}
    body = await sync(api, alice, filter=json.dumps(lazy))
    room = body["rooms"]["join"][room_id]
    members = {e["state_key"] for e in room["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {alice.user_id, bob.user_id}  # not carol: she sent nothing shown
    assert any(e["type"] == "m.room.create" for e in room["state"]["events"])
    eager = await sync(api, alice, filter=json.dumps({"room": {"timeline": {"limit": 2}}}))
    room = eager["rooms"]["join"][room_id]
    members = {e["state_key"] for e in room["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {alice.user_id, bob.user_id, carol.user_id}
    # Incremental: carol speaks after a gap; her membership comes with it, bob's not again.
    for i in range(3):
        await send_text(api, carol, room_id, f"c{i}", f"c{i}")
    inc = await sync(api, alice, body["next_batch"], filter=json.dumps(lazy))
    room = inc["rooms"]["join"][room_id]
    assert room["timeline"]["limited"] is True
    members = {e["state_key"] for e in room["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {carol.user_id}
    redundant = {
        "room": {
            "timeline": {"limit": 2},
            "state": {"lazy_load_members": True, "include_redundant_members": True},
        }
    }
    await send_text(api, carol, room_id, "c3", "c3")
    await send_text(api, carol, room_id, "c4", "c4")
    await send_text(api, carol, room_id, "c5", "c5")
    inc2 = await sync(api, alice, inc["next_batch"], filter=json.dumps(redundant))
    room = inc2["rooms"]["join"][room_id]
    members = {e["state_key"] for e in room["state"]["events"] if e["type"] == "m.room.member"}
    assert members == {carol.user_id}


async def test_lazy_loading_gapped_sync_carries_the_gap_memberships(
    api: Api, processes: int
) -> None:
    """A limited incremental sync with lazy loading: every membership change of the gap
    (joins and leaves of members who said nothing shown), the new timeline senders', and
    not again the ones this device already has (Sytest 31sync/15lazy-members)."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    dave = await api.register("dave")
    room_id = await shared_room(api, alice, bob)
    assert (await api.post(f"/join/{room_id}", {}, token=carol.access_token)).status == 200
    for i in range(3):
        await send_text(api, bob, room_id, f"b{i}", f"b{i}")
    lazy = json.dumps({"room": {"timeline": {"limit": 2}, "state": {"lazy_load_members": True}}})

    def members(body: dict[str, Any]) -> dict[str, str]:
        room = body["rooms"]["join"][room_id]
        return {
            e["state_key"]: e["content"]["membership"]
            for e in room["state"]["events"]
            if e["type"] == "m.room.member"
        }

    first = await sync(api, alice, filter=lazy)
    assert members(first) == {alice.user_id: "join", bob.user_id: "join"}
    # Dave joins and stays silent; carol speaks after a gap.
    assert (await api.post(f"/join/{room_id}", {}, token=dave.access_token)).status == 200
    for i in range(4):
        await send_text(api, carol, room_id, f"c{i}", f"c{i}")
    second = await sync(api, alice, first["next_batch"], filter=lazy)
    assert second["rooms"]["join"][room_id]["timeline"]["limited"] is True
    assert members(second) == {carol.user_id: "join", dave.user_id: "join"}
    # Dave leaves in the next gap: only his leave, carol is not sent again.
    assert (await api.post(f"/rooms/{room_id}/leave", {}, token=dave.access_token)).status == 200
    for i in range(4):
        await send_text(api, carol, room_id, f"d{i}", f"d{i}")
    third = await sync(api, alice, second["next_batch"], filter=lazy)
    if processes == 1:
        assert members(third) == {dave.user_id: "leave"}
    else:
        # What a device was sent is remembered per process: another may send carol again.
        assert members(third).items() >= {dave.user_id: "leave"}.items()
        assert set(members(third)) <= {dave.user_id, carol.user_id}


async def test_include_leave_and_tokens(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await shared_room(api, alice, bob)
    await send_text(api, alice, room_id, "before leave", "t1")
    b0 = await sync(api, bob)
    assert (await api.post(f"/rooms/{room_id}/leave", {}, token=bob.access_token)).status == 200
    b1 = await sync(api, bob, b0["next_batch"])
    assert room_id in b1["rooms"]["leave"]
    plain = await sync(api, bob)
    assert plain["rooms"]["leave"] == {}
    flt = json.dumps({"room": {"include_leave": True}})
    with_leave = await sync(api, bob, filter=flt)
    left = with_leave["rooms"]["leave"][room_id]
    bodies = [e["content"].get("body") for e in left["timeline"]["events"]]
    assert "before leave" in bodies
    # Every stream is in the token; /messages and /keys/changes read the same token.
    token = plain["next_batch"]
    assert token.startswith("s") and "_td" in token and "_dl" in token and "_ty" in token
    a = await sync(api, alice)
    r = await api.get(
        f"/rooms/{room_id}/messages",
        token=alice.access_token,
        params={"from": a["next_batch"], "dir": "b", "limit": "1"},
    )
    assert r.status == 200 and r.body["chunk"][0]["content"]["membership"] == "leave"
    # A token from before the other streams existed still works.
    events_only = "s" + token[1:].split("_")[0]
    old = await sync(api, alice, events_only)
    assert old["next_batch"].startswith("s")
    r = await api.get("/sync", token=alice.access_token, params={"since": "s1_ty9"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_guest_sees_only_guest_rooms(server: Any, api: Api) -> None:
    """A guest's /sync shows only rooms whose m.room.guest_access is can_join (spec:
    "Guest Access"). POST /join refuses guests for now, so the guest joins through
    the membership service, the path the join endpoint takes."""
    alice = await api.register("alice")
    guest = await api.register_guest()
    open_room, closed_room = await guest_rooms(api, alice)
    memberships = server.hs.rooms_area.memberships
    await memberships.join(guest.user_id, open_room)
    await memberships.join(guest.user_id, closed_room)
    body = await sync(api, guest)
    assert list(body["rooms"]["join"]) == [open_room]
    r = await api.put(
        f"/rooms/{open_room}/state/m.room.guest_access/",
        {"guest_access": "forbidden"},
        token=alice.access_token,
    )
    assert r.status == 200
    body = await sync(api, guest)
    assert body["rooms"]["join"] == {}
    # An invite reaches the guest whatever the room's guest access (a remote room's
    # is not even known here: Sytest "Guest users denied access over federation").
    no_guests = await create_room(api, alice, preset="public_chat")
    r = await api.post(
        f"/rooms/{no_guests}/invite", {"user_id": guest.user_id}, token=alice.access_token
    )
    assert r.status == 200, r.body
    body = await sync(api, guest)
    assert list(body["rooms"]["invite"]) == [no_guests]


async def test_full_state_lists_quiet_rooms_and_filtered_timeline_reads_back(api: Api) -> None:
    """Sytest 31sync: full_state=true answers every joined room even with nothing new,
    and a type-filtered timeline reaches its limit behind many non-matching events."""
    alice = await api.register("alice")
    room_id = await create_room(api, alice)
    first = await sync(api, alice)
    quiet = await sync(api, alice, first["next_batch"], full_state="true")
    assert room_id in quiet["rooms"]["join"]
    assert quiet["rooms"]["join"][room_id]["state"]["events"]

    await send_text(api, alice, room_id, "My message", "m1")
    for i in range(30):
        r = await api.put(
            f"/rooms/{room_id}/send/a.filler/f{i}", {"n": i}, token=alice.access_token
        )
        assert r.status == 200
    flt = {"room": {"timeline": {"limit": 1, "types": ["m.room.message"]}}}
    body = await sync(api, alice, filter=json.dumps(flt))
    timeline = body["rooms"]["join"][room_id]["timeline"]
    assert [e["content"]["body"] for e in timeline["events"]] == ["My message"]
    assert timeline["limited"] is False


async def test_newly_joined_room_brings_presence(api: Api) -> None:
    """Sytest 31sync/03joined: with a room joined since the token, the members' current
    presence comes along although it did not change."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await api.put(
        f"/presence/{alice.user_id}/status", {"presence": "online"}, token=alice.access_token
    )
    assert r.status == 200
    room_id = await create_room(api, alice, preset="public_chat")
    for i in range(12):
        await send_text(api, alice, room_id, f"m{i}", f"t{i}")
    first = await api.get("/sync", token=bob.access_token)
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    r = await api.get(
        "/sync",
        token=bob.access_token,
        params={
            "since": first.body["next_batch"],
            "filter": json.dumps({"room": {"timeline": {"limit": 3}}}),
        },
    )
    assert room_id in r.body["rooms"]["join"]
    senders = {e["sender"]: e["content"]["presence"] for e in r.body["presence"]["events"]}
    assert senders.get(alice.user_id) == "online"


async def test_federation_event_format(api: Api) -> None:
    """Filter ``event_format: federation``: timeline events as PDUs (Sytest 31sync/13)."""
    alice = await api.register("alice")
    room_id = await create_room(api, alice)
    event_id = await send_text(api, alice, room_id, "Test message", "t1")
    flt = {"event_format": "federation", "room": {"timeline": {"limit": 1}}}
    body = await sync(api, alice, filter=json.dumps(flt))
    [event] = body["rooms"]["join"][room_id]["timeline"]["events"]
    assert event["event_id"] == event_id and event["content"]["body"] == "Test message"
    assert {"room_id", "prev_events", "auth_events", "depth", "hashes", "signatures"} <= set(event)


async def test_profile_change_is_not_a_new_join(api: Api) -> None:
    """Sytest 31sync/06state: a join replacing a join (a display name change) does not make
    the room "newly joined" (no full state again)."""
    alice = await api.register("alice")
    room_id = await create_room(api, alice)
    r = await api.put(
        f"/rooms/{room_id}/state/a.madeup.test.state/", {"my_key": 1}, token=alice.access_token
    )
    assert r.status == 200
    flt = json.dumps(
        {
            "room": {
                "timeline": {"types": []},
                "state": {"types": ["a.madeup.test.state"]},
                "ephemeral": {"types": []},
            },
            "presence": {"types": []},
        }
    )
    first = await sync(api, alice, filter=flt)
    assert len(first["rooms"]["join"][room_id]["state"]["events"]) == 1
    r = await api.put(
        f"/rooms/{room_id}/state/m.room.member/{alice.user_id}",
        {"membership": "join", "displayname": "boris"},
        token=alice.access_token,
    )
    assert r.status == 200
    await send_text(api, alice, room_id, "to wait on", "t1")
    again = await sync(api, alice, first["next_batch"], filter=flt)
    assert again["rooms"]["join"] == {}
