"""A password reset by email, end to end over HTTP, with the mail read from a real SMTP
server: add an address to an account (requestToken, the link in the mail, 3pid/add),
then forget the password, ask for a reset, follow the link, set a new password, log in
with it; the old password and the old devices no longer work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.email_support import Mailbox, email_server, smtp_mailbox

ADDRESS = "alice@example.test"


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    async with smtp_mailbox() as box:
        yield box


async def follow_link(link: str) -> tuple[int, str]:
    """Open the link from the mail the way a browser would."""
    async with aiohttp.ClientSession() as browser, browser.get(link) as resp:
        return resp.status, await resp.text()


async def add_email(api: Api, mailbox: Mailbox, user: User, address: str) -> None:
    """The spec's flow for adding an address: requestToken, validate, 3pid/add with UIA."""
    asked = await api.post(
        "/account/3pid/email/requestToken",
        {"client_secret": "add-secret", "email": address, "send_attempt": 1},
    )
    assert asked.status == 200, asked.body
    mail = mailbox.take(address)
    params = mail.link_params()
    assert params["sid"] == asked.body["sid"]
    status, page = await follow_link(mail.link())
    assert status == 200 and "validated" in page
    body: dict[str, Any] = {"sid": asked.body["sid"], "client_secret": "add-secret"}
    first = await api.post("/account/3pid/add", body, token=user.access_token)
    assert first.status == 401 and first.body["flows"] == [{"stages": ["m.login.password"]}]
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password,
        "session": first.body["session"],
    }
    added = await api.post("/account/3pid/add", {**body, "auth": auth}, token=user.access_token)
    assert added.status == 200, added.body


async def test_password_reset_by_email(make_server: ServerFactory, mailbox: Mailbox) -> None:
    server = await email_server(make_server, mailbox)
    async with Api(server.client_url) as api:
        alice = await api.register("alice", "old password 1")
        await add_email(api, mailbox, alice, ADDRESS)
        listed = await api.get("/account/3pid", token=alice.access_token)
        assert listed.status == 200
        [threepid] = listed.body["threepids"]
        assert threepid["medium"] == "email" and threepid["address"] == ADDRESS
        assert threepid["validated_at"] <= threepid["added_at"]

        # Alice forgets her password: the reset is asked for without any access token.
        asked = await api.post(
            "/account/password/email/requestToken",
            {"client_secret": "reset-secret", "email": "Alice@Example.test", "send_attempt": 1},
        )
        assert asked.status == 200, asked.body
        sid = asked.body["sid"]
        mail = mailbox.take(ADDRESS)
        assert mail.message["Subject"] == "Reset your Myelin Test password"
        assert mail.message["From"] == "Myelin Test <matrix@localhost>"
        token = mail.link_params()["token"]
        assert token in mail.text  # also given as a code to type into a client

        # Before the link is followed the email stage fails.
        creds = {"sid": sid, "client_secret": "reset-secret"}
        start = await api.post("/account/password", {"new_password": "new password 2"})
        assert start.status == 401
        assert start.body["flows"] == [{"stages": ["m.login.email.identity"]}]
        auth = {
            "type": "m.login.email.identity",
            "threepid_creds": creds,
            "session": start.body["session"],
        }
        early = await api.post("/account/password", {"new_password": "x", "auth": auth})
        assert early.status == 401 and early.body["errcode"] == "M_FORBIDDEN"

        # The client posts the token to submit_url (the identity service's shape).
        assert asked.body["submit_url"].startswith(server.client_url)
        submit_path = asked.body["submit_url"][len(server.client_url) :]
        wrong = await api.post(submit_path, {**creds, "token": token + "x"})
        assert wrong.status == 400 and wrong.body["errcode"] == "M_TOKEN_INCORRECT"
        ok = await api.post(submit_path, {**creds, "token": token})
        assert ok.status == 200 and ok.body == {"success": True}

        reset = await api.post(
            "/account/password", {"new_password": "new password 2", "auth": auth}
        )
        assert reset.status == 200, reset.body

        # The new password works, the old one is refused, the old device is logged out.
        assert (await api.login("alice", "new password 2")).status == 200
        old = await api.login("alice", "old password 1")
        assert old.status == 403 and old.body["errcode"] == "M_FORBIDDEN"
        assert (await api.get("/account/whoami", token=alice.access_token)).status == 401

        # Logging in by the address (m.id.thirdparty), in any case.
        by_mail = await api.post(
            "/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": ADDRESS},
                "password": "new password 2",
            },
        )
        assert by_mail.status == 200 and by_mail.body["user_id"] == alice.user_id
        unknown = await api.post(
            "/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "x@y.z"},
                "password": "new password 2",
            },
        )
        assert unknown.status == 403 and unknown.body["errcode"] == "M_FORBIDDEN"

        # The validated session was used up: it cannot reset the password again.
        again = await api.post(
            "/account/password",
            {
                "new_password": "stolen",
                "auth": {"type": "m.login.email.identity", "threepid_creds": creds},
            },
        )
        assert again.status == 401 and again.body["errcode"] == "M_FORBIDDEN"
        assert (await api.login("alice", "new password 2")).status == 200


async def test_reset_keeps_devices_when_asked_and_refuses_unknown_addresses(
    make_server: ServerFactory, mailbox: Mailbox
) -> None:
    server = await email_server(make_server, mailbox)
    async with Api(server.client_url) as api:
        alice = await api.register("alice", "old password 1")
        await add_email(api, mailbox, alice, ADDRESS)
        unknown = await api.post(
            "/account/password/email/requestToken",
            {"client_secret": "s", "email": "nobody@example.test", "send_attempt": 1},
        )
        assert unknown.status == 400 and unknown.body["errcode"] == "M_THREEPID_NOT_FOUND"
        assert mailbox.received == []

        asked = await api.post(
            "/account/password/email/requestToken",
            {"client_secret": "s", "email": ADDRESS, "send_attempt": 1},
        )
        status, _ = await follow_link(mailbox.take(ADDRESS).link())
        assert status == 200
        auth = {
            "type": "m.login.email.identity",
            "threepid_creds": {"sid": asked.body["sid"], "client_secret": "s"},
        }
        reset = await api.post(
            "/account/password",
            {"new_password": "new password 2", "logout_devices": False, "auth": auth},
        )
        assert reset.status == 200, reset.body
        assert (await api.get("/account/whoami", token=alice.access_token)).status == 200
        assert (await api.login("alice", "new password 2")).status == 200
