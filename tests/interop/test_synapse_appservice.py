"""One bridge registration file against Myelin and against Synapse: the same mautrix
application service is driven through the same story on each, and what each homeserver
sends it (paths, authorization, transaction and event shapes) is compared."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mautrix.types import EventType, Membership, UserID

from tests.conftest import ServerFactory, free_port
from tests.helpers import Api, User
from tests.integration.appservice_bridge import (
    AS_TOKEN,
    HS_TOKEN,
    Bridge,
    registration,
    write_registration,
)
from tests.interop.conftest import SynapseFactory

pytestmark = pytest.mark.interop


@dataclass
class Seen:
    """What one homeserver sent the bridge during the story."""

    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    invite: dict[str, Any] = field(default_factory=dict)
    message: dict[str, Any] = field(default_factory=dict)
    ping: dict[str, Any] = field(default_factory=dict)


def _raw(bridge: Bridge, event_id: str) -> dict[str, Any]:
    for _, body in bridge.accepted:
        for event in body.get("events", []):
            if event.get("event_id") == event_id:
                return dict(event)
    raise AssertionError(f"{event_id} was not in any transaction")


async def _story(base_url: str, domain: str, port: int, alice: User) -> Seen:
    """Ghost registered, invited by alice, joins; alice speaks; a user query; a ping."""
    bridge = Bridge(base_url, port, domain=domain)
    await bridge.start()
    try:
        ghost = bridge.appservice.intent.user(UserID(f"@bridge_ann:{domain}"))
        await ghost.ensure_registered()
        async with Api(base_url) as api:
            r = await api.post("/createRoom", {"preset": "private_chat"}, token=alice.access_token)
            assert r.status == 200, r.body
            room_id = r.body["room_id"]
            r = await api.post(
                f"/rooms/{room_id}/invite", {"user_id": ghost.mxid}, token=alice.access_token
            )
            assert r.status == 200, r.body
            invite = await bridge.next_event(
                lambda e: (
                    e.type == EventType.ROOM_MEMBER and e.content.membership == Membership.INVITE
                )
            )
            await ghost.join_room_by_id(room_id)
            r = await api.put(
                f"/rooms/{room_id}/send/m.room.message/t1",
                {"msgtype": "m.text", "body": "hello bridge"},
                token=alice.access_token,
            )
            assert r.status == 200, r.body
            message = await bridge.next_event(lambda e: e.event_id == r.body["event_id"])
            r = await api.get(f"/profile/@bridge_unknown:{domain}", token=alice.access_token)
            assert r.status == 404, r.body
            r = await api.post(
                "/_matrix/client/v1/appservice/testbridge/ping",
                {"transaction_id": "p1"},
                token=AS_TOKEN,
            )
            assert r.status == 200, r.body
            seen = Seen(
                requests=list(bridge.requests),
                bodies=[b for _, b in bridge.accepted],
                invite=_raw(bridge, invite.event_id),
                message=_raw(bridge, message.event_id),
                ping=r.body,
            )
    finally:
        await bridge.stop()
    return seen


def _shape(seen: Seen, domain: str) -> dict[str, Any]:
    """What must be the same on both servers (ids, times and names differ)."""
    paths = sorted(
        {
            (method, path.split("/transactions/")[0] + "/transactions/{txnId}")
            if "/transactions/" in path
            else (method, path.replace(domain, "DOMAIN"))
            for method, path, _ in seen.requests
            # Myelin also asks the service about an unknown user of its namespace on a
            # profile look-up (the spec's "Query User"); Synapse does not.
            if "/_matrix/app/v1/users/" not in path
        }
    )
    return {
        "paths": paths,
        "authorization": sorted({auth for _, _, auth in seen.requests}),
        "transaction_keys": sorted({k for body in seen.bodies for k in body}),
        "message_keys": sorted(seen.message),
        "message_unsigned": sorted(seen.message["unsigned"]),
        "message_content": seen.message["content"],
        "invite_keys": sorted(seen.invite),
        "invite_unsigned": sorted(seen.invite["unsigned"]),
        # Myelin also puts m.room.guest_access in invite previews (a guest invited from
        # another server learns from it that it may join); Synapse's default list omits it.
        "invite_preview": [
            (e["type"], e["state_key"].replace(domain, "DOMAIN"))
            for e in seen.invite["unsigned"]["invite_room_state"]
            if e["type"] != "m.room.guest_access"
        ],
        "invite_membership": seen.invite["content"]["membership"],
        "invite_state_key": seen.invite["state_key"].replace(domain, "DOMAIN"),
        "ping": sorted(seen.ping),
    }


async def test_same_registration_same_shapes_as_synapse(
    make_server: ServerFactory, make_synapse: SynapseFactory, tmp_path: Path
) -> None:
    port = free_port()
    info = registration(port)
    # Server names differ (localhost, 127.0.0.1:PORT): namespaces without the domain.
    info["namespaces"] = {
        "users": [{"exclusive": True, "regex": "@bridge_.*"}],
        "aliases": [{"exclusive": True, "regex": "#bridge_.*"}],
        "rooms": [],
    }
    path = write_registration(tmp_path, info)

    myelin = await make_server(app_service_config_files=[path])
    async with Api(myelin.client_url) as api:
        alice = await api.register("alice")
    ours = await _story(myelin.client_url, "localhost", port, alice)

    synapse = make_synapse(app_service_config_files=[path])
    registered = synapse.register("alice")
    theirs = await _story(
        synapse.client_url,
        synapse.server_name,
        port,
        User(registered.user_id, registered.access_token, registered.device_id, "x"),
    )

    assert _shape(ours, "localhost") == _shape(theirs, synapse.server_name)
    assert _shape(ours, "localhost")["authorization"] == [f"Bearer {HS_TOKEN}"]
    # Both number transactions with integers and send each event once.
    for seen in (ours, theirs):
        ids = [p.rsplit("/", 1)[1] for m, p, _ in seen.requests if "/transactions/" in p]
        assert all(i.isdigit() for i in ids) and len(ids) == len(set(ids))
