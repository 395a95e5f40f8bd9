"""A /sync token's stream positions are read in one statement (``SyncStore.stream_heads``,
issue 15: fewer round trips on PostgreSQL); each must still be its own stream's head.
Every stream is moved alone, and only its field of the token may follow."""

from __future__ import annotations

from dataclasses import asdict

from homeserver.app import HomeServer
from homeserver.storage.database import count_statements
from homeserver.streams.tokens import StreamToken
from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.e2ee_device import Device
from tests.integration.test_room_size_statement_counts import counted_sync, local_user
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text


async def own_heads(hs: HomeServer) -> dict[str, int]:
    """Each stream's head as its own service reads it."""
    src = hs.sync_area.sync.src
    return {
        "events": await hs.rooms_area.rooms.events.current_position(),
        "device_lists": await src.keys.current_device_list_pos(),
        "account_data": await src.account_data.current_position(),
        "receipts": await src.receipts.current_position(),
        "presence": await src.presence.current_position(),
    }


def token_heads(token: StreamToken) -> dict[str, int]:
    fields = asdict(token)
    return {
        k: fields[k] for k in ("events", "device_lists", "account_data", "receipts", "presence")
    }


async def test_each_stream_moves_only_its_own_position(make_server: ServerFactory) -> None:
    server = await make_server()
    hs = server.hs
    builder = hs.sync_area.sync
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        room_id = await create_room(api, alice)
        event_id = await send_text(api, alice, room_id, "hello", "t1")

        def move_events() -> object:
            return send_text(api, alice, room_id, "again", "t2")

        def move_account_data() -> object:
            return api.put(
                f"/user/{alice.user_id}/account_data/org.example.x",
                {"a": 1},
                token=alice.access_token,
            )

        def move_receipts() -> object:
            return api.post(
                f"/rooms/{room_id}/receipt/m.read/{event_id}", {}, token=alice.access_token
            )

        def move_presence() -> object:
            return api.put(
                f"/presence/{alice.user_id}/status",
                {"presence": "unavailable"},
                token=alice.access_token,
            )

        def move_device_lists() -> object:
            dev = Device(alice.user_id, alice.device_id)
            return api.post(
                "/keys/upload", {"device_keys": dev.device_keys()}, token=alice.access_token
            )

        moves = {
            "events": move_events,
            "account_data": move_account_data,
            "receipts": move_receipts,
            "presence": move_presence,
            "device_lists": move_device_lists,
        }
        for stream, move in moves.items():
            before = token_heads(await builder.positions())
            assert before == await own_heads(hs)
            reply = await move()  # type: ignore[misc]
            assert getattr(reply, "status", 200) == 200, reply
            with count_statements() as counter:
                after = token_heads(await builder.positions())
            assert counter.total == 1, counter.by_sql
            assert after == await own_heads(hs), stream
            assert after[stream] > before[stream], stream
            # The push evaluator and presence may move nothing else but events.
            others = {k for k in after if k != stream and after[k] != before[k]}
            assert others <= {"events"} - {stream}, (stream, others)


async def test_account_data_is_read_only_when_its_stream_moved(make_server: ServerFactory) -> None:
    """An incremental sync skips the account-data read when the stream has not moved
    since the token, and still returns a change once it has."""
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        alice = await local_user(hs, "alice")
        first, _ = await counted_sync(hs, alice, None)
        quiet, counter = await counted_sync(hs, alice, first["next_batch"])
        assert counter.total > 0
        assert quiet["account_data"]["events"] == []
        assert not [k for k in counter.by_sql if "FROM account_data a" in k], counter.by_sql
        r = await api.put(
            f"/user/{alice.user_id}/account_data/org.example.y",
            {"b": 2},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
        moved, counter = await counted_sync(hs, alice, quiet["next_batch"])
        assert [k for k in counter.by_sql if "FROM account_data a" in k], counter.by_sql
        assert {"type": "org.example.y", "content": {"b": 2}} in moved["account_data"]["events"]
