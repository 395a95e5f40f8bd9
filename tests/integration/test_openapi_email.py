"""The email, 3PID and login-token operations, checked against the spec's OpenAPI schemas
with the conformance test's client (every answer validated as it arrives); the test
fails if an operation listed here was not reached."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import ServerFactory
from tests.integration.email_support import Mailbox, email_server, smtp_mailbox
from tests.integration.test_openapi_conformance import CheckedApi

V3 = "/_matrix/client/v3"
COVERED = frozenset(
    {
        ("GET", V3 + "/login"),
        ("POST", V3 + "/login"),
        ("POST", "/_matrix/client/v1/login/get_token"),
        ("POST", V3 + "/register/email/requestToken"),
        ("POST", V3 + "/register/msisdn/requestToken"),
        ("POST", V3 + "/account/password/email/requestToken"),
        ("POST", V3 + "/account/password/msisdn/requestToken"),
        ("POST", V3 + "/account/3pid/email/requestToken"),
        ("POST", V3 + "/account/3pid/msisdn/requestToken"),
        ("GET", V3 + "/account/3pid"),
        ("POST", V3 + "/account/3pid"),
        ("POST", V3 + "/account/3pid/add"),
        ("POST", V3 + "/account/3pid/bind"),
        ("POST", V3 + "/account/3pid/unbind"),
        ("POST", V3 + "/account/3pid/delete"),
        ("POST", V3 + "/account/password"),
        ("POST", V3 + "/register"),
    }
)


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    async with smtp_mailbox() as box:
        yield box


async def test_email_and_login_token_answers_match_the_spec(
    make_server: ServerFactory, mailbox: Mailbox
) -> None:
    server = await email_server(make_server, mailbox, login_via_existing_session={"enabled": True})
    async with CheckedApi(server.client_url) as api:
        alice = await api.register("alice")
        a = alice.access_token
        assert (await api.get("/login")).status == 200
        auth: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": alice.user_id},
            "password": alice.password,
        }
        address = "alice@example.test"
        asked = await api.post(
            "/account/3pid/email/requestToken",
            {"client_secret": "c", "email": address, "send_attempt": 1},
        )
        assert asked.status == 200
        submit = mailbox.take(address).link_params()
        # submit_url is this server's own path, outside the spec's operations.
        async with api.session.post(  # type: ignore[union-attr]
            asked.body["submit_url"], json=submit
        ) as resp:
            assert resp.status == 200
        # A first UIA answer has no errcode, which the checked client (rightly, for
        # errors) insists on; a failed stage answers both the flows and an errcode.
        wrong = {**auth, "password": "wrong"}
        add = {"sid": asked.body["sid"], "client_secret": "c"}
        failed = await api.post("/account/3pid/add", {**add, "auth": wrong}, token=a)
        assert failed.status == 401 and failed.body["flows"]
        again = {**add, "auth": {**auth, "session": failed.body["session"]}}
        assert (await api.post("/account/3pid/add", again, token=a)).status == 200
        assert (await api.get("/account/3pid", token=a)).status == 200
        body = {"client_secret": "c", "email": "x@example.test", "send_attempt": 1}
        assert (await api.post("/register/email/requestToken", body)).status == 200
        for path in ("/register", "/account/password", "/account/3pid"):
            phone = {"client_secret": "c", "country": "GB", "phone_number": "1", "send_attempt": 1}
            assert (await api.post(f"{path}/msisdn/requestToken", phone)).status == 400
        reset = {"client_secret": "r", "email": address, "send_attempt": 1}
        assert (await api.post("/account/password/email/requestToken", reset)).status == 200
        bogus = {
            "type": "m.login.email.identity",
            "threepid_creds": {"sid": "x", "client_secret": "y"},
        }
        by_mail = {"new_password": "n", "auth": bogus}
        assert (await api.post("/account/password", by_mail)).status == 401
        register = {"username": "bob", "password": "p", "auth": bogus}
        assert (await api.post("/register", register)).status == 401
        creds = {
            "client_secret": "s",
            "sid": "x",
            "id_server": "not a host",
            "id_access_token": "t",
        }
        assert (await api.post("/account/3pid/bind", creds, token=a)).status == 400
        assert (await api.post("/account/3pid", {"three_pid_creds": creds}, token=a)).status == 403
        threepid = {"medium": "email", "address": address}
        assert (await api.post("/account/3pid/unbind", threepid, token=a)).status == 200
        assert (await api.post("/account/3pid/delete", threepid, token=a)).status == 200

        get_token = "/_matrix/client/v1/login/get_token"
        first = await api.post(get_token, {"auth": wrong}, token=a)
        assert first.status == 401
        minted = await api.post(
            get_token, {"auth": {**auth, "session": first.body["session"]}}, token=a
        )
        assert minted.status == 200
        login = {"type": "m.login.token", "token": minted.body["login_token"]}
        assert (await api.post("/login", login)).status == 200
        assert (await api.post("/login", login)).status == 403

    missing = COVERED - api.covered
    assert not missing, f"not reached: {sorted(missing)}"
