"""No access or refresh token and no password is stored in the data directory or database."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ServerFactory
from tests.helpers import Api

PASSWORD = "Tr0ub4dor&3-unique-password"
NEW_PASSWORD = "another-unique-password-9f2c"


async def _all_table_text(server: object) -> str:
    """Every row of every table, as text (works on both engines)."""
    db = server.hs.db  # type: ignore[attr-defined]
    if db.engine == "postgres":
        names = [
            r[0]
            for r in await db.fetchall(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ]
    else:
        names = [
            r[0]
            for r in await db.fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
    assert "users" in names and "access_tokens" in names
    out = []
    for name in names:
        for row in await db.fetchall(f'SELECT * FROM "{name}"'):
            out.append(repr(tuple(row)))
    return "\n".join(out)


async def test_no_token_or_password_at_rest(make_server: ServerFactory) -> None:
    server = await make_server()
    secrets: list[str] = []
    async with Api(server.client_url) as api:
        alice = await api.register("alice", PASSWORD)
        secrets.append(alice.access_token)
        r = await api.login("alice", PASSWORD, refresh_token=True)
        secrets += [r.body["access_token"], r.body["refresh_token"]]
        r = await api.post("/refresh", {"refresh_token": r.body["refresh_token"]})
        secrets += [r.body["access_token"], r.body["refresh_token"]]
        r = await api.post(
            "/account/password",
            {
                "new_password": NEW_PASSWORD,
                "logout_devices": False,
                "auth": {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": "alice"},
                    "password": PASSWORD,
                },
            },
            token=alice.access_token,
        )
        assert r.status == 200
        r = await api.login("alice", NEW_PASSWORD)
        secrets.append(r.body["access_token"])
        # Everything issued above really works (so it was really stored, as a hash).
        assert (await api.get("/account/whoami", token=secrets[-1])).status == 200

    needles = [PASSWORD, NEW_PASSWORD]
    for token in secrets:
        needles += [token, token.split("_", 1)[1]]

    table_text = await _all_table_text(server)
    assert "@alice:localhost" in table_text  # the dump really holds the data
    for needle in needles:
        assert needle not in table_text

    data_dir = Path(server.hs.config.data_dir)
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    if server.hs.db.engine == "sqlite":
        names = {p.name for p in files}
        assert "homeserver.db" in names and "homeserver.db-wal" in names
        blob = b"".join(p.read_bytes() for p in files)
        assert b"@alice:localhost" in blob
    blob = b"".join(p.read_bytes() for p in files)
    for needle in needles:
        assert needle.encode() not in blob, "secret found in the data directory"
