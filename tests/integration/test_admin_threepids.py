"""Synapse's admin user API with ``threepids``: PUT sets an account's addresses (which
then log in and reset passwords like validated ones), GET shows them."""

from __future__ import annotations

from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.admin_support import V2, make_admin


async def test_admin_sets_and_replaces_addresses(make_server: ServerFactory) -> None:
    server = await make_server()
    async with Api(server.client_url) as api:
        root = await make_admin(server, api)
        t = root.access_token
        created = await api.put(
            V2 + "/users/@amy:localhost",
            {
                "password": "pw amy",
                "threepids": [{"medium": "email", "address": "Amy@Example.test"}],
            },
            token=t,
        )
        assert created.status == 201, created.body
        [entry] = created.body["threepids"]
        assert (entry["medium"], entry["address"]) == ("email", "amy@example.test")
        assert {"validated_at", "added_at"} <= entry.keys()

        login = await api.post(
            "/login",
            {
                "type": "m.login.password",
                "identifier": {
                    "type": "m.id.thirdparty",
                    "medium": "email",
                    "address": "amy@example.test",
                },
                "password": "pw amy",
            },
        )
        assert login.status == 200 and login.body["user_id"] == "@amy:localhost"
        mine = await api.get("/account/3pid", token=login.body["access_token"])
        assert [e["address"] for e in mine.body["threepids"]] == ["amy@example.test"]

        # A PUT gives the whole set: the old address goes, the new one comes.
        replaced = await api.put(
            V2 + "/users/@amy:localhost",
            {"threepids": [{"medium": "email", "address": "amy2@example.test"}]},
            token=t,
        )
        assert [e["address"] for e in replaced.body["threepids"]] == ["amy2@example.test"]
        got = await api.get(V2 + "/users/@amy:localhost", token=t)
        assert [e["address"] for e in got.body["threepids"]] == ["amy2@example.test"]

        # Another account's address is refused; bad shapes are refused.
        await api.register("bea")
        taken = await api.put(
            V2 + "/users/@bea:localhost",
            {"threepids": [{"medium": "email", "address": "amy2@example.test"}]},
            token=t,
        )
        assert (taken.status, taken.errcode) == (400, "M_THREEPID_IN_USE")
        for bad in ("nope", [{"medium": "email"}], [{"medium": "email", "address": "no-at"}]):
            r = await api.put(V2 + "/users/@bea:localhost", {"threepids": bad}, token=t)
            assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), bad

        cleared = await api.put(V2 + "/users/@amy:localhost", {"threepids": []}, token=t)
        assert cleared.status == 200 and cleared.body["threepids"] == []
