"""Email pushers over real HTTP and a real SMTP server (aiosmtpd on loopback): who may
register one, the digest of unread notifications it mails after the delay, what an
encrypted event shows (only that it exists), and what a read receipt spares."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.email_support import CapturedMail, Mailbox, email_server, smtp_mailbox
from tests.integration.test_email_password_reset import add_email
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text

ADDRESS = "alice@example.test"
DELAY_MS = 1500
CIPHERTEXT = "AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg"


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    async with smtp_mailbox() as box:
        yield box


def email_pusher(pushkey: str = ADDRESS, app_id: str = "m.email") -> dict[str, Any]:
    return {
        "kind": "email",
        "app_id": app_id,
        "pushkey": pushkey,
        "app_display_name": "Email",
        "device_display_name": pushkey,
        "lang": "en",
        "data": {},
    }


async def next_mail(mailbox: Mailbox, address: str) -> CapturedMail:
    for _ in range(600):
        mails = [m for m in mailbox.received if address in m.rcpt_tos]
        if mails:
            return mailbox.take(address)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no mail for {address}")


async def test_email_pushers_need_email_and_a_validated_address(
    make_server: ServerFactory, mailbox: Mailbox
) -> None:
    plain = await make_server()
    async with Api(plain.client_url) as api:
        alice = await api.register("alice")
        r = await api.post("/pushers/set", email_pusher(), token=alice.access_token)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")

    server = await email_server(make_server, mailbox)
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        r = await api.post("/pushers/set", email_pusher(), token=alice.access_token)
        assert (r.status, r.errcode) == (400, "M_THREEPID_NOT_FOUND")
        await add_email(api, mailbox, alice, ADDRESS)
        r = await api.post("/pushers/set", email_pusher(app_id="x"), token=alice.access_token)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
        r = await api.post("/pushers/set", email_pusher(), token=alice.access_token)
        assert r.status == 200, r.body
        [pusher] = (await api.get("/pushers", token=alice.access_token)).body["pushers"]
        assert (pusher["kind"], pusher["pushkey"]) == ("email", ADDRESS)


async def _room_with_email_pusher(api: Api, mailbox: Mailbox) -> tuple[User, User, str]:
    alice = await api.register("alice")
    bob = await api.register("bob")
    await add_email(api, mailbox, alice, ADDRESS)
    assert (await api.post("/pushers/set", email_pusher(), token=alice.access_token)).status == 200
    room_id = await create_room(api, bob, preset="public_chat", name="Otters")
    assert (await api.post(f"/join/{room_id}", {}, token=alice.access_token)).status == 200
    return alice, bob, room_id


async def test_unread_messages_are_mailed_as_one_digest(
    make_server: ServerFactory, mailbox: Mailbox
) -> None:
    server = await email_server(make_server, mailbox, email={"notif_delay_ms": DELAY_MS})
    async with Api(server.client_url) as api:
        _alice, bob, room_id = await _room_with_email_pusher(api, mailbox)
        await send_text(api, bob, room_id, "hello alice", "m1")
        r = await api.put(
            f"/rooms/{room_id}/send/m.room.encrypted/m2",
            {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": CIPHERTEXT,
                "sender_key": "k",
                "session_id": "s",
                "device_id": "D",
            },
            token=bob.access_token,
        )
        assert r.status == 200
        mail = await next_mail(mailbox, ADDRESS)
        assert "2 unread messages in Otters" in str(mail.message["Subject"])
        assert "hello alice" in mail.text and "(an encrypted message)" in mail.text
        assert CIPHERTEXT not in mail.text
        assert "bob" in mail.text


async def test_what_the_user_read_meanwhile_is_not_mailed(
    make_server: ServerFactory, mailbox: Mailbox
) -> None:
    server = await email_server(make_server, mailbox, email={"notif_delay_ms": DELAY_MS})
    async with Api(server.client_url) as api:
        alice, bob, room_id = await _room_with_email_pusher(api, mailbox)
        seen = await send_text(api, bob, room_id, "already seen", "r1")
        r = await api.post(f"/rooms/{room_id}/receipt/m.read/{seen}", {}, token=alice.access_token)
        assert r.status == 200
        await send_text(api, bob, room_id, "still unread", "r2")
        mail = await next_mail(mailbox, ADDRESS)
        assert "still unread" in mail.text and "already seen" not in mail.text
        assert "1 unread message in Otters" in str(mail.message["Subject"])
