"""Step 2 of "Checks performed on receipt of a PDU" (server-server "Validating
hashes and signatures on received events") for many events at once: a room's
state or auth chain, thousands of events in a big room's join or resync.

Design note
-----------
``Keyring.verify_event_signatures`` checks one event: it looks the keys up and
runs the ed25519 checks on the event loop. For a batch the two halves are
split (``EventFetcher``)::

    plan(event)          on the event loop: which servers must (or may) have
                         signed, their signatures and keys (memory, database,
                         network: the keyring's lookups, cached)
    verify(plans)        in worker threads, the events split between them: the
                         ed25519 checks, most of checking a big state (some 45
                         us an event); libsodium releases the GIL, so the
                         threads run on two cores while the loop waits. Not
                         while it parses: a thread wanting the GIL back after
                         each check would wait for the loop's switch interval
    verdict(plan, ok)    on the loop: the servers whose signatures verified,
                         or the error ``verify_event_signatures`` would raise

The verdicts are the single-event ones (tests compare them); only where the
crypto runs differs. A few events are checked inline (a thread hop costs more).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError

from federation.errors import KeyLookupError
from federation.keyring import Keyring, servers_to_check
from homeserver.events.keys import ALGORITHM, VerifyKey
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import SignatureError, signature_bytes

# Worker threads for the checks (the machine's other cores; more gain nothing on 2).
VERIFY_THREADS = 2
# Batches smaller than this are checked on the event loop.
INLINE_BELOW = 16

_pool: ThreadPoolExecutor | None = None


@dataclass(slots=True)
class _Server:
    """One server's part of an event's check: its signatures with keys we hold, or the
    error that already decides it (not signed, no key we can find)."""

    name: str
    required: bool
    checks: list[tuple[VerifyKey, bytes]] = field(default_factory=list)
    error: Exception | None = None


@dataclass(slots=True)
class SignaturePlan:
    """What verifying one event's signatures takes, keys looked up."""

    signable: bytes
    servers: list[_Server] = field(default_factory=list)
    error: Exception | None = None  # no valid sender (or v1/v2 event id): dropped


async def plan(
    keyring: Keyring, pdu: dict[str, Any], room_version: RoomVersion, signable: bytes
) -> SignaturePlan:
    """The servers to check (as ``Keyring.verify_event_signatures``) and, for each, the
    signatures by keys valid at the event's time; ``signable``: the event's
    ``signing.event_signable_bytes`` (what every signature covers)."""
    out = SignaturePlan(signable)
    ts = pdu.get("origin_server_ts")
    ts = ts if isinstance(ts, int) and not isinstance(ts, bool) else 0
    if not room_version.enforce_key_validity:
        ts = 0  # v1-v4: any key the server published will do
    try:
        required, optional = servers_to_check(pdu)
        if room_version.event_id_in_pdu:
            event_id = pdu.get("event_id")
            domain = event_id.partition(":")[2] if isinstance(event_id, str) else ""
            if not domain:
                raise SignatureError("event has no valid event_id")
            required.add(domain)
            optional -= required
    except SignatureError as e:
        out.error = e
        return out
    for name in sorted(required | optional):
        server = _Server(name, name in required)
        out.servers.append(server)
        try:
            server.checks = await _server_checks(keyring, pdu, name, ts)
        except (SignatureError, KeyLookupError) as e:
            server.error = e
    return out


async def _server_checks(
    keyring: Keyring, pdu: dict[str, Any], name: str, ts: int
) -> list[tuple[VerifyKey, bytes]]:
    """``Keyring.verify_json_for_server`` up to the crypto: every signature of ``name``
    by a key we can find (at least one, else ``KeyLookupError``). The signatures are
    the PDU's own (redaction keeps them as they are)."""
    signatures = pdu.get("signatures")
    sigs = signatures.get(name) if isinstance(signatures, dict) else None
    if not isinstance(sigs, dict):
        raise SignatureError(f"not signed by {name}")
    key_ids = [k for k in sigs if isinstance(k, str) and k.startswith(ALGORITHM + ":")]
    if not key_ids:
        raise SignatureError(f"no supported signature from {name}")
    checks = []
    for key_id in key_ids:
        try:
            key = await keyring.get_verify_key(name, key_id, ts)
        except KeyLookupError:
            continue
        checks.append((key, signature_bytes(pdu, name, key_id)))
    if not checks:
        raise KeyLookupError(f"no trusted key of {name} for its signature")
    return checks


def verify(plans: Sequence[SignaturePlan]) -> list[list[bool]]:
    """The ed25519 checks of ``plans``, per plan and server: whether every signature
    verified (pure CPU, no event loop: run in a worker thread)."""
    out = []
    for p in plans:
        per_server = []
        for server in p.servers:
            ok = server.error is None
            for key, signature in server.checks if ok else ():
                try:
                    key.verify(p.signable, signature)
                except (BadSignatureError, ValueError):
                    ok = False
                    break
            per_server.append(ok)
        out.append(per_server)
    return out


async def verify_all(plans: Sequence[SignaturePlan]) -> list[list[bool]]:
    """``verify`` for ``plans``, split between ``VERIFY_THREADS`` worker threads (inline
    when there are few); the caller's loop waits meanwhile."""
    if len(plans) < INLINE_BELOW:
        return verify(plans)
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="myelin-verify")
    loop = asyncio.get_running_loop()
    size = -(-len(plans) // VERIFY_THREADS)
    parts = [plans[i : i + size] for i in range(0, len(plans), size)]
    done = await asyncio.gather(*(loop.run_in_executor(_pool, verify, p) for p in parts))
    return [ok for part in done for ok in part]


def verdict(p: SignaturePlan, ok: Sequence[bool]) -> set[str]:
    """The servers whose signatures verified; raises what ``verify_event_signatures``
    raises when a required server's signature is missing, unverifiable or bad."""
    if p.error is not None:
        raise p.error
    verified: set[str] = set()
    for server, good in zip(p.servers, ok, strict=True):
        if good:
            verified.add(server.name)
            continue
        if not server.required:
            continue
        if server.error is not None:
            raise server.error
        raise SignatureError(f"bad signature from {server.name}")
    return verified
