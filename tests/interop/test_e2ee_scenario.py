"""End-to-end encryption with a real client library (matrix-nio + vodozemac) across servers.

The scenario: alice (server A) creates an encrypted room and invites bob (server B); bob
decrypts alice's message, alice decrypts bob's reply; carol (server C) joins and decrypts the
next message; carol leaves and the next message uses a new Megolm session whose key carol never
got. It runs on three Myelin servers, and with bob on Synapse. Afterwards no plaintext may be in
any Myelin database file (SQLite with -wal/-shm, or a pg_dump) or in Myelin's log; a marker sent
in an unencrypted room shows that the search does find plaintext when it is there.

Also: a device that is offline while room keys are sent to it, with its server restarted in
between, gets them when it comes back; SAS verification between devices on two servers; and
concurrent /keys/claim from two servers never hands out a one-time key twice.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import nio
import pytest
from nio.exceptions import EncryptionError

from homeserver.app import RunningServer
from tests.conftest import RestartFn, ServerFactory
from tests.federation.fedutil import FAST_RETRY
from tests.helpers import Api
from tests.integration.e2ee_device import Device
from tests.interop.conftest import SynapseFactory
from tests.interop.e2ee_people import (
    Person,
    create_encrypted_room,
    invite_and_join,
    login,
    register,
    until_all,
)

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Site:
    """Where a person registers: a client URL and the server name users get."""

    base_url: str
    server_name: str


def myelin_site(server: RunningServer) -> Site:
    return Site(server.client_url, server.hs.config.server_name)


async def myelin(make_server: ServerFactory) -> RunningServer:
    return await make_server(federated=True, **FAST_RETRY)


def secret(label: str) -> str:
    """A plaintext no server could produce by chance."""
    return f"{label}-{secrets.token_hex(12)}"


# --- the log and database search ------------------------------------------------------------


LOGGERS = ("myelin", "aiohttp", "aiosqlite", "asyncpg", "asyncio")


@pytest.fixture
def myelin_log(tmp_path: Path) -> Iterator[Path]:
    """Everything the Myelin servers log during the test, at DEBUG, in one file: Myelin's own
    loggers and the libraries it runs on (aiosqlite logs the statements it runs with their
    parameters at DEBUG: on SQLite the reads, and writes outside a write transaction)."""
    path = tmp_path / "myelin.log"
    handler = logging.FileHandler(path, encoding="utf8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield path
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)
    handler.close()


@functools.cache
def pg_dump_binary() -> str:
    """pg_dump from the PostgreSQL the tests run on (scripts/pg-throwaway's bindir: a pg_dump
    older than the server refuses to dump it), else the one on PATH."""
    found = subprocess.run(
        [str(ROOT / "scripts" / "pg-throwaway"), "bindir"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    candidate = Path(found.stdout.strip()) / "pg_dump"
    if found.returncode == 0 and candidate.is_file():
        return str(candidate)
    on_path = shutil.which("pg_dump")
    assert on_path, "no pg_dump: neither scripts/pg-throwaway bindir nor PATH has one"
    return on_path


def database_bytes(server: RunningServer) -> dict[str, bytes]:
    """Every byte of the server's database: its SQLite files, or a plain pg_dump."""
    url = server.hs.config.database_url
    if url.startswith("sqlite"):
        db = Path(urlsplit(url).path)
        return {
            str(p): p.read_bytes()
            for p in sorted(db.parent.iterdir())
            if p.name.startswith(db.name) and p.is_file()
        }
    dump = subprocess.run(
        [pg_dump_binary(), "--no-owner", "--dbname", url],
        check=True,
        capture_output=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
    ).stdout
    return {f"pg_dump of {url}": dump}


def where_found(
    plaintexts: list[str], servers: list[RunningServer], log: Path
) -> dict[str, list[str]]:
    """For each plaintext found anywhere: the files (or dumps) holding it."""
    haystacks: dict[str, bytes] = {}
    for server in servers:
        haystacks.update(database_bytes(server))
    haystacks[str(log)] = log.read_bytes()
    found: dict[str, list[str]] = {}
    for text in plaintexts:
        needles = (text.encode(), text.encode("utf-16-le"))
        hits = [name for name, data in haystacks.items() if any(n in data for n in needles)]
        if hits:
            found[text] = hits
    return found


# --- scenario 1 and 2 ------------------------------------------------------------------------


async def run_scenario(alice: Person, bob: Person, carol: Person) -> list[str]:
    """The conversation; returns every plaintext sent."""
    sent: list[str] = []
    room_id = await create_encrypted_room(alice)
    await invite_and_join(alice, bob, room_id)
    assert bob.client.rooms[room_id].encrypted

    # bob decrypts alice's message
    first = secret("alice-first")
    sent.append(first)
    await alice.send(room_id, first)
    got = await bob.wait_body(room_id, first)
    assert got.sender == alice.user_id
    session_ab = got.session_id
    assert session_ab == alice.outbound_session_id(room_id)

    # alice decrypts bob's reply
    reply = secret("bob-reply")
    sent.append(reply)
    await bob.send(room_id, reply)
    got = await alice.wait_body(room_id, reply)
    assert got.sender == bob.user_id
    assert got.session_id == bob.outbound_session_id(room_id)

    # carol joins and decrypts the next message (a new session: the membership changed)
    await invite_and_join(alice, carol, room_id)
    await bob.until(lambda: bob.has_member(room_id, carol.user_id), "carol's join")
    with_carol = secret("alice-with-carol")
    sent.append(with_carol)
    with_carol_id = await alice.send(room_id, with_carol)
    session_abc = alice.outbound_session_id(room_id)
    assert session_abc != session_ab
    got = await carol.wait_body(room_id, with_carol)
    assert got.session_id == session_abc
    assert (await bob.wait_body(room_id, with_carol)).session_id == session_abc

    # carol leaves; the next message uses a new session that carol cannot decrypt
    left = await carol.client.room_leave(room_id)
    assert isinstance(left, nio.RoomLeaveResponse), left
    await alice.until(lambda: alice.has_member(room_id, carol.user_id, "leave"), "carol's leave")
    after = secret("alice-after-carol")
    sent.append(after)
    after_id = await alice.send(room_id, after)
    session_ab2 = alice.outbound_session_id(room_id)
    assert session_ab2 not in (session_ab, session_abc)
    got = await bob.wait_body(room_id, after)
    assert got.session_id == session_ab2

    # carol, handed the ciphertext of both messages, can decrypt the one from while she was
    # in the room and not the one after: she never received that session's room key.
    for _ in range(3):
        await carol.step()
    before_leave = await encrypted_copy(bob, room_id, with_carol_id)
    after_leave = await encrypted_copy(bob, room_id, after_id)
    assert after_leave.session_id == session_ab2
    decrypted = carol.client.decrypt_event(before_leave)
    assert isinstance(decrypted, nio.RoomMessageText) and decrypted.body == with_carol
    with pytest.raises(EncryptionError):
        carol.client.decrypt_event(after_leave)
    assert carol.client.olm is not None
    assert (
        carol.client.olm.inbound_group_store.get(room_id, after_leave.sender_key, session_ab2)
        is None
    )
    assert after not in carol.bodies(room_id)
    return sent


async def encrypted_copy(reader: Person, room_id: str, event_id: str) -> nio.MegolmEvent:
    """The event as the server holds it (ciphertext), fetched with /rooms/{id}/event
    without nio (whose room_get_event would decrypt it)."""
    async with Api(reader.client.homeserver) as api:
        r = await api.get(
            f"/rooms/{quote(room_id)}/event/{quote(event_id)}", token=reader.client.access_token
        )
    assert r.status == 200, r.body
    assert r.body["type"] == "m.room.encrypted", r.body
    event = nio.MegolmEvent.from_dict(r.body)
    assert isinstance(event, nio.MegolmEvent), event
    event.room_id = room_id
    return event


async def marker_in_plain_room(alice: Person, bob: Person) -> str:
    """A message in an unencrypted room shared across servers: the search must find it."""
    room_id = await create_encrypted_room(alice, encrypted=False)
    await invite_and_join(alice, bob, room_id)
    marker = secret("plain-marker")
    reply = await alice.client.room_send(
        room_id, "m.room.message", {"msgtype": "m.text", "body": marker}
    )
    assert isinstance(reply, nio.RoomSendResponse), reply
    await bob.until(
        lambda: any(
            isinstance(e, nio.RoomMessageText) and e.body == marker
            for e in bob.timeline.get(room_id, [])
        ),
        "the unencrypted marker",
    )
    return marker


def check_no_plaintext(
    sent: list[str], marker: str, servers: list[RunningServer], log: Path
) -> None:
    # A line the capture must hold: shows the log is searched (on SQLite a write
    # transaction's statements run on the loop's thread, outside aiosqlite's DEBUG lines,
    # so the marker itself need not pass through the log).
    canary = secret("log-canary")
    logging.getLogger("myelin").debug("log search canary %s", canary)
    found = where_found([*sent, marker, canary], servers, log)
    assert found.get(canary) == [str(log)], "the search does not read the captured log"
    assert marker in found, "the search does not find plaintext that is there"
    # Both servers in the plain room hold the marker in their databases.
    holders = [hit for hit in found[marker] if hit != str(log)]
    assert len({hit.split("homeserver.db")[0] for hit in holders}) == 2, found[marker]
    leaked = {text: hits for text, hits in found.items() if text not in (marker, canary)}
    assert leaked == {}, f"plaintext of encrypted messages found in {leaked}"


async def close_all(*people: Person) -> None:
    for person in people:
        await person.close()


# Also with alice's server as three processes (tests/spread.py, PostgreSQL only); bob's
# and carol's servers are single-process peers.
@pytest.mark.spread
async def test_three_myelin_servers(
    make_server: ServerFactory, tmp_path: Path, myelin_log: Path
) -> None:
    a, b, c = await myelin(make_server), await myelin(make_server), await myelin(make_server)
    store = tmp_path / "stores"
    alice = await register(a.client_url, a.hs.config.server_name, "alice", store)
    bob = await register(b.client_url, b.hs.config.server_name, "bob", store)
    carol = await register(c.client_url, c.hs.config.server_name, "carol", store)
    try:
        sent = await run_scenario(alice, bob, carol)
        marker = await marker_in_plain_room(alice, bob)
        check_no_plaintext(sent, marker, [a, b, c], myelin_log)
    finally:
        await close_all(alice, bob, carol)


# Also with alice's server as three processes (PostgreSQL only): Synapse federates with a
# homeserver whose requests land on any of three processes (the join, the messages both
# ways, the room keys sent to-device) while the federation listener and the outbox's
# sender are the main process's.
@pytest.mark.spread
async def test_bob_on_synapse(
    make_server: ServerFactory,
    make_synapse: SynapseFactory,
    tmp_path: Path,
    myelin_log: Path,
) -> None:
    a, c = await myelin(make_server), await myelin(make_server)
    synapse = make_synapse()
    store = tmp_path / "stores"
    alice = await register(a.client_url, a.hs.config.server_name, "alice", store)
    bob = await register(synapse.client_url, synapse.server_name, "bob", store)
    carol = await register(c.client_url, c.hs.config.server_name, "carol", store)
    try:
        sent = await run_scenario(alice, bob, carol)
        marker = await marker_in_plain_room(alice, carol)
        check_no_plaintext(sent, marker, [a, c], myelin_log)
    finally:
        await close_all(alice, bob, carol)


# --- 4: a device offline while its room keys are sent, its server restarted in between ----


async def test_offline_device_gets_room_keys_after_restart(
    make_server: ServerFactory, restart_server: RestartFn, tmp_path: Path
) -> None:
    a, b = await myelin(make_server), await myelin(make_server)
    store = tmp_path / "stores"
    alice = await register(a.client_url, a.hs.config.server_name, "alice", store)
    bob = await register(b.client_url, b.hs.config.server_name, "bob", store)
    bob2 = await login(b.client_url, bob.user_id, "bob-laptop", store)
    try:
        room_id = await create_encrypted_room(alice)
        await invite_and_join(alice, bob, room_id)
        for _ in range(2):
            await bob2.step()  # bob2 sees the join; then it goes offline (stops syncing)
        assert room_id in bob2.client.rooms

        history: list[str] = []
        for i in range(3):
            body = secret(f"while-offline-{i}")
            history.append(body)
            await alice.send(room_id, body)
        assert alice.client.olm is not None
        devices = alice.client.olm.device_store[bob.user_id]
        assert {bob.device_id, bob2.device_id} <= set(devices.keys())
        await bob.wait_body(room_id, history[-1])

        b = await restart_server(b)

        # a new session after the restart: its key goes to B's new process
        alice.client.invalidate_outbound_session(room_id)
        for i in range(2):
            body = secret(f"after-restart-{i}")
            history.append(body)
            await alice.send(room_id, body)

        bob2.client.homeserver = b.client_url
        await bob2.until(
            lambda: all(body in bob2.bodies(room_id) for body in history),
            "the whole history decrypted",
        )
        assert bob2.bodies(room_id) == history
        keys = [e for e in bob2.to_device if isinstance(e, nio.RoomKeyEvent)]
        assert len({k.session_id for k in keys}) == 2
    finally:
        await close_all(alice, bob, bob2)


# --- 5: SAS verification between devices on two servers ------------------------------------


async def test_sas_verification_across_servers(make_server: ServerFactory, tmp_path: Path) -> None:
    a, b = await myelin(make_server), await myelin(make_server)
    store = tmp_path / "stores"
    alice = await register(a.client_url, a.hs.config.server_name, "alice", store)
    bob = await register(b.client_url, b.hs.config.server_name, "bob", store)
    try:
        room_id = await create_encrypted_room(alice)
        await invite_and_join(alice, bob, room_id)
        for person, other in ((alice, bob), (bob, alice)):
            olm = person.client.olm
            assert olm is not None
            await person.until(
                lambda p=person, o=other: o.device_id in p.client.device_store[o.user_id],
                f"{other.label}'s device keys",
            )
        assert alice.client.olm is not None and bob.client.olm is not None
        bob_device = alice.client.device_store[bob.user_id][bob.device_id]
        alice_device = bob.client.device_store[alice.user_id][alice.device_id]
        assert not bob_device.verified and not alice_device.verified

        started = await alice.client.start_key_verification(bob_device)
        assert isinstance(started, nio.ToDeviceResponse), started
        (tx,) = list(alice.client.key_verifications)
        await bob.until(lambda: tx in bob.client.key_verifications, "the verification start")
        accepted = await bob.client.accept_key_verification(tx)
        assert isinstance(accepted, nio.ToDeviceResponse), accepted
        # alice gets the accept and sends her key; bob gets it and sends his
        alice_sas = alice.client.key_verifications[tx]
        bob_sas = bob.client.key_verifications[tx]
        await until_all(
            [alice, bob],
            lambda: has_their_key(alice_sas) and has_their_key(bob_sas),
            "each other's SAS keys",
        )
        assert alice_sas.get_emoji() == bob_sas.get_emoji()
        assert alice_sas.get_decimals() == bob_sas.get_decimals()

        for person in (alice, bob):
            confirmed = await person.client.confirm_short_auth_string(tx)
            assert isinstance(confirmed, nio.ToDeviceResponse), confirmed
        await until_all(
            [alice, bob], lambda: alice_sas.verified and bob_sas.verified, "each other's MACs"
        )
        assert alice.client.device_store[bob.user_id][bob.device_id].verified
        assert bob.client.device_store[alice.user_id][alice.device_id].verified
        assert not alice_sas.canceled and not bob_sas.canceled
        verification_types = {type(e).__name__ for e in alice.to_device + bob.to_device} & {
            "KeyVerificationStart",
            "KeyVerificationAccept",
            "KeyVerificationKey",
            "KeyVerificationMac",
        }
        assert len(verification_types) == 4
    finally:
        await close_all(alice, bob)


def has_their_key(sas: Any) -> bool:
    """The other side's SAS public key has arrived (nio keeps it as ``their_sas_key``)."""
    return getattr(sas, "their_sas_key", None) is not None


# --- 6: concurrent /keys/claim from two servers ----------------------------------------------

OTKS = 20
CLAIMS_PER_SERVER = 12


async def test_concurrent_claims_from_two_servers(make_server: ServerFactory) -> None:
    a, b = await myelin(make_server), await myelin(make_server)
    async with Api(a.client_url) as api_a, Api(b.client_url) as api_b:
        target = await api_b.register("target")
        dev = Device(target.user_id, target.device_id)
        otks = dev.one_time_keys(OTKS)
        fallback = dev.fallback_key()
        r = await api_b.post(
            "/keys/upload",
            {"device_keys": dev.device_keys(), "one_time_keys": otks, "fallback_keys": fallback},
            token=target.access_token,
        )
        assert r.status == 200, r.body
        assert r.body["one_time_key_counts"] == {"signed_curve25519": OTKS}

        claimers_a = [await api_a.register(f"ca{i}") for i in range(CLAIMS_PER_SERVER)]
        claimers_b = [await api_b.register(f"cb{i}") for i in range(CLAIMS_PER_SERVER)]
        body = {
            "one_time_keys": {target.user_id: {target.device_id: "signed_curve25519"}},
            "timeout": 10_000,
        }

        async def claim(api: Api, token: str) -> dict[str, Any]:
            r = await api.post("/keys/claim", body, token=token)
            assert r.status == 200, r.body
            assert r.body["failures"] == {}, r.body
            keys: dict[str, Any] = r.body["one_time_keys"][target.user_id][target.device_id]
            return keys

        answers = await asyncio.gather(
            *(claim(api_a, u.access_token) for u in claimers_a),
            *(claim(api_b, u.access_token) for u in claimers_b),
        )

    # Compare the keys themselves: vodozemac numbers one-time and fallback key ids alike.
    one_time_values = {v["key"] for v in otks.values()}
    fallback_values = {v["key"] for v in fallback.values()}
    handed_out = [key["key"] for answer in answers for key in answer.values()]
    assert all(len(answer) == 1 for answer in answers), answers
    one_time = [k for k in handed_out if k in one_time_values]
    fallbacks = [k for k in handed_out if k in fallback_values]
    assert len(one_time) == OTKS, handed_out
    assert len(set(one_time)) == OTKS, "a one-time key was handed out twice"
    assert len(fallbacks) == 2 * CLAIMS_PER_SERVER - OTKS
    for answer in answers:
        ((key_id, key),) = answer.items()
        assert key in (otks.get(key_id), fallback.get(key_id)), (key_id, key)
