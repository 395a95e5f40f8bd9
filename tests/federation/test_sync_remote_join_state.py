"""A room joined over federation, seen by an incremental /sync: its timeline is read
from the room's history (Synapse's behaviour), but never starts at the invite that
arrived before this server was in the room (an outlier: no state is known at it), so
the room's state, encryption included, is all in ``state`` (matrix-nio decides from it
whether the room is encrypted)."""

from __future__ import annotations

from tests.conftest import ServerFactory
from tests.federation.rooms_support import q, register, settle

ENCRYPTION = {"algorithm": "m.megolm.v1.aes-sha2"}


async def test_remote_join_brings_the_whole_state(make_server: ServerFactory) -> None:
    a = await make_server(federated=True)
    b = await make_server(federated=True)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    body = {
        "preset": "private_chat",
        "initial_state": [{"type": "m.room.encryption", "state_key": "", "content": ENCRYPTION}],
    }
    room = (await api_a.post("/createRoom", body, token=alice.access_token)).body["room_id"]
    since = (await api_b.get("/sync", token=bob.access_token)).body["next_batch"]
    r = await api_a.post(
        f"/rooms/{q(room)}/invite", {"user_id": bob.user_id}, token=alice.access_token
    )
    assert r.status == 200, r.body
    await settle(a, b)
    invited = await api_b.get(
        "/sync", token=bob.access_token, params={"since": since, "timeout": "5000"}
    )
    assert room in invited.body["rooms"]["invite"]
    since = invited.body["next_batch"]
    assert (await api_b.post(f"/join/{q(room)}", {}, token=bob.access_token)).status == 200
    joined = await api_b.get(
        "/sync", token=bob.access_token, params={"since": since, "timeout": "5000"}
    )
    body_b = joined.body["rooms"]["join"][room]
    timeline = body_b["timeline"]["events"]
    state = {(e["type"], e["state_key"]): e for e in body_b["state"]["events"]}
    assert [e["content"]["membership"] for e in timeline if e["type"] == "m.room.member"] == [
        "join"
    ]
    assert state[("m.room.encryption", "")]["content"] == ENCRYPTION
    assert ("m.room.create", "") in state and ("m.room.power_levels", "") in state
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
