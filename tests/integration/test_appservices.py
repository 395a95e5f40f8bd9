"""Application services against a real one: mautrix's ``AppService`` on 127.0.0.1 with a
bridge's registration file. Namespaced registration, identity assertion, exclusive
namespaces, invites and messages as transactions, queries, ping, and a service that was
down (or a homeserver that restarted) getting everything it missed, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from mautrix.errors import MatrixRequestError
from mautrix.types import EventType, Membership, RoomAlias, UserID

from homeserver.app import RunningServer
from homeserver.config import ConfigError
from tests.conftest import RestartFn, ServerFactory, free_port
from tests.helpers import Api, User
from tests.integration.appservice_bridge import AS_TOKEN, Bridge, registration, write_registration
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text


@dataclass
class Setup:
    server: RunningServer
    bridge: Bridge
    api: Api
    port: int

    async def new_bridge(self) -> Bridge:
        """A fresh run of the service on the same port (after a stop)."""
        self.bridge = Bridge(self.server.client_url, self.port)
        await self.bridge.start()
        return self.bridge


@pytest.fixture
async def setup(make_server: ServerFactory, tmp_path: Path) -> AsyncIterator[Setup]:
    port = free_port()
    path = write_registration(tmp_path, registration(port))
    server = await make_server(
        app_service_config_files=[path],
        app_service_min_retry_ms=50,
        app_service_max_retry_ms=400,
    )
    bridge = Bridge(server.client_url, port)
    await bridge.start()
    async with Api(server.client_url) as api:
        s = Setup(server, bridge, api, port)
        yield s
        await s.bridge.stop()


def as_params(user_id: str | None = None) -> dict[str, str]:
    return {"user_id": user_id} if user_id else {}


async def as_get(api: Api, path: str, user_id: str | None = None) -> tuple[int, dict[str, object]]:
    r = await api.get(path, token=AS_TOKEN, params=as_params(user_id))
    return r.status, r.body


async def test_namespaced_registration_and_masquerading(setup: Setup) -> None:
    intent = setup.bridge.appservice.intent
    ghost = intent.user(UserID("@bridge_alice:localhost"))
    await ghost.ensure_registered()
    assert await ghost.whoami() is not None
    assert (await ghost.whoami()).user_id == "@bridge_alice:localhost"
    # The sender user exists from the start and is the default identity, with no device.
    assert (await intent.whoami()).user_id == "@bridgebot:localhost"
    r = await setup.api.get("/account/whoami", token=AS_TOKEN)
    assert r.status == 200 and "device_id" not in r.body, r.body

    api = setup.api
    # Outside its namespace: refused.
    r = await api.post(
        "/register",
        {"type": "m.login.application_service", "username": "somebody"},
        token=AS_TOKEN,
    )
    assert (r.status, r.errcode) == (400, "M_EXCLUSIVE"), r.body
    # Without the application-service type: refused.
    r = await api.post("/register", {"username": "bridge_bob"}, token=AS_TOKEN)
    assert r.status == 400, r.body
    # Masquerading as a user outside the namespace, or one never registered: 403.
    alice = await api.register("alice")
    status, body = await as_get(api, "/account/whoami", alice.user_id)
    assert (status, body.get("errcode")) == (403, "M_FORBIDDEN")
    status, body = await as_get(api, "/account/whoami", "@bridge_nobody:localhost")
    assert (status, body.get("errcode")) == (403, "M_FORBIDDEN")
    # A device that does not exist cannot be asserted.
    r = await api.get(
        "/account/whoami",
        token=AS_TOKEN,
        params={"user_id": "@bridge_alice:localhost", "device_id": "NOPE"},
    )
    assert r.status == 400, r.body
    # A device that does (registered with login): whoami names it.
    r = await api.post(
        "/register",
        {"type": "m.login.application_service", "username": "bridge_dev", "device_id": "DEV1"},
        token=AS_TOKEN,
    )
    assert r.status == 200 and r.body["device_id"] == "DEV1", r.body
    r = await api.get(
        "/account/whoami",
        token=AS_TOKEN,
        params={"user_id": "@bridge_dev:localhost", "device_id": "DEV1"},
    )
    assert r.status == 200 and r.body["device_id"] == "DEV1", r.body
    # Registering the same user again: in use.
    r = await api.post(
        "/register",
        {"type": "m.login.application_service", "username": "bridge_alice"},
        token=AS_TOKEN,
    )
    assert r.errcode == "M_USER_IN_USE", r.body


async def test_exclusive_namespaces_refuse_other_users(setup: Setup) -> None:
    api = setup.api
    r = await api.post(
        "/register",
        {
            "username": "bridge_mallory",
            "password": "pw pw pw pw",
            "auth": {"type": "m.login.dummy"},
        },
    )
    assert (r.status, r.errcode) == (400, "M_EXCLUSIVE"), r.body
    r = await api.get("/register/available", params={"username": "bridge_mallory"})
    assert (r.status, r.errcode) == (400, "M_EXCLUSIVE"), r.body
    r = await api.get("/register/available", params={"username": "bridgebot"})
    assert r.errcode in ("M_EXCLUSIVE", "M_USER_IN_USE"), r.body
    alice = await api.register("alice")
    room_id = await create_room(api, alice)
    r = await api.put(
        "/directory/room/%23bridge_x:localhost", {"room_id": room_id}, token=alice.access_token
    )
    assert (r.status, r.errcode) == (400, "M_EXCLUSIVE"), r.body
    r = await api.post("/createRoom", {"room_alias_name": "bridge_y"}, token=alice.access_token)
    assert (r.status, r.errcode) == (400, "M_EXCLUSIVE"), r.body
    # Outside the namespace: fine.
    r = await api.put(
        "/directory/room/%23elsewhere:localhost", {"room_id": room_id}, token=alice.access_token
    )
    assert r.status == 200, r.body
    # The service's own users may take the alias.
    ghost = setup.bridge.appservice.intent.user(UserID("@bridge_carol:localhost"))
    await ghost.ensure_registered()
    room2 = await ghost.create_room(alias_localpart="bridge_carols")
    r = await api.get("/directory/room/%23bridge_carols:localhost")
    assert r.status == 200 and r.body["room_id"] == room2, r.body


async def test_invites_and_messages_arrive_as_transactions(setup: Setup) -> None:
    api, bridge = setup.api, setup.bridge
    ghost = bridge.appservice.intent.user(UserID("@bridge_dave:localhost"))
    await ghost.ensure_registered()
    alice = await api.register("alice")
    room_id = await create_room(api, alice, name="Bridged")
    r = await api.post(
        f"/rooms/{room_id}/invite", {"user_id": ghost.mxid}, token=alice.access_token
    )
    assert r.status == 200, r.body
    invite = await bridge.next_event(lambda e: e.type == EventType.ROOM_MEMBER)
    assert invite.state_key == ghost.mxid and invite.content.membership == Membership.INVITE
    assert invite.sender == alice.user_id and invite.room_id == room_id
    # The room's preview comes with the invite, as in /sync (and Synapse's legacy fields).
    raw = next(
        e for _, b in bridge.accepted for e in b["events"] if e["event_id"] == invite.event_id
    )
    preview = {(e["type"], e["state_key"]) for e in raw["unsigned"]["invite_room_state"]}
    assert {("m.room.create", ""), ("m.room.name", ""), ("m.room.member", alice.user_id)} <= preview
    assert raw["user_id"] == alice.user_id and raw["age"] == raw["unsigned"]["age"]
    await ghost.join_room_by_id(room_id)
    await bridge.next_event(
        lambda e: e.type == EventType.ROOM_MEMBER and e.content.membership == Membership.JOIN
    )
    sent = [await send_text(api, alice, room_id, f"hello {i}", f"t{i}") for i in range(3)]
    got = [await bridge.next_event(lambda e: e.type == EventType.ROOM_MESSAGE) for _ in sent]
    assert [e.event_id for e in got] == sent
    assert [e.content.body for e in got] == ["hello 0", "hello 1", "hello 2"]
    # The ghost speaks: its message is the service's too, and alice reads it.
    event_id = await ghost.send_text(room_id, "from the other side")
    echoed = await bridge.next_event(lambda e: e.type == EventType.ROOM_MESSAGE)
    assert echoed.event_id == event_id and echoed.sender == ghost.mxid
    r = await api.get(f"/rooms/{room_id}/event/{event_id}", token=alice.access_token)
    assert r.status == 200 and r.body["content"]["body"] == "from the other side"
    # Rooms the service has no user in are not its business.
    other = await create_room(api, alice)
    await send_text(api, alice, other, "private", "p1")
    marker = await send_text(api, alice, room_id, "marker", "m1")
    nxt = await bridge.next_event(lambda e: e.type == EventType.ROOM_MESSAGE)
    assert nxt.event_id == marker
    # Ephemeral: alice typing in the bridged room reaches the service.
    r = await api.put(
        f"/rooms/{room_id}/typing/{alice.user_id}",
        {"typing": True, "timeout": 30000},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    while True:
        edu = await bridge.ephemeral_next()
        if edu.type == EventType.TYPING:
            assert edu.room_id == room_id and alice.user_id in edu.content.user_ids
            break


async def test_user_and_alias_queries(setup: Setup) -> None:
    api, bridge = setup.api, setup.bridge
    intent = bridge.appservice.intent

    async def make_user(user_id: str) -> None:
        await intent.user(UserID(user_id)).ensure_registered()

    async def make_room(alias: str) -> None:
        await intent.create_room(alias_localpart=alias[1:].split(":", 1)[0])

    alice = await api.register("alice")
    # Nobody to ask yet: unknown stays unknown, but the service was asked.
    r = await api.get("/profile/@bridge_eve:localhost", token=alice.access_token)
    assert r.status == 404, r.body
    assert bridge.user_queries == ["@bridge_eve:localhost"]
    bridge.on_user_query = make_user
    r = await api.get("/profile/@bridge_eve:localhost", token=alice.access_token)
    assert r.status == 200, r.body
    # An invite to an unknown user of the namespace asks too (the invite carries the
    # profile the service gave it).
    room_id = await create_room(api, alice)
    r = await api.post(
        f"/rooms/{room_id}/invite", {"user_id": "@bridge_fay:localhost"}, token=alice.access_token
    )
    assert r.status == 200, r.body
    assert bridge.user_queries[-1] == "@bridge_fay:localhost"
    r = await api.get(
        f"/rooms/{room_id}/state/m.room.member/@bridge_fay:localhost", token=alice.access_token
    )
    assert r.body == {"membership": "invite", "displayname": "bridge_fay"}, r.body
    # Users outside the namespace are never asked about.
    r = await api.get("/profile/@zed:localhost", token=alice.access_token)
    assert r.status == 404 and bridge.user_queries[-1] == "@bridge_fay:localhost"

    bridge.on_alias_query = make_room
    r = await api.get("/directory/room/%23bridge_lobby:localhost")
    assert r.status == 200, r.body
    assert bridge.alias_queries == [RoomAlias("#bridge_lobby:localhost")]
    r = await api.get("/directory/room/%23nobody:localhost")
    assert r.status == 404 and len(bridge.alias_queries) == 1


async def test_ping(setup: Setup) -> None:
    bridge, api = setup.bridge, setup.api
    # mautrix's own call (it reads a 0 ms round trip as -1, so only the service's side
    # is checked through it).
    await bridge.appservice.ping_self("ping-1")
    assert bridge.pings == ["ping-1"]
    r = await api.post(
        "/_matrix/client/v1/appservice/testbridge/ping",
        {"transaction_id": "ping-2"},
        token=AS_TOKEN,
    )
    assert r.status == 200 and isinstance(r.body["duration_ms"], int), r.body
    assert r.body["duration_ms"] >= 0 and bridge.pings == ["ping-1", "ping-2"]
    # Only the service itself may ping it.
    alice = await api.register("alice")
    r = await api.post(
        "/_matrix/client/v1/appservice/testbridge/ping", {}, token=alice.access_token
    )
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), r.body
    with pytest.raises(MatrixRequestError):
        await bridge.appservice.intent.appservice_ping("another-service")
    # A service that is down: 502 M_CONNECTION_FAILED.
    await bridge.stop()
    r = await api.post("/_matrix/client/v1/appservice/testbridge/ping", {}, token=AS_TOKEN)
    assert (r.status, r.errcode) == (502, "M_CONNECTION_FAILED"), r.body
    await setup.new_bridge()


async def _send_while_down(
    setup: Setup, count: int, between: Callable[[], Awaitable[None]] | None = None
) -> tuple[User, list[str]]:
    api, bridge = setup.api, setup.bridge
    ghost = bridge.appservice.intent.user(UserID("@bridge_frank:localhost"))
    await ghost.ensure_registered()
    alice = await api.register("alice")
    room_id = await create_room(api, alice, preset="public_chat")
    await ghost.join_room_by_id(room_id)
    await bridge.next_event(lambda e: e.type == EventType.ROOM_MEMBER and e.state_key == ghost.mxid)
    await bridge.stop()
    sent = [await send_text(api, alice, room_id, f"missed {i}", f"d{i}") for i in range(count)]
    if between is not None:
        await between()
    return alice, sent


async def test_service_down_then_back_gets_everything_in_order(setup: Setup) -> None:
    _, sent = await _send_while_down(setup, 6)
    bridge = await setup.new_bridge()
    got = [await bridge.next_event(lambda e: e.type == EventType.ROOM_MESSAGE) for _ in sent]
    assert [e.event_id for e in got] == sent
    # Transaction ids go up, one transaction at a time; none is sent twice once accepted.
    ids = [int(t) for t in bridge.txn_ids]
    assert ids == sorted(ids) and len(ids) == len(set(ids))


async def test_a_failed_transaction_is_retried_with_the_same_id_and_body(setup: Setup) -> None:
    api, bridge = setup.api, setup.bridge
    ghost = bridge.appservice.intent.user(UserID("@bridge_gina:localhost"))
    await ghost.ensure_registered()
    alice = await api.register("alice")
    room_id = await create_room(api, alice, preset="public_chat")
    await ghost.join_room_by_id(room_id)
    await bridge.next_event(lambda e: e.type == EventType.ROOM_MEMBER and e.state_key == ghost.mxid)
    bridge.fail_next = 2
    event_id = await send_text(api, alice, room_id, "retry me", "r1")
    got = await bridge.next_event(lambda e: e.type == EventType.ROOM_MESSAGE)
    assert got.event_id == event_id
    assert len(bridge.failed) == 2
    (id1, body1), (id2, body2) = bridge.failed
    id3, body3 = next((t, b) for t, b in bridge.accepted if t == id1)
    assert id1 == id2 == id3 and body1 == body2 == body3
    assert [e["event_id"] for e in body1["events"]] == [event_id]


async def test_homeserver_restart_keeps_the_backlog(
    setup: Setup, restart_server: RestartFn
) -> None:
    async def restart() -> None:
        setup.server = await restart_server(setup.server)
        setup.api.base_url = setup.server.client_url

    _, sent = await _send_while_down(setup, 4, restart)
    bridge = await setup.new_bridge()
    got = [await bridge.next_event(lambda e: e.type == EventType.ROOM_MESSAGE) for _ in sent]
    assert [e.event_id for e in got] == sent


async def test_a_bad_registration_file_stops_the_start(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    info = registration(free_port())
    info["namespaces"] = {"users": [{"regex": "@bridge_.*:localhost"}]}
    path = write_registration(tmp_path, info)
    with pytest.raises(ConfigError, match=r"app_service_config_files: .*exclusive"):
        await make_server(app_service_config_files=[path])


async def test_third_party_lookups_and_network_directory(setup: Setup) -> None:
    api, bridge = setup.api, setup.bridge
    alice = await api.register("alice")
    tok = alice.access_token
    r = await api.get("/thirdparty/protocols", token=tok)
    assert r.status == 200 and list(r.body) == ["chat"], r.body
    chat = r.body["chat"]
    assert chat["user_fields"] == ["nick"] and chat["location_fields"] == ["channel"]
    assert chat["instances"][0]["instance_id"] == "testbridge|chatnet"
    r = await api.get("/thirdparty/protocol/chat", token=tok)
    assert r.status == 200 and r.body["instances"] == chat["instances"], r.body
    r = await api.get("/thirdparty/protocol/irc", token=tok)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND"), r.body
    r = await api.get("/thirdparty/location/chat", token=tok, params={"channel": "general"})
    assert r.status == 200 and r.body[0]["alias"] == "#bridge_general:localhost", r.body
    r = await api.get("/thirdparty/user/chat", token=tok, params={"nick": "zoe"})
    assert r.status == 200 and r.body[0]["userid"] == "@bridge_zoe:localhost", r.body
    r = await api.get("/thirdparty/location", token=tok, params={"alias": "#bridge_x:localhost"})
    assert r.status == 200 and len(r.body) == 1, r.body
    r = await api.get("/thirdparty/user", token=tok, params={"userid": "@bridge_y:localhost"})
    assert r.status == 200 and len(r.body) == 1, r.body
    assert {"channel": "general"} in bridge.thirdparty_queries
    assert {"userid": "@bridge_y:localhost"} in bridge.thirdparty_queries
    r = await api.get("/thirdparty/user/irc", token=tok)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND"), r.body
    r = await api.get("/thirdparty/protocols")
    assert r.status == 401, r.body

    # The service lists a room in its network's directory; ordinary users may not.
    room_id = await create_room(api, alice, name="Bridged lobby")
    path = f"/directory/list/appservice/chatnet/{room_id}"
    r = await api.put(path, {"visibility": "public"}, token=tok)
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), r.body
    r = await api.put(path, {"visibility": "public"}, token=AS_TOKEN)
    assert r.status == 200, r.body
    r = await api.post("/publicRooms", {"third_party_instance_id": "testbridge|chatnet"}, token=tok)
    assert [e["room_id"] for e in r.body["chunk"]] == [room_id], r.body
    r = await api.post("/publicRooms", {}, token=tok)
    assert r.body["chunk"] == [], r.body
    r = await api.post("/publicRooms", {"include_all_networks": True}, token=tok)
    assert [e["room_id"] for e in r.body["chunk"]] == [room_id], r.body
    r = await api.put(path, {"visibility": "private"}, token=AS_TOKEN)
    assert r.status == 200, r.body
    r = await api.post("/publicRooms", {"third_party_instance_id": "testbridge|chatnet"}, token=tok)
    assert r.body["chunk"] == [], r.body


async def test_receipts_and_to_device_messages(setup: Setup) -> None:
    api, bridge = setup.api, setup.bridge
    r = await api.post(
        "/register",
        {"type": "m.login.application_service", "username": "bridge_hal", "device_id": "HALDEV"},
        token=AS_TOKEN,
    )
    assert r.status == 200, r.body
    hal = UserID("@bridge_hal:localhost")
    alice = await api.register("alice")
    room_id = await create_room(api, alice, preset="public_chat")
    await bridge.appservice.intent.user(hal).join_room_by_id(room_id)
    event_id = await send_text(api, alice, room_id, "read me", "x1")
    await bridge.next_event(lambda e: e.event_id == event_id)
    r = await api.post(f"/rooms/{room_id}/receipt/m.read/{event_id}", {}, token=alice.access_token)
    assert r.status == 200, r.body
    while True:
        edu = await bridge.ephemeral_next()
        if edu.type == EventType.RECEIPT:
            break
    raw = [
        e for _, b in bridge.accepted for e in b.get("ephemeral", []) if e["type"] == "m.receipt"
    ]
    assert raw[0]["room_id"] == room_id and alice.user_id in raw[0]["content"][event_id]["m.read"]
    # Under MSC2409's name too, as Synapse sends it.
    unstable = [
        e
        for _, b in bridge.accepted
        for e in b.get("de.sorunome.msc2409.ephemeral", [])
        if e["type"] == "m.receipt"
    ]
    assert unstable == raw
    # Presence of a user who shares a room with the service's user.
    r = await api.put(
        f"/presence/{alice.user_id}/status",
        {"presence": "online", "status_msg": "bridging"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    while True:
        edu = await bridge.ephemeral_next()
        if edu.type == EventType.PRESENCE:
            break
    presence = [
        e for _, b in bridge.accepted for e in b.get("ephemeral", []) if e["type"] == "m.presence"
    ]
    assert presence[0]["sender"] == alice.user_id
    assert presence[0]["content"]["presence"] == "online"
    assert presence[0]["content"]["status_msg"] == "bridging"
    # Not of users who share no room with the service's users.
    bob = await api.register("bob")
    r = await api.put(
        f"/presence/{bob.user_id}/status", {"presence": "online"}, token=bob.access_token
    )
    assert r.status == 200, r.body
    r = await api.put(
        f"/presence/{alice.user_id}/status", {"presence": "unavailable"}, token=alice.access_token
    )
    assert r.status == 200, r.body
    while True:
        edu = await bridge.ephemeral_next()
        if edu.type == EventType.PRESENCE and edu.content.presence.value == "unavailable":
            break
    senders = {
        e["sender"]
        for _, b in bridge.accepted
        for e in b.get("ephemeral", [])
        if e["type"] == "m.presence"
    }
    assert senders == {alice.user_id}
    # To-device messages for the service's users' devices, in MSC2409's shape.
    r = await api.put(
        "/sendToDevice/org.example.ping/td1",
        {"messages": {hal: {"HALDEV": {"n": 1}}}},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    # The next message is in the same or a later transaction than the to-device message.
    marker = await send_text(api, alice, room_id, "after", "x2")
    await bridge.next_event(lambda e: e.event_id == marker)
    sent = [m for _, body in bridge.accepted for m in body.get("de.sorunome.msc2409.to_device", [])]
    assert sent == [
        {
            "type": "org.example.ping",
            "sender": alice.user_id,
            "content": {"n": 1},
            "to_user_id": hal,
            "to_device_id": "HALDEV",
        }
    ]
    # Taken out of the device's inbox once a stored transaction held it.
    r = await api.get("/sync", token=AS_TOKEN, params={"user_id": hal, "device_id": "HALDEV"})
    assert r.status == 200 and r.body.get("to_device", {}).get("events", []) == [], r.body


async def test_application_service_login(setup: Setup) -> None:
    api = setup.api
    r = await api.get("/login")
    assert {"type": "m.login.application_service"} in r.body["flows"], r.body
    await setup.bridge.appservice.intent.user(UserID("@bridge_ivy:localhost")).ensure_registered()
    login = {
        "type": "m.login.application_service",
        "identifier": {"type": "m.id.user", "user": "@bridge_ivy:localhost"},
        "device_id": "IVYDEV",
    }
    r = await api.post("/login", login, token=AS_TOKEN)
    assert r.status == 200 and r.body["device_id"] == "IVYDEV", r.body
    r = await api.get("/account/whoami", token=r.body["access_token"])
    assert r.body["user_id"] == "@bridge_ivy:localhost" and r.body["device_id"] == "IVYDEV"
    # Masquerading with the device now works too.
    r = await api.get(
        "/account/whoami",
        token=AS_TOKEN,
        params={"user_id": "@bridge_ivy:localhost", "device_id": "IVYDEV"},
    )
    assert r.status == 200 and r.body["device_id"] == "IVYDEV", r.body
    alice = await api.register("alice")
    outside = {**login, "identifier": {"type": "m.id.user", "user": alice.user_id}}
    r = await api.post("/login", outside, token=AS_TOKEN)
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), r.body
    r = await api.post("/login", login)
    assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN"), r.body
    r = await api.post("/login", login, token="not-a-service")
    assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN"), r.body


async def test_to_device_messages_waiting_at_start_are_sent(
    make_server: ServerFactory, restart_server: RestartFn, tmp_path: Path
) -> None:
    """A message queued for a device before the service was configured (or while the
    server was down) is found at start-up, not only when the next one arrives."""
    plain = await make_server()
    async with Api(plain.client_url) as api:
        kim = await api.register("bridge_kim")
        alice = await api.register("alice")
        r = await api.put(
            "/sendToDevice/org.example.hello/w1",
            {"messages": {kim.user_id: {kim.device_id: {"early": True}}}},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
    port = free_port()
    path = write_registration(tmp_path, registration(port))
    plain.hs.config.app_service_config_files = [path]
    server = await restart_server(plain)
    bridge = Bridge(server.client_url, port)
    await bridge.start()
    try:
        async with Api(server.client_url) as api:
            # Any event for the service ends a wait that the to-device message precedes.
            ghost = bridge.appservice.intent.user(UserID("@bridge_lee:localhost"))
            await ghost.ensure_registered()
            room_id = await ghost.create_room()
            await bridge.next_event(lambda e: e.room_id == room_id)
        sent = [
            m for _, body in bridge.accepted for m in body.get("de.sorunome.msc2409.to_device", [])
        ]
        assert sent == [
            {
                "type": "org.example.hello",
                "sender": alice.user_id,
                "content": {"early": True},
                "to_user_id": kim.user_id,
                "to_device_id": kim.device_id,
            }
        ]
    finally:
        await bridge.stop()
