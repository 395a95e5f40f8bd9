"""The admin commands of `myelin` (list-users, deactivate-user, reset-password, list-rooms,
shutdown-room), run as subprocesses against the configured database, with the server
stopped and while it runs."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.helpers import Api
from tests.integration import test_cli
from tests.integration.test_cli import assert_one_line_error, generate, myelin, run_server

database_url = test_cli.database_url  # the fixture: SQLite, or a fresh PostgreSQL database


async def test_admin_commands_with_server_stopped_and_running(
    tmp_path: Path, database_url: str | None
) -> None:
    data_dir = tmp_path / "data"
    client_port, _ = await generate(data_dir, database_url)
    config = str(data_dir / "homeserver.yaml")
    for name in ("alice", "bob", "carol"):
        rc, _, err = await myelin(
            "register-user", "--config", config, name, "--password", "pw-" + name
        )
        assert rc == 0, err

    # Server stopped.
    rc, out, err = await myelin("list-users", "--config", config)
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert lines[0].split() == [
        "USER",
        "ID",
        "DISPLAY",
        "NAME",
        "ADMIN",
        "GUEST",
        "DEACTIVATED",
        "CREATED",
        "LAST",
        "SEEN",
    ]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].startswith("@alice:cli.test") and "alice" in lines[2].split()[1:]
    assert lines[-1] == "3 user(s)"

    rc, out, err = await myelin(
        "reset-password", "--config", config, "alice", "--password", "new-pw"
    )
    assert rc == 0, err
    assert "@alice:cli.test" in out
    rc, out, err = await myelin("deactivate-user", "--config", config, "@bob:cli.test", "--erase")
    assert rc == 0 and "deactivated @bob:cli.test (erased)" in out, err
    rc, out, _ = await myelin("list-users", "--config", config)
    assert "@bob:cli.test" not in out and out.strip().endswith("2 user(s)")
    rc, out, _ = await myelin("list-users", "--config", config, "--deactivated")
    bob_line = next(line for line in out.splitlines() if line.startswith("@bob:cli.test"))
    assert bob_line.split()[1:4] == ["no", "no", "yes"]  # admin, guest, deactivated

    # Refusals: one line, exit code 1, nothing changed.
    rc, _, err = await myelin("deactivate-user", "--config", config, "nobody")
    assert_one_line_error(rc, err, "not found")
    rc, _, err = await myelin("reset-password", "--config", config, "carol")
    assert_one_line_error(rc, err, "--password")
    rc, _, err = await myelin("shutdown-room", "--config", config, "not-a-room")
    assert_one_line_error(rc, err, "room")

    async def check(url: str) -> None:
        async with Api(url) as api:
            assert (await api.login("alice", "pw-alice")).status == 403
            alice = (await api.login("alice", "new-pw")).body["access_token"]
            carol = (await api.login("carol", "pw-carol")).body["access_token"]
            assert (await api.login("bob", "pw-bob")).status == 403
            r = await api.post(
                "/createRoom", {"name": "Town square", "preset": "public_chat"}, token=alice
            )
            room = r.body["room_id"]
            assert (await api.post(f"/join/{room}", {}, token=carol)).status == 200

            # Server running: the CLI works on the same database.
            rc, out, err = await myelin("list-rooms", "--config", config)
            assert rc == 0, err
            assert out.splitlines()[0].split() == [
                "ROOM",
                "ID",
                "NAME",
                "ALIAS",
                "MEMBERS",
                "LOCAL",
                "ENCRYPTED",
            ]
            assert room in out and "Town square" in out
            rc, out, err = await myelin("shutdown-room", "--config", config, room, "--block")
            assert rc == 0, err
            assert f"room {room}: complete and blocked" in out
            assert "@alice:cli.test  left" in out and "@carol:cli.test  left" in out
            r = await api.get("/joined_rooms", token=carol)
            assert room not in r.body["joined_rooms"]
            r = await api.post(f"/join/{room}", {}, token=carol)
            assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
            rc, out, err = await myelin("deactivate-user", "--config", config, "carol")
            assert rc == 0, err
            assert (await api.login("carol", "pw-carol")).status == 403

    rc, err = await run_server(data_dir / "homeserver.yaml", client_port, check, signal.SIGTERM)
    assert rc == 0, err
