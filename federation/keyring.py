"""The keyring: remote servers' signing keys, fetched, checked, cached and used to verify.

Spec: server-server "Retrieving server keys" (publishing, notaries),
appendices "Checking for a Signature", server-server "Validating hashes and
signatures on received events", rooms v5+ signing key validity.

Design note
-----------
A key is trusted for a timestamp ``ts`` when we hold it with
``valid_until_ts >= ts``. For a current key that bound is the lesser of the
published ``valid_until_ts`` and fetch time + 7 days; for an old key it is
its ``expired_ts``. Requests are checked at "now", events at their
``origin_server_ts``.

Lookups go memory -> database -> network. A network fetch asks the origin's
``/_matrix/key/v2/server`` first, then each configured notary; a response
counts only when it names the server, and every one of its ``verify_keys``
has signed it (notary answers must also carry the notary's signature).
Fetches are one at a time per server and at most one per
``REFETCH_INTERVAL_MS`` per server, so a flood of unknown key ids cannot
make us hammer a peer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from federation.client import FederationClient
from federation.errors import FederationError, KeyLookupError
from federation.keystore import ServerKeyStore, StoredKey, StoredResponse
from homeserver.clock import Clock
from homeserver.events.keys import (
    ALGORITHM,
    SigningKey,
    VerifyKey,
    decode_verify_key_base64,
    is_valid_key_version,
    verify_key_base64,
)
from homeserver.events.redaction import redact
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import SignatureError, verify_json_signature

log = logging.getLogger("myelin.federation.keyring")

KEY_VALIDITY_CAP_MS = 7 * 24 * 3600 * 1000
REFETCH_INTERVAL_MS = 30 * 1000
_MAX_TRACKED_SERVERS = 4096


@dataclass(frozen=True, slots=True)
class ParsedKeys:
    server_name: str
    keys: list[StoredKey]
    valid_until_ts: int  # as published, uncapped


def parse_key_response(resp: Any, server_name: str, now_ms: int) -> ParsedKeys:
    """Check a ``/_matrix/key/v2/server`` object for ``server_name``; ``KeyLookupError`` if bad.

    Every key in ``verify_keys`` must have signed the object (proof that the
    server holds each private key); other signatures are not looked at here.
    """
    if not isinstance(resp, dict) or resp.get("server_name") != server_name:
        raise KeyLookupError(f"key response is not for {server_name}")
    valid_until = resp.get("valid_until_ts")
    verify_keys = resp.get("verify_keys")
    old_keys = resp.get("old_verify_keys", {})
    if (
        not isinstance(valid_until, int)
        or isinstance(valid_until, bool)
        or not isinstance(verify_keys, dict)
        or not isinstance(old_keys, dict)
    ):
        raise KeyLookupError(f"malformed key response from {server_name}")
    capped = min(valid_until, now_ms + KEY_VALIDITY_CAP_MS)
    current: dict[str, VerifyKey] = {}
    out: list[StoredKey] = []
    for key_id, entry in verify_keys.items():
        vk = _decode_entry(key_id, entry)
        if vk is None:
            continue
        current[key_id] = vk
        out.append(StoredKey(server_name, key_id, verify_key_base64(vk), capped))
    if not current:
        raise KeyLookupError(f"key response from {server_name} has no usable verify key")
    for key_id, vk in current.items():
        try:
            verify_json_signature(resp, server_name, key_id, vk)
        except SignatureError:
            raise KeyLookupError(f"key response from {server_name} is not self-signed") from None
    for key_id, entry in old_keys.items():
        vk = _decode_entry(key_id, entry)
        expired = entry.get("expired_ts") if isinstance(entry, dict) else None
        if vk is None or key_id in current or not isinstance(expired, int):
            continue
        out.append(StoredKey(server_name, key_id, verify_key_base64(vk), min(expired, capped)))
    return ParsedKeys(server_name, out, valid_until)


def _decode_entry(key_id: str, entry: Any) -> VerifyKey | None:
    algorithm, _, version = key_id.partition(":")
    if algorithm != ALGORITHM or not is_valid_key_version(version) or not isinstance(entry, dict):
        return None
    key = entry.get("key")
    if not isinstance(key, str):
        return None
    try:
        return decode_verify_key_base64(key)
    except ValueError:
        return None


class Keyring:
    """Finds trusted verify keys and checks signatures made by other servers."""

    def __init__(
        self,
        server_name: str,
        signing_key: SigningKey,
        store: ServerKeyStore,
        client: FederationClient,
        clock: Clock,
        trusted_key_servers: list[str],
    ) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        self.store = store
        self.client = client
        self.clock = clock
        self.trusted_key_servers = [s for s in trusted_key_servers if s != server_name]
        self._mem: dict[tuple[str, str], tuple[VerifyKey, int]] = {}
        self._last_fetch: dict[str, int] = {}
        # Notary fetches that failed: the origin is not asked again for a while.
        self._notary_failures: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # --- lookups --------------------------------------------------------------------------

    async def get_verify_key(self, server_name: str, key_id: str, min_valid_ts: int) -> VerifyKey:
        """A key of ``server_name`` trusted at ``min_valid_ts``; fetched if needed.

        Raises ``KeyLookupError`` when no such key can be found.
        """
        if server_name == self.server_name:
            if key_id == self.signing_key.key_id:
                return self.signing_key.verify_key
            raise KeyLookupError(f"unknown local key {key_id}")
        found = await self._cached(server_name, key_id, min_valid_ts)
        if found is not None:
            return found
        lock = self._locks.setdefault(server_name, asyncio.Lock())
        async with lock:
            found = await self._cached(server_name, key_id, min_valid_ts)
            if found is None and self._may_fetch(server_name):
                await self._fetch(server_name, key_id, min_valid_ts)
                found = await self._cached(server_name, key_id, min_valid_ts)
        if found is None:
            raise KeyLookupError(f"no valid key {key_id} for {server_name}")
        return found

    async def prefetch(self, server_name: str) -> None:
        """Have ``server_name``'s keys at hand before its signatures arrive (a join
        checks the resident's right after send_join: fetched alongside make_join,
        that is one round trip less). Nothing when we keep a response of it or the
        rate limit says no. It does not take the rate limit's turn: when it fails, the
        lookup that needs the key still asks (one request more at most)."""
        if server_name == self.server_name:
            return
        if any(s == server_name for s, _k in self._mem):
            return
        lock = self._locks.setdefault(server_name, asyncio.Lock())
        async with lock:
            last = self._last_fetch.get(server_name)
            if last is not None and self.clock.now_ms() - last < REFETCH_INTERVAL_MS:
                return
            if await self.store.get_response(server_name) is None:
                await self._fetch(server_name, None, 0)

    async def _cached(self, server_name: str, key_id: str, min_valid_ts: int) -> VerifyKey | None:
        hit = self._mem.get((server_name, key_id))
        if hit is None:
            stored = await self.store.get_key(server_name, key_id)
            if stored is None:
                return None
            hit = (decode_verify_key_base64(stored.verify_key), stored.valid_until_ts)
            self._mem[(server_name, key_id)] = hit
        return hit[0] if hit[1] >= min_valid_ts else None

    async def _satisfied(self, server_name: str, key_id: str | None, min_valid_ts: int) -> bool:
        if key_id is None:
            return True
        return await self._cached(server_name, key_id, min_valid_ts) is not None

    def _may_fetch(self, server_name: str) -> bool:
        now = self.clock.now_ms()
        if len(self._last_fetch) > _MAX_TRACKED_SERVERS:
            self._prune(now)
        last = self._last_fetch.get(server_name)
        if last is not None and now - last < REFETCH_INTERVAL_MS:
            return False
        self._last_fetch[server_name] = now
        return True

    def _prune(self, now: int) -> None:
        """Forget rate-limit state and idle locks of servers not fetched recently.

        Inbound requests name arbitrary origins; this keeps that from growing
        memory without bound.
        """
        for name, last in list(self._last_fetch.items()):
            if now - last >= REFETCH_INTERVAL_MS:
                del self._last_fetch[name]
        for name, last in list(self._notary_failures.items()):
            if now - last >= REFETCH_INTERVAL_MS:
                del self._notary_failures[name]
        for name, lock in list(self._locks.items()):
            if not lock.locked() and name not in self._last_fetch:
                del self._locks[name]

    # --- fetching -------------------------------------------------------------------------

    async def _fetch(self, server_name: str, key_id: str | None, min_valid_ts: int) -> None:
        """Ask the origin, then the notaries, until one gives a usable answer."""
        try:
            resp = await self.client.get_json(server_name, "/_matrix/key/v2/server", timeout_s=20.0)
            await self._accept(server_name, resp)
            if await self._satisfied(server_name, key_id, min_valid_ts):
                return
        except (FederationError, KeyLookupError) as e:
            log.info("key fetch from %s failed: %s", server_name, e)
        for notary in self.trusted_key_servers:
            try:
                if await self._fetch_via_notary(notary, server_name, key_id, min_valid_ts):
                    if await self._satisfied(server_name, key_id, min_valid_ts):
                        return
            except (FederationError, KeyLookupError, SignatureError) as e:
                log.info("key query for %s via %s failed: %s", server_name, notary, e)

    async def _fetch_via_notary(
        self, notary: str, server_name: str, key_id: str | None, min_valid_ts: int
    ) -> bool:
        criteria = {key_id: {"minimum_valid_until_ts": min_valid_ts}} if key_id else {}
        answer = await self.client.post_json(
            notary,
            "/_matrix/key/v2/query",
            {"server_keys": {server_name: criteria}},
            timeout_s=20.0,
        )
        items = answer.get("server_keys") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            raise KeyLookupError(f"malformed key query answer from {notary}")
        accepted = False
        unasked = 0
        for item in items:
            if not isinstance(item, dict) or item.get("server_name") != server_name:
                unasked += 1  # never cached: we trust a notary only for what we asked
                continue
            await self.verify_json_for_server(notary, item, self.clock.now_ms())
            await self._accept(server_name, item)
            accepted = True
        if unasked:
            log.info(
                "notary %s answered with %d key responses not for %s (asked); ignored",
                notary,
                unasked,
                server_name,
            )
        return accepted

    async def _accept(self, server_name: str, resp: Any) -> None:
        now = self.clock.now_ms()
        parsed = parse_key_response(resp, server_name, now)
        await self.store.store_response(server_name, resp, parsed.keys, parsed.valid_until_ts, now)
        for k in parsed.keys:
            self._mem[(server_name, k.key_id)] = (
                decode_verify_key_base64(k.verify_key),
                k.valid_until_ts,
            )

    # --- notary ---------------------------------------------------------------------------

    async def key_responses_for_notary(
        self,
        server_name: str,
        min_valid_ts: int,
        key_ids: Collection[str] | None = None,
        *,
        asked_min: bool = False,
    ) -> list[Any]:
        """The origin-signed key responses we can vouch for (not yet signed by us).

        With ``key_ids``, the latest response that carried each of those keys;
        without, every distinct response we keep. The origin is asked again
        when no kept response is valid at ``min_valid_ts`` or the latest is past
        half its lifetime (one fetch at a time per server: each query costs at
        most one request to the origin). ``asked_min``: the querier named its
        ``minimum_valid_until_ts``, and a kept response valid then is all it
        wants (the half-lifetime rule is for queries without one). If the origin
        is unreachable, or its answer is no better, the kept responses are returned anyway, expired
        ones included: a key the origin no longer publishes still verifies
        what it signed while valid.
        """
        latest = await self.store.get_response(server_name)
        now = self.clock.now_ms()
        wanted = _select(await self.store.get_responses_by_key(server_name), latest, key_ids)
        stale = (
            latest is None
            or not wanted
            or all(r.valid_until_ts < min_valid_ts for r in wanted)
            or (
                not asked_min
                and now > latest.fetched_ts + (latest.valid_until_ts - latest.fetched_ts) // 2
            )
        )
        if stale:
            lock = self._locks.setdefault(server_name, asyncio.Lock())
            async with lock:
                failed_at = self._notary_failures.get(server_name)
                # After a failure the origin rests, unless we hold nothing to answer
                # with (each query still costs at most one request, one at a time).
                if failed_at is None or now - failed_at >= REFETCH_INTERVAL_MS or not wanted:
                    try:
                        resp = await self.client.get_json(
                            server_name, "/_matrix/key/v2/server", timeout_s=20.0
                        )
                        await self._accept(server_name, resp)
                        self._notary_failures.pop(server_name, None)
                    except (FederationError, KeyLookupError) as e:
                        log.info("notary fetch from %s failed: %s", server_name, e)
                        self._notary_failures[server_name] = self.clock.now_ms()
            latest = await self.store.get_response(server_name)
            wanted = _select(await self.store.get_responses_by_key(server_name), latest, key_ids)
        return [r.response for r in wanted]

    # --- verification ---------------------------------------------------------------------

    async def verify_json_for_server(
        self,
        server_name: str,
        obj: dict[str, Any],
        min_valid_ts: int,
        signable: bytes | None = None,
    ) -> None:
        """Check ``server_name``'s signature on ``obj`` with keys trusted at ``min_valid_ts``.

        Every signature by a key we can find must verify, and at least one must
        be found (appendices "Checking for a Signature"). Raises
        ``SignatureError`` or ``KeyLookupError``.
        """
        signatures = obj.get("signatures")
        sigs = signatures.get(server_name) if isinstance(signatures, dict) else None
        if not isinstance(sigs, dict):
            raise SignatureError(f"not signed by {server_name}")
        key_ids = [k for k in sigs if isinstance(k, str) and k.startswith(ALGORITHM + ":")]
        if not key_ids:
            raise SignatureError(f"no supported signature from {server_name}")
        checked = 0
        for key_id in key_ids:
            try:
                vk = await self.get_verify_key(server_name, key_id, min_valid_ts)
            except KeyLookupError:
                continue
            verify_json_signature(obj, server_name, key_id, vk, signable)
            checked += 1
        if checked == 0:
            raise KeyLookupError(f"no trusted key of {server_name} for its signature")

    async def verify_event_signatures(
        self, pdu: dict[str, Any], room_version: RoomVersion, signable: bytes | None = None
    ) -> set[str]:
        """Check an event's signatures ("Validating hashes and signatures on received events").

        The sender's server (and in v1-v2 the event id's server) must have
        signed the redacted event with a key valid at the event's
        ``origin_server_ts`` (from v5; any known key before) (unless the event is a
        third-party-invite membership, which another server may send). The
        server of ``join_authorised_via_users_server`` is checked too when
        present. Returns every server whose signature verified, for the auth
        rules' ``verify_server_signature``; raises ``SignatureError`` or
        ``KeyLookupError`` when a required server's signature fails.
        ``signable``: the event's ``signing.event_signable_bytes`` when the caller
        has them already (``parse_pdu`` did, for the event id).
        """
        redacted = redact(pdu, room_version)
        ts = pdu.get("origin_server_ts")
        ts = ts if isinstance(ts, int) and not isinstance(ts, bool) else 0
        if not room_version.enforce_key_validity:
            ts = 0  # v1-v4: any key the server published will do (v5-signing-requirements)
        required, optional = servers_to_check(pdu)
        if room_version.event_id_in_pdu:
            # v1-v2: the server that chose the event id signs too (v3-auth-rules note).
            required.add(_event_id_domain(pdu))
            optional -= required
        verified: set[str] = set()
        for server in sorted(required | optional):
            try:
                await self.verify_json_for_server(server, redacted, ts, signable)
            except (SignatureError, KeyLookupError):
                if server in required:
                    raise
                continue
            verified.add(server)
        return verified


def _event_id_domain(pdu: dict[str, Any]) -> str:
    event_id = pdu.get("event_id")
    domain = event_id.partition(":")[2] if isinstance(event_id, str) else ""
    if not domain:
        raise SignatureError("event has no valid event_id")
    return domain


def _domain(user_id: Any) -> str | None:
    if not isinstance(user_id, str) or not user_id.startswith("@") or ":" not in user_id:
        return None
    return user_id.split(":", 1)[1]


def servers_to_check(pdu: dict[str, Any]) -> tuple[set[str], set[str]]:
    """``(required, optional)`` servers whose signatures an event is checked for."""
    required: set[str] = set()
    optional: set[str] = set()
    content = pdu.get("content")
    content = content if isinstance(content, dict) else {}
    sender_domain = _domain(pdu.get("sender"))
    third_party = (
        pdu.get("type") == "m.room.member"
        and content.get("membership") == "invite"
        and "third_party_invite" in content
    )
    if sender_domain is None:
        raise SignatureError("event has no valid sender")
    (optional if third_party else required).add(sender_domain)
    authoriser = _domain(content.get("join_authorised_via_users_server"))
    if pdu.get("type") == "m.room.member" and authoriser is not None:
        optional.add(authoriser)
    optional -= required
    return required, optional


def _select(
    by_key: dict[str, StoredResponse],
    latest: StoredResponse | None,
    key_ids: Collection[str] | None,
) -> list[StoredResponse]:
    """The distinct kept responses for ``key_ids`` (all when None), newest first."""
    if key_ids is None:
        found = list(by_key.values())
        if latest is not None:
            found.append(latest)  # responses kept before per-key storage existed
    else:
        found = [by_key[k] for k in key_ids if k in by_key]
        if not found and latest is not None and _publishes(latest.response, key_ids):
            found = [latest]
    found.sort(key=lambda r: r.fetched_ts, reverse=True)
    seen: set[str] = set()
    out: list[StoredResponse] = []
    for r in found:
        text = json.dumps(r.response, sort_keys=True)
        if text not in seen:
            seen.add(text)
            out.append(r)
    return out


def _publishes(response: dict[str, Any], key_ids: Collection[str]) -> bool:
    keys = response.get("verify_keys")
    old = response.get("old_verify_keys")
    return any(
        (isinstance(keys, dict) and k in keys) or (isinstance(old, dict) and k in old)
        for k in key_ids
    )
