"""Checking a big state's signatures a batch at a time (``federation.pdu.signatures``):
the keys looked up on the event loop, the ed25519 checks in a worker thread. The
verdicts must be those of ``Keyring.verify_event_signatures`` event by event, and the
events a fetched state keeps those that pass (``EventFetcher.whole``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from federation.errors import KeyLookupError
from federation.pdu import signatures
from homeserver.app import RunningServer
from homeserver.events.room_versions import V12
from homeserver.events.signing import SignatureError, add_content_hash, sign_event
from tests.conftest import ServerFactory

ROOM = "!" + "r" * 43  # a v12 room id


def _member(sender: str, ts: int, content: dict[str, Any] | None = None) -> dict[str, Any]:
    pdu = {
        "type": "m.room.member",
        "room_id": ROOM,
        "sender": sender,
        "state_key": sender,
        "content": content or {"membership": "join"},
        "origin_server_ts": ts,
        "depth": 3,
        "prev_events": ["$" + "p" * 43],
        "auth_events": ["$" + "a" * 43],
    }
    return add_content_hash(pdu)


def _cases(a: RunningServer, b: RunningServer) -> list[dict[str, Any]]:
    """Events that pass and events that fail each way the single check knows."""
    a_name, b_name = a.hs.config.server_name, b.hs.config.server_name
    now = int(time.time() * 1000)
    by_b = [
        sign_event(_member(f"@u{i}:{b_name}", now), b_name, b.hs.signing_key, V12)
        for i in range(40)
    ]
    wrong_server = sign_event(_member(f"@w:{b_name}", now), a_name, a.hs.signing_key, V12)
    tampered = {**by_b[1], "content": {"membership": "leave"}}
    late = sign_event(
        _member(f"@late:{b_name}", now + 30 * 24 * 3600_000), b_name, b.hs.signing_key, V12
    )
    bad_b64 = {**by_b[2], "signatures": {b_name: {b.hs.signing_key.key_id: "!!"}}}
    unsigned_by_sender = {**by_b[3], "signatures": {}}
    content = {"membership": "join", "join_authorised_via_users_server": f"@admin:{a_name}"}
    restricted = sign_event(_member(f"@r:{b_name}", now, content), b_name, b.hs.signing_key, V12)
    countersigned = sign_event(restricted, a_name, a.hs.signing_key, V12)
    no_sender = {**by_b[4], "sender": "nobody"}
    return [
        *by_b[:20],
        wrong_server,
        tampered,
        late,
        bad_b64,
        unsigned_by_sender,
        restricted,
        countersigned,
        no_sender,
        *by_b[20:],
    ]


async def _single(keyring: Any, pdu: dict[str, Any]) -> Any:
    try:
        return await keyring.verify_event_signatures(pdu, V12)
    except (SignatureError, KeyLookupError) as e:
        return type(e)


async def test_batch_verdicts_are_the_single_events_and_the_crypto_runs_off_the_loop(
    make_server: ServerFactory,
) -> None:
    from homeserver.events.signing import event_signable_bytes

    a, b = await make_server(federated=True), await make_server(federated=True)
    fed = a.hs.federation
    assert fed is not None
    keyring = fed.keyring
    pdus = _cases(a, b)
    expected = [await _single(keyring, p) for p in pdus]
    assert expected.count({b.hs.config.server_name}) == 41  # 40 plain and the restricted one
    assert {a.hs.config.server_name, b.hs.config.server_name} in expected
    assert SignatureError in expected and KeyLookupError in expected

    threads: set[int] = set()
    verify = signatures.verify

    def recording(plans: Any) -> list[list[bool]]:
        threads.add(threading.get_ident())
        return verify(plans)

    signatures.verify = recording
    try:
        plans = [await signatures.plan(keyring, p, V12, event_signable_bytes(p, V12)) for p in pdus]
        results = await signatures.verify_all(plans)
    finally:
        signatures.verify = verify
    got: list[Any] = []
    for p, ok in zip(plans, results, strict=True):
        try:
            got.append(signatures.verdict(p, ok))
        except (SignatureError, KeyLookupError) as e:
            got.append(type(e))
    assert got == expected
    assert threads and threading.get_ident() not in threads


async def test_a_fetched_state_keeps_the_events_whose_signatures_verify(
    make_server: ServerFactory,
) -> None:
    """``EventFetcher.whole`` over more than one batch: forged events dropped, the
    others kept once each, in order."""
    from federation.pdu import fetch

    a, b = await make_server(federated=True), await make_server(federated=True)
    fed = a.hs.federation
    assert fed is not None and fed.rooms is not None
    b_name = b.hs.config.server_name
    now = int(time.time() * 1000)
    good = [
        sign_event(_member(f"@g{i}:{b_name}", now), b_name, b.hs.signing_key, V12)
        for i in range(fetch.CHECK_BATCH + 30)
    ]
    forged = [{**p, "content": {"membership": "leave"}} for p in good[5:300:50]]
    pdus = [*good[:100], *forged, *good[100:], good[7]]
    fetcher = fed.rooms.pipeline.fetcher
    events = await fetcher.whole(pdus, V12, ROOM, "a state")
    assert [e.sender for e in events] == [f"@g{i}:{b_name}" for i in range(len(good))]


async def test_a_repeated_event_is_checked_once_and_a_forged_copy_hides_no_good_one(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``EventFetcher.batches``: an event given twice (a state's event in its auth chain
    too) has its signatures checked once, every copy handed on with its index as the
    first copy that passed; a copy with a bad signature before a good one (the same
    event id: signatures are not part of it) is dropped, the good one then checked."""
    from federation.pdu import fetch

    a, b = await make_server(federated=True), await make_server(federated=True)
    fed = a.hs.federation
    assert fed is not None and fed.rooms is not None
    b_name = b.hs.config.server_name
    key_id = b.hs.signing_key.key_id
    now = int(time.time() * 1000)
    good = [
        sign_event(_member(f"@g{i}:{b_name}", now), b_name, b.hs.signing_key, V12)
        for i in range(fetch.CHECK_BATCH + 10)
    ]
    twice = good[3]
    forged = {**twice, "signatures": {b_name: {key_id: "A" * 86}}}
    # forged, then good, then good again in the same batch, then again in a later one
    pdus = [forged, twice, *good[:3], twice, *good[4:], twice]
    fetcher = fed.rooms.pipeline.fetcher
    planned: list[str] = []
    plan = signatures.plan

    async def counted(keyring: Any, pdu: dict[str, Any], *args: Any) -> Any:
        planned.append(str(pdu["sender"]))
        return await plan(keyring, pdu, *args)

    monkeypatch.setattr(fetch, "plan", counted)
    handed = [pair async for batch in fetcher.batches(pdus, V12, ROOM) for pair in batch]
    twice_sender = f"@g3:{b_name}"
    # Every event planned once, the repeated one twice: its forged copy, then the good one.
    assert sorted(planned) == sorted([twice_sender] + [str(p["sender"]) for p in good])
    indices = [i for i, _e in handed]
    assert indices == sorted(indices) and 0 not in indices
    copies = [(i, e) for i, e in handed if e.sender == twice_sender]
    assert [i for i, _e in copies] == [1, 5, len(pdus) - 1]
    assert len({id(e) for _i, e in copies}) == 1  # one Event for every copy
    assert copies[0][1].pdu["signatures"] == twice["signatures"]
    assert len(handed) == len(good) + 2
