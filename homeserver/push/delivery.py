"""Delivering notifications to push gateways (Push Gateway API ``/_matrix/push/v1/notify``).

Design note
-----------
Nothing is queued apart from the notification rows themselves. The send does
not write them: the push evaluator (``homeserver.push.evaluation``) evaluates
committed events behind it, in stream order, and commits their rows (one shared
``event_push_shared`` row per event for the members with the default outcome,
``event_push_actions`` rows for the others) together with its own durable
cursor. Each pusher keeps a cursor, ``pushers.last_stream_ordering``, of the
last row it delivered. A pusher's worker sends the notifying rows past its
cursor one by one, in stream order, and moves the cursor after each answer::

    event committed -> evaluator: push rows + its cursor committed
        -> row hooks: wake(user) -> worker per pusher
        rows after cursor? -> POST to the gateway -> 200 / 4xx -> cursor = row
                                                  -> 5xx / 429 / unreachable
                                                     -> back off (1 s .. 10 min), retry
    server start -> one worker per pusher: catches up what a crash or a restart left
                    (and the evaluator resumes after its cursor)

So a notification survives a crash before its push (the row is durable and
past the cursor), a gateway that is down gets everything in order once it is
back, and a gateway that has failed for a day loses the notification it was
stuck on (the phone would show a stale alert; Synapse gives up after a day
too). A worker runs only while its pusher has rows to send; a wake-up while it
drains makes it look once more before it stops.

Badge updates after a read receipt are not queued: the next one carries the
current count anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from homeserver.clock import Clock
from homeserver.errors import MatrixError
from homeserver.logs import new_request_id, request_id
from homeserver.net import forbidden_literal_host, policy_session
from homeserver.push.actions_store import PushActionRow, PushActionStore
from homeserver.push.email_pushes import EmailPushes
from homeserver.push.pushers_store import Pusher, PusherKey, PusherStore
from homeserver.rooms.store.events_store import StoredEvent

log = logging.getLogger("myelin.push")

BATCH = 50
FIRST_RETRY_S = 1.0
MAX_RETRY_S = 600.0
GIVE_UP_MS = 24 * 3600 * 1000
TIMEOUT_S = 15.0
MAX_CONCURRENT = 20

# The number a device shows as unread: notifications after the user's read receipts.
BadgeCounter = Callable[[str], Awaitable[int]]
# The room's name (or alias) and the sender's display name, for a notification.
RoomNamer = Callable[[str, str], Awaitable[dict[str, str]]]
EventsByNid = Callable[[Sequence[int]], Awaitable[dict[int, StoredEvent]]]


def names_from_invite_state(pdu: dict[str, Any], sender: str) -> dict[str, str]:
    """``room_name`` and ``sender_display_name`` from the stripped state an invite to
    a room this server is not in carries (``unsigned.invite_room_state``): the
    room's own state is on other servers, but the phone should still show its name."""
    unsigned = pdu.get("unsigned")
    given = unsigned.get("invite_room_state") if isinstance(unsigned, dict) else None
    state: dict[tuple[Any, Any], dict[str, Any]] = {}
    for e in given if isinstance(given, list) else []:
        if isinstance(e, dict) and isinstance(e.get("content"), dict):
            state[(e.get("type"), e.get("state_key"))] = e["content"]
    out: dict[str, str] = {}
    name = state.get(("m.room.name", ""), {}).get("name")
    alias = state.get(("m.room.canonical_alias", ""), {}).get("alias")
    if isinstance(name, str) and name:
        out["room_name"] = name
    elif isinstance(alias, str) and alias:
        out["room_name"] = alias
    display = state.get(("m.room.member", sender), {}).get("displayname")
    if isinstance(display, str):
        out["sender_display_name"] = display
    return out


class PushDelivery:
    def __init__(
        self,
        store: PusherStore,
        actions: PushActionStore,
        events: EventsByNid,
        clock: Clock,
        allow_local: bool,
        badge: BadgeCounter,
    ) -> None:
        self.store = store
        self.actions = actions
        self.events = events
        self.clock = clock
        self.allow_local = allow_local
        self.badge = badge
        self.room_name: RoomNamer | None = None
        # Email pushers, when the server has email configured (composition root).
        self.email: EmailPushes | None = None
        self.retry_s = FIRST_RETRY_S
        self.tasks: set[asyncio.Task[Any]] = set()
        self._running: dict[PusherKey, asyncio.Task[Any]] = {}
        self._again: set[PusherKey] = set()
        self._session: aiohttp.ClientSession | None = None
        self._limit = asyncio.Semaphore(MAX_CONCURRENT)

    # ------------------------------------------------------------ scheduling

    async def resume(self) -> None:
        """At start-up: every pusher catches up the rows past its cursor."""
        for key in await self.store.all_keys():
            self._drain(key)

    async def wake_users(self, user_ids: Sequence[str]) -> None:
        for key in await self.store.keys_for_users(user_ids):
            self._drain(key)

    def wake_pusher(self, key: PusherKey) -> None:
        self._drain(key)

    def _drain(self, key: PusherKey) -> None:
        if key in self._running:
            self._again.add(key)
            return
        task = asyncio.get_running_loop().create_task(self._worker(key))
        self._running[key] = task
        task.add_done_callback(lambda _t: self._running.pop(key, None))

    async def _worker(self, key: PusherKey) -> None:
        # Its log lines carry the worker's own id, not that of the request that woke it.
        request_id.set(new_request_id("push"))
        try:
            while True:
                self._again.discard(key)
                while await self._send_batch(key):
                    pass
                if key not in self._again:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pusher worker failed")

    async def _send_batch(self, key: PusherKey) -> bool:
        """Deliver up to BATCH rows past the pusher's cursor; False when none were left
        (or the pusher is gone)."""
        pusher = await self.store.get(key)
        if pusher is None:
            return False
        rows = await self.actions.notifying_after(
            pusher.user_id, pusher.last_stream_ordering, BATCH
        )
        if not rows:
            return False
        if pusher.kind == "email":
            return await self._send_email_batch(pusher, rows)
        events = await self.events([r.event_nid for r in rows])
        for row in rows:
            stored = events.get(row.event_nid)
            if stored is not None and not await self._deliver(pusher, row, stored):
                return False  # the pusher was removed (rejected) meanwhile
            if not await self.store.advance(key, row.stream_ordering):
                return False
        return True

    async def _send_email_batch(self, pusher: Pusher, rows: Sequence[PushActionRow]) -> bool:
        """An email pusher's digest of ``rows`` (see email_pushes.py); False if the pusher
        went away meanwhile."""
        email = self.email
        if email is not None:
            await email.wait_until_due(rows)
            if await self.store.get(pusher.key) is None:
                return False
            # What arrived while waiting goes in the same message.
            rows = await self.actions.notifying_after(
                pusher.user_id, pusher.last_stream_ordering, BATCH
            )
            if not rows:
                return False
            events = await self.events([r.event_nid for r in rows])
            unread = await email.unread(pusher.user_id, rows, events)

            async def mail() -> bool | None:
                try:
                    await email.send_digest(pusher, unread, self.room_name)
                except MatrixError:
                    return None  # the SMTP server refused or is down: try again later
                return True

            if unread and not await self._until_answered(pusher.key, mail):
                return False
        # Without email configured (any more), the rows are skipped, not kept forever.
        return await self.store.advance(pusher.key, rows[-1].stream_ordering)

    async def _deliver(self, pusher: Pusher, row: PushActionRow, stored: StoredEvent) -> bool:
        """Send one notification until the gateway answers (or a day of failures); False
        when the gateway rejected the pushkey and the pusher was removed."""
        note = await self._notification(pusher, row, stored)
        return await self._until_answered(
            pusher.key, lambda: self._post(pusher, {"notification": note})
        )

    async def _until_answered(
        self, key: PusherKey, attempt: Callable[[], Awaitable[bool | None]]
    ) -> bool:
        """Repeat ``attempt`` with back-off while it answers None (worth retrying); its
        answer otherwise. True after a day of failures (the notification is dropped),
        False when the pusher went away meanwhile."""
        delay = self.retry_s
        failing_since: int | None = None
        while True:
            outcome = await attempt()
            if outcome is not None:
                return outcome
            now = self.clock.now_ms()
            failing_since = failing_since or now
            if now - failing_since >= GIVE_UP_MS:
                log.info("giving up on a notification after a day of failures")
                return True
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)
            if await self.store.get(key) is None:
                return False

    # ------------------------------------------------------------ the request

    async def _notification(
        self, pusher: Pusher, row: PushActionRow, stored: StoredEvent
    ) -> dict[str, Any]:
        ev = stored.event
        tweaks = {
            a["set_tweak"]: a.get("value", True)
            for a in row.actions
            if isinstance(a, dict) and isinstance(a.get("set_tweak"), str)
        }
        full: dict[str, Any] = {
            "event_id": ev.event_id,
            # The pre-spec name of event_id, which older gateways (and Sytest) read;
            # Synapse sends both.
            "id": ev.event_id,
            "room_id": ev.room_id,
            "type": ev.type,
            "sender": ev.sender,
            # An encrypted event's content is its ciphertext: the gateway never gets more.
            "content": ev.content,
            "prio": "high" if (row.highlight or "sound" in tweaks) else "low",
            "counts": {"unread": await self.badge(row.user_id)},
        }
        if ev.type == "m.room.member" and ev.state_key is not None:
            full["membership"] = ev.content.get("membership")
            full["user_is_target"] = ev.state_key == row.user_id
        if self.room_name is not None:
            full.update(await self.room_name(ev.room_id, ev.sender))
        for key, value in names_from_invite_state(ev.pdu, ev.sender).items():
            full.setdefault(key, value)
        if pusher.data.get("format") == "event_id_only":
            full = {k: full[k] for k in ("event_id", "room_id", "prio", "counts")}
        full["devices"] = [device_json(pusher, tweaks)]
        return full

    async def push_counts(self, user_id: str) -> None:
        """A counts-only notification to each of the user's pushers (badge update)."""
        try:
            pushers = await self.store.for_user(user_id)
            if not pushers:
                return
            unread = await self.badge(user_id)
            for p in pushers:
                note = {
                    "counts": {"unread": unread},
                    "devices": [device_json(p, {})],
                    "prio": "low",
                }
                await self._post(p, {"notification": note})
        except Exception:
            log.exception("badge push failed")

    async def _post(self, p: Pusher, body: dict[str, Any]) -> bool | None:
        """One POST: True when answered, False when the pushkey was rejected (and the
        pusher removed), None when worth retrying (5xx, 429, unreachable)."""
        url = p.data.get("url")
        if not isinstance(url, str):
            return True
        if not self.allow_local and forbidden_literal_host(urlsplit(url).hostname or ""):
            log.info("push gateway address refused by policy; notification dropped")
            return True
        try:
            async with (
                self._limit,
                self._client().post(
                    url, json=body, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)
                ) as resp,
            ):
                if resp.status == 200:
                    answer = await resp.json(content_type=None)
                    rejected = answer.get("rejected") if isinstance(answer, dict) else None
                    if isinstance(rejected, list) and p.pushkey in rejected:
                        log.info("push gateway rejected a pushkey; pusher removed")
                        await self.store.delete(p.user_id, p.app_id, p.pushkey)
                        return False
                    return True
                if 400 <= resp.status < 500 and resp.status != 429:
                    log.info("push gateway refused a notification: HTTP %d", resp.status)
                    return True
                log.info("push gateway answered HTTP %d; will retry", resp.status)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.info("push gateway unreachable: %s", type(e).__name__)
        return None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = policy_session(self.allow_local)
        return self._session

    async def close(self) -> None:
        tasks = [*self._running.values(), *self.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


def device_json(p: Pusher, tweaks: dict[str, Any]) -> dict[str, Any]:
    """The ``devices`` entry of a notification for pusher ``p``."""
    data = {k: v for k, v in p.data.items() if k != "url"}
    return {
        "app_id": p.app_id,
        "pushkey": p.pushkey,
        "pushkey_ts": p.created_ts // 1000,
        "data": data,
        "tweaks": tweaks,
    }
