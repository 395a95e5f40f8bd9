"""The three-process fixture itself (tests/spread.py): requests really are spread over
main, sync and client, and a client that hops between them at random still sees what
another process took in (typing, messages) without a gap or a repeat. Once with the
fixture's servers, once with three real OS processes (``myelin run`` and
``myelin run --worker``) behind the same proxy."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import ENGINE, ServerFactory
from tests.helpers import Api
from tests.integration.test_cli import database_url, generate
from tests.integration.test_workers_cli import add_worker, processes, stop
from tests.processes import send, typing_in
from tests.spread import WORKERS, SpreadProxy, SpreadServer, seed_for

__all__ = ["database_url"]  # the fixture, imported for this module's tests

ROUNDS = 60  # bounded /sync loop; each long-poll is woken or times out after 2 s


async def hop_around(url: str) -> None:
    """Alice sends and types, Bob syncs: every request through ``url`` (the proxy)."""
    async with Api(url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
        assert r.status == 200, r.body
        room_id = r.body["room_id"]
        assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
        since = (await api.get("/sync", token=bob.access_token)).body["next_batch"]
        sent = [await send(api, alice, room_id, f"m{i}") for i in range(10)]
        r = await api.put(
            f"/rooms/{room_id}/typing/{alice.user_id}",
            {"typing": True, "timeout": 60000},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
        seen: list[str] = []
        typing: list[str] = []
        for _ in range(ROUNDS):
            r = await api.get(
                "/sync", token=bob.access_token, params={"since": since, "timeout": "2000"}
            )
            assert r.status == 200, r.body
            since = r.body["next_batch"]
            room = r.body.get("rooms", {}).get("join", {}).get(room_id, {})
            seen += [e["event_id"] for e in room.get("timeline", {}).get("events", [])]
            typing = typing_in(r.body, room_id) or typing
            if set(sent) <= set(seen) and typing == [alice.user_id]:
                break
        assert [e for e in seen if e in sent] == sent  # each once, in order, across hops
        assert typing == [alice.user_id]


@pytest.mark.parametrize("processes", [3], indirect=True)
async def test_requests_are_spread_and_a_hopping_client_misses_nothing(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    assert isinstance(server, SpreadServer) and server.proxy is not None
    await hop_around(server.client_url)
    assert set(server.proxy.counts) == {"main", "sync", "client"}, server.proxy.counts


async def test_three_real_processes_behind_the_proxy(
    tmp_path: Path, database_url: str | None, request: pytest.FixtureRequest
) -> None:
    if ENGINE != "postgres" or database_url is None:
        pytest.skip("worker processes need PostgreSQL")
    data_dir = tmp_path / "data"
    main_port, _ = await generate(data_dir, database_url, "--open-registration")
    config = data_dir / "homeserver.yaml"
    ports = {"main": main_port} | {name: add_worker(config, name) for name in WORKERS}
    raw = yaml.safe_load(config.read_text())
    raw["rate_limits"] = {"enabled": False}  # one client registers from one address
    config.write_text(yaml.safe_dump(raw))
    proxy = SpreadProxy(
        {name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
        seed_for(request.node.nodeid),
    )
    async with processes(config, ports) as procs:
        try:
            await proxy.start()
            await hop_around(f"http://127.0.0.1:{proxy.port}")
            assert set(proxy.counts) == set(ports), proxy.counts
        finally:
            await proxy.stop()
        for proc in reversed(procs.values()):
            assert await stop(proc) == 0
