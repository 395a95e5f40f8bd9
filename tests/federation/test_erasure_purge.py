"""Erasure and history purge in a room shared by two Myelin servers.

An erased user's events are served pruned over federation /event too; purged
history is not fetched back from the other server by /messages.
"""

from __future__ import annotations

from typing import Any

from federation.client import encode_path
from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY, fed
from tests.federation.rooms_support import name, q, register, send_text, settle
from tests.helpers import Api, User
from tests.integration.admin_support import V1, make_admin
from tests.integration.purge_support import bodies, timeline, wait_for_purge


async def _shared_room(
    make_server: ServerFactory,
) -> tuple[RunningServer, RunningServer, Api, User, User, str]:
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room = str(r.body["room_id"])
    r = await api_b.post(f"/join/{q(room)}?server_name={q(name(a))}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)
    return a, b, api_a, alice, bob, room


async def _pdu_from(fetcher: RunningServer, holder: RunningServer, event_id: str) -> Any:
    resp = await fed(fetcher).client.get_json(
        name(holder), encode_path("_matrix", "federation", "v1", "event", event_id)
    )
    return resp["pdus"][0]


async def test_erased_user_events_are_pruned_over_federation(make_server: ServerFactory) -> None:
    a, b, api_a, alice, _, room = await _shared_room(make_server)
    secret = await send_text(api_a, alice, room, "alice's secret")
    await settle(a, b)
    assert (await _pdu_from(b, a, secret))["content"]["body"] == "alice's secret"
    root = await make_admin(a, api_a)
    r = await api_a.post(
        f"{V1}/deactivate/{alice.user_id}", {"erase": True}, token=root.access_token
    )
    assert r.status == 200, r.body
    pdu = await _pdu_from(b, a, secret)
    assert pdu["content"] == {} and pdu["hashes"]  # the event id still matches


async def test_purged_history_is_not_backfilled_again(make_server: ServerFactory) -> None:
    a, b, api_a, alice, _, room = await _shared_room(make_server)
    old = [await send_text(api_a, alice, room, f"old {i}") for i in range(3)]
    last = await send_text(api_a, alice, room, "kept")
    await settle(a, b)
    root = await make_admin(a, api_a)
    r = await api_a.post(
        f"{V1}/purge_history/{room}/{last}",
        {"delete_local_events": True},
        token=root.access_token,
    )
    assert r.status == 200, r.body
    assert await wait_for_purge(api_a, root.access_token, r.body["purge_id"]) == {
        "status": "complete"
    }
    # B still holds the history; A's back-pagination ends at the purge point anyway.
    assert bodies(await timeline(api_a, alice, room)) == {"kept"}
    held = await a.hs.db.fetchval(
        "SELECT COUNT(*) FROM events WHERE event_id IN ($1, $2, $3)", *old
    )
    assert held == 0
    # And the room goes on across both servers.
    after = await send_text(api_a, alice, room, "after the purge")
    await settle(a, b)
    assert (await _pdu_from(b, a, after))["content"]["body"] == "after the purge"
