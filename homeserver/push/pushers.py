"""HTTP pushers: registration (``/pushers``) and the hooks that start delivery
(spec: client-server "Push Notifications"; delivery itself: delivery.py).

A gateway that answers ``rejected`` with a pushkey gets that pusher deleted
(spec). Gateway URLs come from users, so gateways on this host or on private,
link-local or multicast networks are refused unless the server allows local
addresses (``federation.insecure_local``, tests only), as for federation: at
``/pushers/set`` (address literals, ``localhost``, names that resolve only
there, answered 400 M_INVALID_PARAM) and again at delivery (literals in
delivery.py, every resolved address in ``PolicyResolver``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from homeserver.clock import Clock
from homeserver.errors import MatrixError, bad_json, invalid_param
from homeserver.net import forbidden_literal_host, resolves_only_to_forbidden
from homeserver.push.delivery import PushDelivery
from homeserver.push.notifications import EventPush
from homeserver.push.pushers_store import Pusher, PusherStore
from homeserver.rooms.store.events_store import StoredEvent

PUSH_PATH = "/_matrix/push/v1/notify"
KINDS = ("http",)
MAX_APP_ID = 64
MAX_PUSHKEY = 512
MAX_FIELD = 512


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


# The stream's current position: where a new pusher's cursor starts.
Position = Callable[[], Awaitable[int]]


class PusherService:
    def __init__(
        self, store: PusherStore, clock: Clock, delivery: PushDelivery, position: Position
    ) -> None:
        self.store = store
        self.clock = clock
        self.delivery = delivery
        self.position = position

    # ------------------------------------------------------------ registration

    async def set_pusher(self, user_id: str, device_id: str, body: dict[str, Any]) -> None:
        """POST /pushers/set: add, update or (``kind`` null) delete a pusher."""
        kind, app_id, pushkey = check_pusher_body(body)
        if kind is None:
            await self.store.delete(user_id, app_id, pushkey)
            return
        email = self.delivery.email
        if kind == "email" and email is not None:
            await email.check_registration(user_id, app_id, pushkey)
            data = body.get("data", {})
            if not isinstance(data, dict):
                raise bad_json("'data' must be an object")
        elif kind in KINDS:
            data = body.get("data")
            url = _gateway_url(data)
            assert isinstance(data, dict)
            if not self.delivery.allow_local:
                host = urlsplit(url).hostname or ""
                if forbidden_literal_host(host) or await resolves_only_to_forbidden(host):
                    raise invalid_param(
                        "'data.url' must not point at a loopback, private, link-local"
                        " or multicast address"
                    )
        else:
            raise invalid_param(f"Unsupported pusher kind {kind!r}")
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
            last_stream_ordering=await self.position(),
        )
        await self.store.put(pusher, replace_others=not append)

    async def pushers(self, user_id: str) -> list[dict[str, Any]]:
        return [p.to_json() for p in await self.store.for_user(user_id)]

    async def on_devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        await self.store.delete_for_devices(user_id, device_ids)

    async def on_deactivated(self, user_id: str) -> None:
        await self.store.delete_user(user_id)

    # ---------------------------------------------------------------- delivery

    def on_push_rows(self, push: EventPush, stored: StoredEvent) -> None:
        """NotificationService hook, after the rows committed: wake the pushers of the
        users the event notifies (they send from their cursors, in the background).
        Only users that have a pusher are looked at, so a message that notifies a big
        room where none has one costs no statement."""
        known = self.store.known_users()
        if known is not None:
            users = push.notified_among(known)
            if users:
                self._spawn(self.delivery.wake_users(users))
            return
        self._spawn(self._wake(push))

    async def _wake(self, push: EventPush) -> None:
        users = push.notified_among(await self.store.users())
        if users:
            await self.delivery.wake_users(users)

    def on_read(self, user_id: str) -> None:
        """A local user's read receipt moved: update the badge on their devices."""
        self._spawn(self.delivery.push_counts(user_id))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.delivery.tasks.add(task)
        task.add_done_callback(self.delivery.tasks.discard)

    async def close(self) -> None:
        await self.delivery.close()
