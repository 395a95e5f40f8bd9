"""Email addresses on accounts over HTTP: requestToken's refusals and send_attempt,
the submit link's errors, /account/3pid add/list/delete/bind/unbind, registration that
proves an address, and what a server without email answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import ServerFactory, free_port
from tests.helpers import Api, Reply, User
from tests.integration.email_support import Mailbox, ShiftedClock, email_server, smtp_mailbox
from tests.integration.test_email_password_reset import add_email, follow_link

REQUEST_PATHS = (
    "/register/email/requestToken",
    "/account/password/email/requestToken",
    "/account/3pid/email/requestToken",
)


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    async with smtp_mailbox() as box:
        yield box


def ask(api: Api, path: str, email: str, secret: str = "secret", attempt: int = 1) -> Any:
    return api.post(path, {"client_secret": secret, "email": email, "send_attempt": attempt})


def password_auth(user: User, session: str | None = None) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password,
    }
    if session is not None:
        auth["session"] = session
    return auth


def refused(reply: Reply, status: int, errcode: str) -> None:
    assert (reply.status, reply.errcode) == (status, errcode), reply.body


async def test_without_email_the_endpoints_say_so(make_server: ServerFactory) -> None:
    server = await make_server()
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        for path in REQUEST_PATHS:
            refused(await ask(api, path, "a@example.test"), 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
        caps = (await api.get("/capabilities", token=alice.access_token)).body["capabilities"]
        assert caps["m.3pid_changes"] == {"enabled": False}
        add = await api.post(
            "/account/3pid/add", {"sid": "x", "client_secret": "y"}, token=alice.access_token
        )
        refused(add, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
        # Without email a password change still needs an access token.
        refused(await api.post("/account/password", {"new_password": "p"}), 401, "M_MISSING_TOKEN")
        listed = await api.get("/account/3pid", token=alice.access_token)
        assert listed.status == 200 and listed.body == {"threepids": []}


async def test_request_token_refusals(make_server: ServerFactory, mailbox: Mailbox) -> None:
    server = await email_server(make_server, mailbox)
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        caps = (await api.get("/capabilities", token=alice.access_token)).body["capabilities"]
        assert caps["m.3pid_changes"] == {"enabled": True}
        path = "/register/email/requestToken"
        refused(await ask(api, path, "not an address"), 400, "M_INVALID_PARAM")
        refused(
            await ask(api, path, "a@example.test", secret="bad secret!"), 400, "M_INVALID_PARAM"
        )
        refused(await ask(api, path, "a@example.test", secret=""), 400, "M_INVALID_PARAM")
        missing = await api.post(path, {"client_secret": "s", "email": "a@example.test"})
        refused(missing, 400, "M_MISSING_PARAM")
        wrong_type = await api.post(
            path, {"client_secret": "s", "email": "a@example.test", "send_attempt": "1"}
        )
        refused(wrong_type, 400, "M_INVALID_PARAM")
        for msisdn in ("/register/msisdn/requestToken", "/account/3pid/msisdn/requestToken"):
            body = {"client_secret": "s", "country": "GB", "phone_number": "1", "send_attempt": 1}
            refused(await api.post(msisdn, body), 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
        assert mailbox.received == []

        await add_email(api, mailbox, alice, "alice@example.test")
        for in_use in ("/register/email/requestToken", "/account/3pid/email/requestToken"):
            refused(await ask(api, in_use, "ALICE@example.test"), 400, "M_THREEPID_IN_USE")
        assert mailbox.received == []


async def test_send_attempt_and_the_submit_link(
    make_server: ServerFactory, mailbox: Mailbox
) -> None:
    server = await email_server(make_server, mailbox)
    address = "new@example.test"
    path = "/register/email/requestToken"
    async with Api(server.client_url) as api:
        first = await ask(api, path, address, attempt=1)
        assert first.status == 200
        sid = first.body["sid"]
        old = mailbox.take(address)
        # A retry with the same send_attempt: the same session, no second mail.
        retry = await ask(api, path, address, attempt=1)
        assert retry.status == 200 and retry.body["sid"] == sid
        assert mailbox.received == []
        # A higher send_attempt mails again, with a new token; the old one is dead.
        again = await ask(api, path, address, attempt=2)
        assert again.body["sid"] == sid
        new = mailbox.take(address)
        assert new.link_params()["token"] != old.link_params()["token"]
        # Another client_secret is another session.
        other = await ask(api, path, address, secret="other")
        assert other.body["sid"] != sid
        mailbox.take(address)

        submit = "/_synapse/client/email/submit_token"
        creds = {"sid": sid, "client_secret": "secret"}
        stale = await api.post(submit, {**creds, "token": old.link_params()["token"]})
        refused(stale, 400, "M_TOKEN_INCORRECT")
        bad_secret = await api.post(
            submit, {**creds, "client_secret": "guess", "token": new.link_params()["token"]}
        )
        refused(bad_secret, 400, "M_INVALID_PARAM")
        unknown = await api.post(submit, {**creds, "sid": "nope", "token": "t"})
        refused(unknown, 400, "M_INVALID_PARAM")
        refused(await api.post(submit, creds), 400, "M_BAD_JSON")
        # In a browser the link answers a page, not JSON.
        status, page = await follow_link(old.link())
        assert status == 400 and "incorrect" in page

        # A token past its lifetime is refused even when right.
        server.hs.threepids.clock = ShiftedClock(2 * 60 * 60 * 1000)
        expired = await api.post(submit, {**creds, "token": new.link_params()["token"]})
        refused(expired, 400, "M_SESSION_EXPIRED")


async def test_add_list_delete(make_server: ServerFactory, mailbox: Mailbox) -> None:
    server = await email_server(make_server, mailbox)
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        a, b = alice.access_token, bob.access_token
        shared = "shared@example.test"
        # Bob validates the address first but Alice adds it first.
        asked = await ask(api, "/account/3pid/email/requestToken", shared, secret="bob")
        bob_sid = asked.body["sid"]
        await follow_link(mailbox.take(shared).link())
        unvalidated = await ask(api, "/account/3pid/email/requestToken", "x@example.test")
        mailbox.take("x@example.test")
        await add_email(api, mailbox, alice, shared)

        body = {"sid": bob_sid, "client_secret": "bob", "auth": password_auth(bob)}
        refused(await api.post("/account/3pid/add", body, token=b), 400, "M_THREEPID_IN_USE")
        body = {"sid": unvalidated.body["sid"], "client_secret": "secret"}
        refused(
            await api.post("/account/3pid/add", {**body, "auth": password_auth(bob)}, token=b),
            400,
            "M_THREEPID_AUTH_FAILED",
        )
        wrong_password = {**password_auth(bob), "password": "wrong"}
        bad = await api.post("/account/3pid/add", {**body, "auth": wrong_password}, token=b)
        assert bad.status == 401 and bad.errcode == "M_FORBIDDEN"
        assert (await api.get("/account/3pid", token=b)).body == {"threepids": []}

        # Not a server name: refused before anything is sent. Nothing was bound through
        # this server: unbind and delete report no-support (identity servers that do
        # answer: test_identity_bindings.py).
        bind = {"client_secret": "s", "sid": "x", "id_server": "id example", "id_access_token": "t"}
        refused(await api.post("/account/3pid/bind", bind, token=a), 400, "M_INVALID_PARAM")
        no_server = {k: v for k, v in bind.items() if k != "id_server"}
        refused(await api.post("/account/3pid/bind", no_server, token=a), 400, "M_MISSING_PARAM")
        legacy = {"three_pid_creds": bind}
        refused(await api.post("/account/3pid", legacy, token=a), 403, "M_THREEPID_AUTH_FAILED")
        unbind = await api.post(
            "/account/3pid/unbind", {"medium": "email", "address": shared}, token=a
        )
        assert unbind.status == 200 and unbind.body == {"id_server_unbind_result": "no-support"}
        assert len((await api.get("/account/3pid", token=a)).body["threepids"]) == 1

        bad_medium = await api.post(
            "/account/3pid/delete", {"medium": "fax", "address": shared}, token=a
        )
        refused(bad_medium, 400, "M_INVALID_PARAM")
        not_hers = await api.post(
            "/account/3pid/delete", {"medium": "email", "address": "x@example.test"}, token=a
        )
        refused(not_hers, 400, "M_THREEPID_NOT_FOUND")
        deleted = await api.post(
            "/account/3pid/delete", {"medium": "email", "address": shared}, token=a
        )
        assert deleted.status == 200 and deleted.body == {"id_server_unbind_result": "no-support"}
        assert (await api.get("/account/3pid", token=a)).body == {"threepids": []}
        refused(await api.get("/account/3pid"), 401, "M_MISSING_TOKEN")

        # Free again: Bob's validated session now adds it to his account.
        body = {"sid": bob_sid, "client_secret": "bob", "auth": password_auth(bob)}
        assert (await api.post("/account/3pid/add", body, token=b)).status == 200
        [entry] = (await api.get("/account/3pid", token=b)).body["threepids"]
        assert entry["address"] == shared


async def test_registration_with_a_required_email(
    make_server: ServerFactory, mailbox: Mailbox
) -> None:
    server = await email_server(make_server, mailbox, registration={"require_email": True})
    address = "carol@example.test"
    async with Api(server.client_url) as api:
        start = await api.post("/register", {"username": "carol", "password": "pw pw pw"})
        assert start.status == 401
        assert start.body["flows"] == [{"stages": ["m.login.email.identity"]}]
        session = start.body["session"]
        dummy = await api.post("/register", {"auth": {"type": "m.login.dummy", "session": session}})
        assert dummy.status == 401 and dummy.body["errcode"] == "M_UNRECOGNIZED"

        asked = await ask(api, "/register/email/requestToken", address, secret="reg")
        mail = mailbox.take(address)
        assert mail.message["Subject"] == "Validate your email for Myelin Test"
        auth = {
            "type": "m.login.email.identity",
            "threepid_creds": {"sid": asked.body["sid"], "client_secret": "reg"},
            "session": session,
        }
        early = await api.post("/register", {"auth": auth})
        assert early.status == 401 and early.body["errcode"] == "M_FORBIDDEN"
        await follow_link(mail.link())
        done = await api.post("/register", {"auth": auth})
        assert done.status == 200, done.body
        assert done.body["user_id"] == "@carol:localhost"
        [entry] = (await api.get("/account/3pid", token=done.body["access_token"])).body[
            "threepids"
        ]
        assert entry["address"] == address
        # The same session retried answers the same account (registration is idempotent).
        retry = await api.post("/register", {"auth": auth})
        assert retry.status == 200 and retry.body["user_id"] == "@carol:localhost"

        # The address is taken now; deactivation frees it.
        refused(await ask(api, "/register/email/requestToken", address), 400, "M_THREEPID_IN_USE")
        carol = User(done.body["user_id"], done.body["access_token"], "", "pw pw pw")
        deact = await api.post(
            "/account/deactivate", {"auth": password_auth(carol)}, token=carol.access_token
        )
        assert deact.status == 200, deact.body
        assert (await ask(api, "/register/email/requestToken", address, "new")).status == 200


async def test_optional_email_at_registration(make_server: ServerFactory, mailbox: Mailbox) -> None:
    server = await email_server(make_server, mailbox)
    async with Api(server.client_url) as api:
        start = await api.post("/register", {"username": "dave", "password": "pw pw pw"})
        assert start.body["flows"] == [
            {"stages": ["m.login.dummy"]},
            {"stages": ["m.login.email.identity"]},
        ]
        plain = await api.register("erin")
        assert (await api.get("/account/3pid", token=plain.access_token)).body["threepids"] == []


async def test_request_token_is_rate_limited(make_server: ServerFactory, mailbox: Mailbox) -> None:
    limits = {"enabled": True, "threepid_validation": {"per_second": 0.001, "burst_count": 2}}
    server = await email_server(make_server, mailbox, rate_limits=limits)
    async with Api(server.client_url) as api:
        path = "/register/email/requestToken"
        assert (await ask(api, path, "a@example.test", attempt=1)).status == 200
        assert (await ask(api, path, "b@example.test", attempt=1)).status == 200
        limited = await ask(api, path, "c@example.test", attempt=1)
        refused(limited, 429, "M_LIMIT_EXCEEDED")
        assert limited.body["retry_after_ms"] > 0
        assert len(mailbox.received) == 2


async def test_a_mail_that_could_not_be_sent(make_server: ServerFactory, mailbox: Mailbox) -> None:
    """SMTP down: 500 M_UNKNOWN, and a retry with the same send_attempt really sends."""
    server = await email_server(make_server, mailbox, email={"smtp_port": free_port()})
    address = "late@example.test"
    async with Api(server.client_url) as api:
        for attempt in (1, 2):
            down = await ask(api, "/register/email/requestToken", address, attempt=attempt)
            refused(down, 500, "M_UNKNOWN")
        server.hs.config.email.smtp_port = mailbox.port  # the SMTP server is back
        first = await ask(api, "/register/email/requestToken", address, attempt=1)
        assert first.status == 200
        mailbox.take(address)
        # Down again for attempt 2: the session stays at attempt 1 and 2 is tried anew.
        server.hs.config.email.smtp_port = free_port()
        refused(
            await ask(api, "/register/email/requestToken", address, attempt=2), 500, "M_UNKNOWN"
        )
        server.hs.config.email.smtp_port = mailbox.port
        again = await ask(api, "/register/email/requestToken", address, attempt=2)
        assert again.status == 200 and again.body["sid"] == first.body["sid"]
        mailbox.take(address)
