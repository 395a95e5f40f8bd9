"""Outbound reads of room events from another server (server-server "Retrieving
events", "Retrieving event authorisation information", "get_missing_events"),
each answer parsed for the room version and its signatures verified.

An event that fails parsing or signatures is left out (it is dropped, as on
receipt); the caller sees it as still missing. A failed request is logged at
debug level only: what it costs (an event refused for missing auth events or
state) is logged once by the pipeline, with the origin.

Limits: an answer that the spec bounds by what we asked for (get_missing_events,
backfill) is read up to ``MAX_FETCHED`` events. A room's state or an auth chain
(send_join, event_auth) is never cut: it is read whole up to ``MAX_STATE_EVENTS``,
and a bigger one fails loudly (``TooManyEvents``) rather than giving a partial
state. Events are checked in batches of ``CHECK_BATCH``, yielding to the event
loop between batches so a big join does not stall other rooms.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from federation.client import FederationClient, encode_path
from federation.errors import FederationError, KeyLookupError
from federation.keyring import Keyring
from federation.pdu.parse import PduDropped, parse_pdu, share_repeats
from federation.pdu.signatures import SignaturePlan, plan, verdict, verify, verify_all
from homeserver.events.derived import signable_bytes
from homeserver.events.model import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import SignatureError

log = logging.getLogger("myelin.federation.pdu")

MAX_FETCHED = 1000
MAX_STATE_EVENTS = 200_000
CHECK_BATCH = 200
# Time bounds per request: one event is small; a chain or a state may be big.
EVENT_TIMEOUT_S = 15.0
CHAIN_TIMEOUT_S = 60.0


class TooManyEvents(Exception):
    """A state or auth chain bigger than we accept whole: refused, never cut."""

    def __init__(self, what: str, count: int) -> None:
        super().__init__(f"{what} has {count} events; at most {MAX_STATE_EVENTS} are accepted")
        self.what = what
        self.count = count


class EventFetcher:
    def __init__(self, client: FederationClient, keyring: Keyring) -> None:
        self.client = client
        self.keyring = keyring

    async def check(self, pdu: Any, version: RoomVersion) -> tuple[Event, bool]:
        """Steps 1-3 for one PDU: (event, content hash failed); ``PduDropped`` if dropped."""
        try:
            event, redacted = parse_pdu(pdu, version)
            await self.keyring.verify_event_signatures(
                event.pdu, version, signable=signable_bytes(event)
            )
        except (SignatureError, KeyLookupError) as e:
            raise PduDropped(str(e), bad_signature=True) from None
        return event, redacted

    async def checked(self, pdu: Any, version: RoomVersion) -> tuple[Event, bool] | None:
        """``check`` for one fetched PDU, or None (logged) if dropped."""
        try:
            return await self.check(pdu, version)
        except PduDropped as e:
            log.info("dropping a fetched event: %s", e.reason)
            return None

    async def many(self, pdus: Any, version: RoomVersion, room_id: str) -> list[Event]:
        """A bounded answer (we asked for at most ``MAX_FETCHED``): extra events are ignored."""
        if not isinstance(pdus, list):
            return []
        return await self._checked_all(pdus[:MAX_FETCHED], version, room_id)

    async def whole(self, pdus: Any, version: RoomVersion, room_id: str, what: str) -> list[Event]:
        """A state or auth chain: every event checked, none cut; ``TooManyEvents``
        when there are more than ``MAX_STATE_EVENTS``."""
        if not isinstance(pdus, list):
            return []
        if len(pdus) > MAX_STATE_EVENTS:
            raise TooManyEvents(what, len(pdus))
        return await self._checked_all(pdus, version, room_id)

    async def _checked_all(
        self, pdus: list[Any], version: RoomVersion, room_id: str
    ) -> list[Event]:
        """``checked`` for each PDU, a batch at a time (``batches``); a repeated event
        counts once."""
        out: dict[str, Event] = {}
        async for batch in self.batches(pdus, version, room_id):
            for _i, event in batch:
                out.setdefault(event.event_id, event)
        return list(out.values())

    async def batches(
        self, pdus: Sequence[Any], version: RoomVersion, room_id: str
    ) -> AsyncGenerator[list[tuple[int, Event]], None]:
        """The PDUs of ``room_id`` that pass ``checked``, ``CHECK_BATCH`` at a time, each
        with its index in ``pdus``, in index order: parsed and their keys looked up on
        the loop, then the batch's signatures verified in worker threads while the
        loop waits (``federation.pdu.signatures``: not while it parses, as a thread
        that wants the GIL back after each check would wait for the loop's switch
        interval). A batch's plans go with it: memory stays that of the events.

        The same event twice (a state's event in its auth chain too) has its
        signatures checked once: a later copy is handed on as the first copy that
        passed (as the same ``Event``), a copy is checked only when those before
        it failed."""
        passed: dict[str, Event] = {}
        # The strings the room's events repeat, kept once (``share_repeats``).
        repeats: dict[str, str] = {}
        for start in range(0, len(pdus), CHECK_BATCH):
            if start:
                await asyncio.sleep(0)  # let other rooms and requests run between batches
            parsed: list[tuple[int, Event, SignaturePlan]] = []
            # Copies of an event planned earlier in this batch, checked if it fails.
            spare: dict[str, list[tuple[int, Event]]] = {}
            copies: list[tuple[int, str]] = []  # copies of events passed in earlier batches
            for i in range(start, min(start + CHECK_BATCH, len(pdus))):
                try:
                    event, _redacted = parse_pdu(pdus[i], version)
                except PduDropped as e:
                    log.info("dropping a fetched event: %s", e.reason)
                    continue
                except SignatureError as e:
                    log.info("dropping a fetched event: %s", e)
                    continue
                if event.room_id != room_id:
                    continue
                share_repeats(event.pdu, repeats)
                event_id = event.event_id
                if event_id in passed:
                    copies.append((i, event_id))
                elif event_id in spare:
                    spare[event_id].append((i, event))
                else:
                    spare[event_id] = []
                    sig_plan = await plan(self.keyring, event.pdu, version, signable_bytes(event))
                    parsed.append((i, event, sig_plan))
            results = await verify_all([p for _i, _e, p in parsed])
            batch: list[tuple[int, Event]] = []
            for (i, event, sig_plan), ok in zip(parsed, results, strict=True):
                event_id = event.event_id
                if _passes(sig_plan, ok):
                    passed[event_id] = event
                    batch.append((i, event))
                for j, other in spare.pop(event_id):
                    if event_id in passed:
                        batch.append((j, passed[event_id]))
                        continue
                    # The copies before it failed: this one is checked on its own.
                    other_plan = await plan(self.keyring, other.pdu, version, signable_bytes(other))
                    if _passes(other_plan, verify([other_plan])[0]):
                        passed[event_id] = other
                        batch.append((j, other))
            batch += [(i, passed[event_id]) for i, event_id in copies]
            batch.sort(key=lambda pair: pair[0])
            yield batch

    async def event(self, origin: str, event_id: str, version: RoomVersion) -> Event | None:
        """``GET /event/{eventId}``: one event, if the server has it and it checks out."""
        try:
            resp = await self.client.get_json(
                origin,
                encode_path("_matrix", "federation", "v1", "event", event_id),
                timeout_s=EVENT_TIMEOUT_S,
            )
        except FederationError as e:
            log.debug("cannot fetch an event from %s: %s", origin, e.error)
            return None
        pdus = resp.get("pdus") if isinstance(resp, dict) else None
        if not isinstance(pdus, list) or not pdus:
            return None
        got = await self.checked(pdus[0], version)
        if got is None or got[0].event_id != event_id:
            return None
        return got[0]

    async def event_auth(
        self, origin: str, room_id: str, event_id: str, version: RoomVersion
    ) -> list[Event]:
        """``GET /event_auth/{roomId}/{eventId}``: the auth chain of an event."""
        path = encode_path("_matrix", "federation", "v1", "event_auth", room_id, event_id)
        try:
            resp = await self.client.get_json(origin, path, timeout_s=CHAIN_TIMEOUT_S)
        except FederationError as e:
            log.debug("cannot fetch an auth chain from %s: %s", origin, e.error)
            return []
        chain = resp.get("auth_chain") if isinstance(resp, dict) else None
        try:
            return await self.whole(chain, version, room_id, "an auth chain")
        except TooManyEvents as e:
            log.warning("auth chain of %s from %s refused: %s", event_id, origin, e)
            return []

    async def state_ids(
        self, origin: str, room_id: str, event_id: str
    ) -> tuple[list[str], list[str]] | None:
        """``GET /state_ids/{roomId}?event_id=``: (state event ids, auth chain ids)."""
        path = encode_path("_matrix", "federation", "v1", "state_ids", room_id)
        try:
            resp = await self.client.get_json(
                origin, path, {"event_id": event_id}, timeout_s=CHAIN_TIMEOUT_S
            )
        except FederationError as e:
            log.debug("cannot fetch state ids from %s: %s", origin, e.error)
            return None
        if not isinstance(resp, dict):
            return None
        pdus, chain = resp.get("pdu_ids"), resp.get("auth_chain_ids")
        if not isinstance(pdus, list) or not isinstance(chain, list):
            return None
        return [p for p in pdus if isinstance(p, str)], [c for c in chain if isinstance(c, str)]

    async def state(
        self, origin: str, room_id: str, event_id: str, version: RoomVersion
    ) -> list[Event] | None:
        """``GET /state/{roomId}?event_id=``: the state at an event and its auth chain,
        whole (never cut), every event checked. None when the server would not tell."""
        path = encode_path("_matrix", "federation", "v1", "state", room_id)
        try:
            resp = await self.client.get_json(
                origin, path, {"event_id": event_id}, timeout_s=CHAIN_TIMEOUT_S
            )
            if not isinstance(resp, dict):
                return None
            pdus = await self.whole(resp.get("pdus"), version, room_id, "a state")
            chain = await self.whole(resp.get("auth_chain"), version, room_id, "an auth chain")
        except FederationError as e:
            log.debug("cannot fetch the state from %s: %s", origin, e.error)
            return None
        except TooManyEvents as e:
            log.warning("state at %s from %s refused: %s", event_id, origin, e)
            return None
        return [*chain, *pdus]

    async def missing_events(
        self,
        origin: str,
        room_id: str,
        earliest: list[str],
        latest: list[str],
        limit: int,
        version: RoomVersion,
    ) -> list[Event]:
        """``POST /get_missing_events/{roomId}``: events between ``earliest`` and ``latest``."""
        path = encode_path("_matrix", "federation", "v1", "get_missing_events", room_id)
        body = {"earliest_events": earliest, "latest_events": latest, "limit": limit}
        try:
            resp = await self.client.post_json(origin, path, body, timeout_s=CHAIN_TIMEOUT_S)
        except FederationError as e:
            log.debug("cannot fetch missing events from %s: %s", origin, e.error)
            return []
        events = resp.get("events") if isinstance(resp, dict) else None
        return await self.many(events, version, room_id)


def _passes(sig_plan: SignaturePlan, ok: Sequence[bool]) -> bool:
    """``verdict``: whether the event's signatures hold (logged when they do not)."""
    try:
        verdict(sig_plan, ok)
    except (SignatureError, KeyLookupError) as e:
        log.info("dropping a fetched event: %s", e)
        return False
    return True
