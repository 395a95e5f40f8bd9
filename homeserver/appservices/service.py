"""The configured application services: who they are (``as_token``), what they
may do (namespaces), and what the server asks of them (queries, ping).

Authentication (spec "Identity assertion"): a request carrying a service's
``as_token`` acts as the service's sender, or, with ``user_id=``, as any
registered user in its user namespace; ``device_id=`` (MSC3202/MSC4326, also
``org.matrix.msc3202.device_id``) picks one of that user's existing devices.
Tokens are compared in constant time. Transactions to the services are sent
by one ``ServiceSender`` per service with a URL (sender.py).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from homeserver.accounts.requester import Requester
from homeserver.accounts.service import AccountService
from homeserver.appservices.registration import AppService
from homeserver.errors import MatrixError, forbidden
from homeserver.events.identifiers import is_valid_localpart
from homeserver.streams.signal import EVENTS

if TYPE_CHECKING:  # senders exist only for configured services (wiring.py)
    from homeserver.appservices.sender import ServiceSender

log = logging.getLogger("myelin.appservices")

QUERY_TIMEOUT_S = 10.0
PING_TIMEOUT_S = 10.0
AS_REGISTRATION = "m.login.application_service"


def exclusive_error(what: str) -> MatrixError:
    return MatrixError(400, "M_EXCLUSIVE", f"This {what} is reserved by an application service")


class AppServices:
    def __init__(self, services: list[AppService], accounts: AccountService) -> None:
        self.services = services
        self.account_service = accounts
        self.accounts = accounts.store
        self.server_name = accounts.server_name
        self.senders: dict[str, ServiceSender] = {}
        self.tasks: list[asyncio.Task[Any]] = []
        self._session: aiohttp.ClientSession | None = None
        # Set on a worker process: its ephemeral events go to the main process, whose
        # senders run (homeserver/cross_process.py).
        self.forward_ephemeral: Callable[[dict[str, Any]], None] | None = None

    # ---------------------------------------------------------------- lookup

    def by_as_token(self, token: str) -> AppService | None:
        found = None
        for s in self.services:  # every one compared, in constant time each
            if hmac.compare_digest(s.as_token.encode(), token.encode()):
                found = s
        return found

    def by_id(self, as_id: str) -> AppService | None:
        return next((s for s in self.services if s.id == as_id), None)

    def interested_in_user(self, user_id: str) -> list[AppService]:
        return [s for s in self.services if s.is_interested_in_user(user_id)]

    # ------------------------------------------------------------ namespaces

    def check_user_not_exclusive(self, user_id: str, service: AppService | None = None) -> None:
        """``M_EXCLUSIVE`` when another service (or any, for ``service`` None) holds
        ``user_id`` exclusively."""
        for s in self.services:
            if s is not service and s.is_exclusive_user(user_id):
                raise exclusive_error("user ID")

    def check_alias_allowed(self, user_id: str, alias: str) -> None:
        """Aliases in a service's exclusive namespace are for that service's users only."""
        for s in self.services:
            if s.is_exclusive_alias(alias) and not s.is_interested_in_user(user_id):
                raise exclusive_error("room alias")

    def check_registration(self, service: AppService, user_id: str) -> None:
        if not service.is_interested_in_user(user_id):
            raise MatrixError(
                400, "M_EXCLUSIVE", "User ID is not in this application service's namespace"
            )
        self.check_user_not_exclusive(user_id, service)

    async def register_user(self, service: AppService, username: str) -> str:
        """Create a user of ``service``'s namespace; its user id."""
        localpart = username.lower()
        if localpart.startswith("@"):
            localpart = localpart[1:].split(":", 1)[0]
        if not localpart or not is_valid_localpart(localpart, strict=False):
            raise MatrixError(400, "M_INVALID_USERNAME", "Invalid user localpart")
        user_id = f"@{localpart}:{self.server_name}"
        self.check_registration(service, user_id)
        await self.account_service.create_account(user_id, None)
        return user_id

    # -------------------------------------------------------- authentication

    async def requester(self, token: str, request: web.Request) -> Requester | None:
        """The identity an ``as_token`` request asserts, or None for other tokens."""
        service = self.by_as_token(token)
        if service is None:
            return None
        user_id = request.query.get("user_id") or service.sender
        if not service.is_interested_in_user(user_id):
            raise forbidden("Application service cannot masquerade as this user")
        user = await self.accounts.get_user(user_id)
        if user is None or user.deactivated:
            raise forbidden("Application service has not registered this user")
        device_id = request.query.get("device_id") or request.query.get(
            "org.matrix.msc3202.device_id"
        )
        if device_id is not None:
            if await self.accounts.get_device(user.user_nid, device_id) is None:
                raise MatrixError(
                    400,
                    "M_UNKNOWN_DEVICE",
                    "Application service trying to use a device that doesn't exist",
                )
        return Requester(
            user_id=user.user_id,
            user_nid=user.user_nid,
            device_id=device_id or "",
            is_guest=False,
            is_admin=user.is_admin,
            token_hash="",
            app_service_id=service.id,
        )

    async def ensure_senders_registered(self, now_ms: int) -> None:
        """Each service's sender user exists from the start (it is its identity)."""
        for s in self.services:
            if not await self.accounts.user_exists(s.sender):
                try:
                    await self.accounts.create_user(
                        s.sender,
                        None,
                        is_admin=False,
                        is_guest=False,
                        displayname=s.sender[1:].split(":", 1)[0],
                        now=now_ms,
                    )
                except Exception:
                    if not await self.accounts.user_exists(s.sender):
                        raise

    # ------------------------------------------------------------- senders

    def add_sender(self, sender: ServiceSender) -> None:
        self.senders[sender.service.id] = sender

    def start(self) -> None:
        for sender in self.senders.values():
            self.tasks.append(
                asyncio.create_task(sender.run(), name=f"appservice-{sender.service.id}")
            )

    def changed(self, stream: str, position: int, users: Iterable[str]) -> None:
        """``ChangeSignal``: new events wake every sender (each reads from its cursor)."""
        if stream == EVENTS:
            for sender in self.senders.values():
                sender.wake.set()

    def woken_by_other_process(self, user_ids: Iterable[str] | None) -> None:
        """Another process (a worker) changed something for these users (None: anyone):
        new events to look for, and maybe to-device messages for a service's devices."""
        users = None if user_ids is None else list(user_ids)
        for sender in self.senders.values():
            s = sender.service
            if s.receive_ephemeral and (
                users is None or any(s.is_interested_in_user(u) for u in users)
            ):
                sender.rescan_to_device = True
            sender.wake.set()

    def queue_ephemeral(self, edu: dict[str, Any]) -> None:
        if self.forward_ephemeral is not None:
            # Typing is applied by every process, the main one too: it queues its own.
            if edu.get("type") != "m.typing":
                self.forward_ephemeral(edu)
            return
        for sender in self.senders.values():
            if sender.service.receive_ephemeral:
                sender.queue_ephemeral(edu)

    async def on_to_device(self, user_id: str, device_ids: list[str]) -> None:
        """ToDeviceService hook: messages were queued for local devices."""
        for sender in self.senders.values():
            s = sender.service
            if s.receive_ephemeral and s.is_interested_in_user(user_id):
                sender.queue_to_device(user_id, device_ids)

    def session(self) -> aiohttp.ClientSession:
        """Service URLs are the operator's (often loopback): no address policy here."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # -------------------------------------------------------------- queries

    async def query(
        self, service: AppService, path: str, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """GET ``path`` on the service: (status, JSON or None); status 0 when unreachable."""
        assert service.url is not None
        headers = {"Authorization": f"Bearer {service.hs_token}"}
        try:
            async with self.session().get(
                service.url + path,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=QUERY_TIMEOUT_S),
            ) as resp:
                body = await resp.json(content_type=None) if resp.status == 200 else None
                return resp.status, body
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.info("application service %s query failed: %s", service.id, type(e).__name__)
            return 0, None

    async def query_user(self, user_id: str) -> bool:
        """Ask the services whose namespace holds ``user_id`` to create it (spec: "Query
        User"); True when one answered 200."""
        for s in self.services:
            if s.url is not None and s.is_interested_in_user(user_id):
                status, _ = await self.query(s, f"/_matrix/app/v1/users/{quote(user_id, safe='')}")
                if status == 200:
                    return True
        return False

    async def query_alias(self, alias: str) -> bool:
        """Ask the services whose namespace holds ``alias`` to create its room (spec:
        "Query Room Alias"); True when one answered 200."""
        for s in self.services:
            if s.url is not None and s.is_interested_in_alias(alias):
                status, _ = await self.query(s, f"/_matrix/app/v1/rooms/{quote(alias, safe='')}")
                if status == 200:
                    return True
        return False

    async def ping(self, requester: Requester, as_id: str, body: dict[str, Any]) -> int:
        """POST /_matrix/app/v1/ping on the caller's own service; the round trip in ms."""
        service = self.by_id(as_id)
        if service is None or requester.app_service_id != as_id:
            raise forbidden("Provided access token is not for this application service")
        if service.url is None:
            raise MatrixError(400, "M_URL_NOT_SET", "Application service has no URL")
        txn_id = body.get("transaction_id")
        payload = {"transaction_id": txn_id} if isinstance(txn_id, str) else {}
        headers = {"Authorization": f"Bearer {service.hs_token}"}
        start = time.monotonic()
        try:
            async with self.session().post(
                service.url + "/_matrix/app/v1/ping",
                json=payload,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=PING_TIMEOUT_S),
            ) as resp:
                text = await resp.text()
                if resp.status != 200:
                    bad = MatrixError(502, "M_BAD_STATUS", "Application service returned an error")
                    bad.extra = {"status": resp.status, "body": text[:1000]}
                    raise bad
        except TimeoutError:
            raise MatrixError(
                504, "M_CONNECTION_TIMEOUT", "Application service timed out"
            ) from None
        except aiohttp.ClientError:
            raise MatrixError(
                502, "M_CONNECTION_FAILED", "Could not connect to the application service"
            ) from None
        return int((time.monotonic() - start) * 1000)
