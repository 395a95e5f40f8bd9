"""A real application service for the tests: mautrix's ``AppService`` (the framework the
mautrix bridges are built on) serving on 127.0.0.1, recording what the homeserver sends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from mautrix.appservice import AppService
from mautrix.appservice.state_store import ASStateStore
from mautrix.client.state_store import MemoryStateStore
from mautrix.types import Event, RoomAlias, UserID

WAIT_S = 30.0
AS_TOKEN = "as-token-for-tests-0123456789"
HS_TOKEN = "hs-token-for-tests-9876543210"


# What the test bridge answers for its protocol (spec AS API "Protocol").
CHAT_PROTOCOL: dict[str, Any] = {
    "user_fields": ["nick"],
    "location_fields": ["channel"],
    "icon": "mxc://localhost/chaticon",
    "field_types": {
        "nick": {"regexp": "[a-z]+", "placeholder": "alice"},
        "channel": {"regexp": "[a-z]+", "placeholder": "lobby"},
    },
    "instances": [
        {
            "network_id": "chatnet",
            "desc": "The chat network",
            "fields": {},
        }
    ],
}


class MemoryASStateStore(MemoryStateStore, ASStateStore):  # type: ignore[misc]
    """mautrix's default store writes mx-state.json into the working directory."""

    def __init__(self) -> None:
        MemoryStateStore.__init__(self)
        ASStateStore.__init__(self)


def registration(port: int, **extra: Any) -> dict[str, Any]:
    """A registration as a mautrix bridge writes it."""
    return {
        "id": "testbridge",
        "url": f"http://127.0.0.1:{port}",
        "as_token": AS_TOKEN,
        "hs_token": HS_TOKEN,
        "sender_localpart": "bridgebot",
        "namespaces": {
            "users": [{"exclusive": True, "regex": "@bridge_.*:localhost"}],
            "aliases": [{"exclusive": True, "regex": "#bridge_.*:localhost"}],
            "rooms": [],
        },
        "rate_limited": False,
        "protocols": ["chat"],
        "de.sorunome.msc2409.push_ephemeral": True,
        "receive_ephemeral": True,
        **extra,
    }


def write_registration(folder: Path, info: dict[str, Any]) -> str:
    path = folder / "registration.yaml"
    path.write_text(yaml.safe_dump(info), encoding="utf-8")
    return str(path)


class Bridge:
    """One run of the service; ``events`` gets every event of every transaction in
    order, ``txn_ids`` every transaction id it saw (as mautrix counts them)."""

    def __init__(self, hs_url: str, port: int, domain: str = "localhost") -> None:
        self.port = port
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.ephemeral: asyncio.Queue[Event] = asyncio.Queue()
        self.txn_ids: list[str] = []
        # Transactions answered 500 on purpose (``fail_next`` of them): (txn id, body).
        self.fail_next = 0
        self.failed: list[tuple[str, Any]] = []
        # Every transaction answered 200: (txn id, body).
        self.accepted: list[tuple[str, Any]] = []
        # Every request from the homeserver: (method, path, Authorization header).
        self.requests: list[tuple[str, str, str | None]] = []
        self.pings: list[str | None] = []
        self.user_queries: list[str] = []
        self.alias_queries: list[str] = []
        self.appservice = AppService(
            server=hs_url,
            domain=domain,
            as_token=AS_TOKEN,
            hs_token=HS_TOKEN,
            bot_localpart="bridgebot",
            id="testbridge",
            state_store=MemoryASStateStore(),
            query_user=self._query_user,
            query_alias=self._query_alias,
            ephemeral_events=True,
        )
        # In transaction order (mautrix's default hands each event to a task of its own).
        self.appservice.synchronous_handlers = True
        self.appservice.matrix_event_handler(self._on_event)
        self.appservice.app.middlewares.append(self._record)
        # Third-party look-ups, which mautrix leaves to the bridge itself.
        base = "/_matrix/app/v1/thirdparty"
        self.appservice.app.router.add_get(base + "/protocol/{protocol}", self._protocol)
        self.appservice.app.router.add_get(base + "/location/{protocol}", self._locations)
        self.appservice.app.router.add_get(base + "/user/{protocol}", self._users)
        self.appservice.app.router.add_get(base + "/location", self._locations)
        self.appservice.app.router.add_get(base + "/user", self._users)
        self.thirdparty_queries: list[dict[str, str]] = []
        # Set by a test: what the queries do (create the user or room) before answering.
        self.on_user_query: Any = None
        self.on_alias_query: Any = None

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, request.headers.get("Authorization")))
        if request.method == "PUT" and "/transactions/" in request.path:
            txn_id = request.path.rsplit("/", 1)[1]
            self.txn_ids.append(txn_id)
            body = await request.json()
            if self.fail_next > 0:
                self.fail_next -= 1
                self.failed.append((txn_id, body))
                return web.json_response({"errcode": "M_UNKNOWN"}, status=500)
            self.accepted.append((txn_id, body))
        if request.path.endswith("/ping"):
            body = await request.json()
            self.pings.append(body.get("transaction_id"))
        response: web.StreamResponse = await handler(request)
        return response

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {HS_TOKEN}"

    async def _protocol(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        if request.match_info["protocol"] != "chat":
            return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
        return web.json_response(CHAT_PROTOCOL)

    async def _locations(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        self.thirdparty_queries.append(dict(request.query))
        channel = request.query.get("channel", "lobby")
        alias = f"#bridge_{channel}:localhost"
        return web.json_response(
            [{"alias": alias, "protocol": "chat", "fields": {"channel": channel}}]
        )

    async def _users(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        self.thirdparty_queries.append(dict(request.query))
        nick = request.query.get("nick", "someone")
        user_id = f"@bridge_{nick}:localhost"
        return web.json_response(
            [{"userid": user_id, "protocol": "chat", "fields": {"nick": nick}}]
        )

    async def _on_event(self, event: Event) -> None:
        if getattr(event, "event_id", None):
            await self.events.put(event)
        else:
            await self.ephemeral.put(event)

    async def _query_user(self, user_id: UserID) -> dict[str, Any] | None:
        self.user_queries.append(user_id)
        if self.on_user_query is None:
            return None
        await self.on_user_query(user_id)
        return {"created": True}  # mautrix answers 404 for an empty (falsy) dict

    async def _query_alias(self, alias: RoomAlias) -> dict[str, Any] | None:
        self.alias_queries.append(alias)
        if self.on_alias_query is None:
            return None
        await self.on_alias_query(alias)
        return {"created": True}

    async def start(self) -> None:
        await self.appservice.start(host="127.0.0.1", port=self.port)

    async def stop(self) -> None:
        await self.appservice.stop()

    async def ephemeral_next(self) -> Event:
        return await asyncio.wait_for(self.ephemeral.get(), WAIT_S)

    async def next_event(self, match: Any = None) -> Event:
        """The next event (that ``match`` accepts), waiting up to WAIT_S."""
        while True:
            event = await asyncio.wait_for(self.events.get(), WAIT_S)
            if match is None or match(event):
                return event
