"""HTTP pushers: registration (``/pushers``) and delivery to push gateways (spec:
client-server "Push Notifications", Push Gateway API ``/_matrix/push/v1/notify``).

Design note
-----------
Delivery starts from the notification rows ``NotificationService`` writes for
an event (one per local user the event notifies): for each row the user's
pushers get one POST, built from the event, the room's name and the user's
unread count. A read receipt sends a counts-only notification, so the badge
on the user's phone goes down. Sending happens in tracked background tasks,
never in the room writer's path; a gateway that fails is retried a few times
with back-off, then the notification is dropped (logged). Pushes are
advisory: a restart loses the ones in flight, unlike the federation outbox.
A gateway that answers ``rejected`` with a pushkey gets that pusher deleted
(spec). Gateway URLs come from users, so gateways on this host or on private,
link-local or multicast networks are refused unless the server allows local
addresses (``federation.insecure_local``, tests only), as for federation: at
``/pushers/set`` (address literals, ``localhost``, names that resolve only
there) and again at delivery (literals here, resolved names in PolicyResolver).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from homeserver.clock import Clock
from homeserver.errors import MatrixError, bad_json, invalid_param
from homeserver.net import PolicyResolver, is_forbidden_address
from homeserver.push.actions_store import PushActionRow
from homeserver.push.pushers_store import Pusher, PusherStore
from homeserver.rooms.store.events_store import StoredEvent

log = logging.getLogger("myelin.push")

PUSH_PATH = "/_matrix/push/v1/notify"
KINDS = ("http",)
MAX_APP_ID = 64
MAX_PUSHKEY = 512
MAX_FIELD = 512
ATTEMPTS = 3
FIRST_RETRY_S = 1.0
TIMEOUT_S = 15.0
RESOLVE_TIMEOUT_S = 5.0
MAX_CONCURRENT = 20


# The number a device shows as unread: notifications after the user's read receipts.
BadgeCounter = Callable[[str], Awaitable[int]]
# The room's name (or alias) and the sender's display name, for a notification.
RoomNamer = Callable[[str, str], Awaitable[dict[str, str]]]


def _str(body: dict[str, Any], key: str, limit: int = MAX_FIELD) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise MatrixError(400, "M_MISSING_PARAM", f"'{key}' must be a string")
    if len(value) > limit:
        raise invalid_param(f"'{key}' is longer than {limit} characters")
    return value


def check_pusher_body(body: dict[str, Any]) -> tuple[str | None, str, str]:
    """(kind, app_id, pushkey) of a POST /pushers/set body; 400 when malformed."""
    kind = body.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise bad_json("'kind' must be a string or null")
    return kind, _str(body, "app_id", MAX_APP_ID), _str(body, "pushkey", MAX_PUSHKEY)


def _gateway_url(data: Any) -> str:
    if not isinstance(data, dict):
        raise MatrixError(400, "M_MISSING_PARAM", "'data' must be an object")
    url = data.get("url")
    if not isinstance(url, str):
        raise MatrixError(400, "M_MISSING_PARAM", "HTTP pushers need 'data.url'")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid_param("'data.url' must be an http(s) URL")
    if parts.path != PUSH_PATH:
        raise invalid_param(f"'data.url' must have the path {PUSH_PATH}")
    return url


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def forbidden_gateway_host(host: str) -> bool:
    """A gateway host that names this host or a private network without a look-up:
    an address literal of such a network, or ``localhost``. (aiohttp connects to
    literals without asking the resolver, so the address policy must see them here.)"""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    return _is_ip_literal(host) and is_forbidden_address(host)


async def resolves_only_to_forbidden(host: str) -> bool:
    """True when ``host`` resolves, and only to forbidden addresses. A name that does
    not resolve now is let through: delivery checks the addresses again (PolicyResolver)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError, UnicodeError):
        return False
    addresses = [str(info[4][0]) for info in infos]
    return bool(addresses) and all(is_forbidden_address(a) for a in addresses)


class PusherService:
    def __init__(
        self, store: PusherStore, clock: Clock, allow_local: bool, badge: BadgeCounter
    ) -> None:
        self.store = store
        self.clock = clock
        self.allow_local = allow_local
        self.badge = badge
        self.tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._limit = asyncio.Semaphore(MAX_CONCURRENT)
        self.room_name: RoomNamer | None = None

    # ------------------------------------------------------------ registration

    async def set_pusher(self, user_id: str, device_id: str, body: dict[str, Any]) -> None:
        """POST /pushers/set: add, update or (``kind`` null) delete a pusher."""
        kind, app_id, pushkey = check_pusher_body(body)
        if kind is None:
            await self.store.delete(user_id, app_id, pushkey)
            return
        if kind not in KINDS:
            raise invalid_param(f"Unsupported pusher kind {kind!r}")
        data = body.get("data")
        url = _gateway_url(data)
        assert isinstance(data, dict)
        if not self.allow_local:
            host = urlsplit(url).hostname or ""
            if forbidden_gateway_host(host) or await resolves_only_to_forbidden(host):
                raise invalid_param(
                    "'data.url' must not point at a loopback, private, link-local"
                    " or multicast address"
                )
        profile_tag = body.get("profile_tag")
        if profile_tag is not None and not isinstance(profile_tag, str):
            raise bad_json("'profile_tag' must be a string")
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise bad_json("'append' must be a boolean")
        pusher = Pusher(
            user_id=user_id,
            device_id=device_id,
            kind=kind,
            app_id=app_id,
            pushkey=pushkey,
            app_display_name=_str(body, "app_display_name"),
            device_display_name=_str(body, "device_display_name"),
            profile_tag=profile_tag,
            lang=_str(body, "lang"),
            data=data,
            created_ts=self.clock.now_ms(),
        )
        await self.store.put(pusher, replace_others=not append)

    async def pushers(self, user_id: str) -> list[dict[str, Any]]:
        return [p.to_json() for p in await self.store.for_user(user_id)]

    async def on_devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        await self.store.delete_for_devices(user_id, device_ids)

    async def on_deactivated(self, user_id: str) -> None:
        await self.store.delete_user(user_id)

    # ---------------------------------------------------------------- delivery

    def on_push_rows(self, rows: Sequence[PushActionRow], stored: StoredEvent) -> None:
        """NotificationService hook, after the rows committed: one push per notifying
        row, in the background."""
        for row in rows:
            if row.notify:
                self._spawn(self._push_event(row, stored))

    def on_read(self, user_id: str) -> None:
        """A local user's read receipt moved: update the badge on their devices."""
        self._spawn(self._push_counts(user_id))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _push_event(self, row: PushActionRow, stored: StoredEvent) -> None:
        try:
            pushers = await self.store.for_user(row.user_id)
            if not pushers:
                return
            ev = stored.event
            tweaks = {
                a["set_tweak"]: a.get("value", True)
                for a in row.actions
                if isinstance(a, dict) and isinstance(a.get("set_tweak"), str)
            }
            unread = await self.badge(row.user_id)
            full: dict[str, Any] = {
                "event_id": ev.event_id,
                # The pre-spec name of event_id, which older gateways (and Sytest) read;
                # Synapse sends both.
                "id": ev.event_id,
                "room_id": ev.room_id,
                "type": ev.type,
                "sender": ev.sender,
                "content": ev.content,
                "prio": "high" if (row.highlight or "sound" in tweaks) else "low",
                "counts": {"unread": unread},
            }
            if ev.type == "m.room.member" and ev.state_key is not None:
                full["membership"] = ev.content.get("membership")
                full["user_is_target"] = ev.state_key == row.user_id
            if self.room_name is not None:
                full.update(await self.room_name(ev.room_id, ev.sender))
            for p in pushers:
                note = dict(full)
                if p.data.get("format") == "event_id_only":
                    note = {k: full[k] for k in ("event_id", "room_id", "prio", "counts")}
                note["devices"] = [_device(p, tweaks)]
                await self._send(p, {"notification": note})
        except Exception:
            log.exception("push for an event failed")

    async def _push_counts(self, user_id: str) -> None:
        try:
            pushers = await self.store.for_user(user_id)
            if not pushers:
                return
            unread = await self.badge(user_id)
            for p in pushers:
                note = {"counts": {"unread": unread}, "devices": [_device(p, {})], "prio": "low"}
                await self._send(p, {"notification": note})
        except Exception:
            log.exception("badge push failed")

    async def _send(self, p: Pusher, body: dict[str, Any]) -> None:
        url = p.data.get("url")
        if not isinstance(url, str):
            return
        if not self.allow_local and forbidden_gateway_host(urlsplit(url).hostname or ""):
            log.info("push gateway address refused by policy; notification dropped")
            return
        delay = FIRST_RETRY_S
        for attempt in range(ATTEMPTS):
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
                        return
                    if 400 <= resp.status < 500 and resp.status != 429:
                        log.info("push gateway refused a notification: HTTP %d", resp.status)
                        return
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                log.info("push gateway unreachable (attempt %d): %s", attempt + 1, type(e).__name__)
            await asyncio.sleep(delay)
            delay *= 2
        log.info("giving up on a push notification after %d attempts", ATTEMPTS)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=PolicyResolver(self.allow_local),
                ssl=False if self.allow_local else True,
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


def _device(p: Pusher, tweaks: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in p.data.items() if k != "url"}
    return {
        "app_id": p.app_id,
        "pushkey": p.pushkey,
        "pushkey_ts": p.created_ts // 1000,
        "data": data,
        "tweaks": tweaks,
    }
