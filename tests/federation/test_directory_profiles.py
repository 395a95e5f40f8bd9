"""Another server's room directory and user profiles, asked over federation
(/publicRooms?server=..., /profile/{remote user}) between two real Myelin servers."""

from __future__ import annotations

from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY, free_port_name
from tests.federation.rooms_support import name, q, register


async def test_remote_directory_and_profile(make_server: ServerFactory) -> None:
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    r = await api_a.put(
        f"/profile/{q(alice.user_id)}/displayname",
        {"displayname": "Alice A"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    r = await api_a.post(
        "/createRoom",
        {"preset": "public_chat", "visibility": "public", "name": "Lobby on A", "topic": "t"},
        token=alice.access_token,
    )
    room_id = r.body["room_id"]
    await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)

    r = await api_b.get(f"/profile/{q(alice.user_id)}", token=bob.access_token)
    assert (r.status, r.body) == (200, {"displayname": "Alice A"})
    r = await api_b.get(f"/profile/{q(alice.user_id)}/displayname", token=bob.access_token)
    assert (r.status, r.body) == (200, {"displayname": "Alice A"})
    r = await api_b.get(f"/profile/{q(alice.user_id)}/avatar_url", token=bob.access_token)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    nobody = f"@nobody:{name(a)}"
    r = await api_b.get(f"/profile/{q(nobody)}", token=bob.access_token)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")

    r = await api_b.get(f"/publicRooms?server={q(name(a))}")
    assert r.status == 200, r.body
    assert [
        (e["room_id"], e["name"], e["topic"], e["num_joined_members"]) for e in r.body["chunk"]
    ] == [(room_id, "Lobby on A", "t", 1)]
    assert r.body["total_room_count_estimate"] == 1
    r = await api_b.post(
        f"/publicRooms?server={q(name(a))}",
        {"filter": {"generic_search_term": "lobby"}, "limit": 1},
        token=bob.access_token,
    )
    assert [e["room_id"] for e in r.body["chunk"]] == [room_id]
    r = await api_b.post(
        f"/publicRooms?server={q(name(a))}",
        {"filter": {"generic_search_term": "nothing like it"}},
        token=bob.access_token,
    )
    assert (r.status, r.body["chunk"]) == (200, [])

    # A server that does not answer: a Matrix error, not a 500.
    gone = free_port_name()
    r = await api_b.get(f"/publicRooms?server={q(gone)}")
    assert (r.status, r.errcode) == (502, "M_UNKNOWN")
    r = await api_b.get(f"/profile/{q('@someone:' + gone)}", token=bob.access_token)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_remote_alias_resolves_through_its_server(make_server: ServerFactory) -> None:
    """GET /directory/room/{alias of another server} asks that server (Sytest
    50federation/11query-directory, 30rooms/05aliases: Unicode aliases too)."""
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    for alias in (f"#lobby:{name(a)}", f"#\u2615:{name(a)}"):
        r = await api_a.put(
            f"/directory/room/{q(alias)}", {"room_id": room_id}, token=alice.access_token
        )
        assert r.status == 200, r.body
        r = await api_b.get(f"/directory/room/{q(alias)}", token=bob.access_token)
        assert r.status == 200, r.body
        assert r.body["room_id"] == room_id and name(a) in r.body["servers"]
    r = await api_b.get(f"/directory/room/{q('#nope:' + name(a))}", token=bob.access_token)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    gone = free_port_name()
    r = await api_b.get(f"/directory/room/{q('#x:' + gone)}", token=bob.access_token)
    assert r.status == 502 and r.errcode == "M_UNKNOWN"
