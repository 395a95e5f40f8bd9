"""A scripted remote homeserver for tests: real HTTPS, its own key, X-Matrix requests.

Why: tests of hostile or slow peers need a remote server whose every answer
the test controls, which a second Myelin cannot give. ``ScriptedPeer``
listens on 127.0.0.1 with a self-signed certificate (its server name is
``127.0.0.1:PORT``), publishes its ed25519 key at ``/_matrix/key/v2/server``,
answers ``/send`` by recording the transaction, and dispatches any other
inbound request to a handler the test registers with ``route``; unknown
paths get ``404 M_UNRECOGNIZED``. Outbound it signs requests with X-Matrix
(``request``, ``send_transaction``, ``send_raw``), builds correctly hashed
and signed events with ``homeserver.events`` (``build``), and joins rooms
on a Myelin server through make_join/send_join (``join``), keeping enough
of the room (state, forward extremity, depth) to build further events.

Inbound requests to the peer are not authenticated: it is a test double on
loopback, and the tests look at what it received.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web
from yarl import URL

from federation.auth import sign_request
from homeserver.events.builder import build_event
from homeserver.events.canonical import encode_canonical_json
from homeserver.events.keys import SigningKey, generate_signing_key, verify_key_base64
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.events.signing import compute_event_id, sign_json
from homeserver.rooms.auth import auth_types_for_event
from homeserver.tls import server_ssl_context, write_self_signed
from tests.conftest import free_port

# (request, path parameters, parsed JSON body or None) -> response
Handler = Callable[[web.Request, dict[str, str], Any], Awaitable[web.StreamResponse]]

_TEMPLATE_FIELDS = (
    "type",
    "room_id",
    "state_key",
    "content",
    "prev_events",
    "auth_events",
    "depth",
)


def _pattern(template: str) -> re.Pattern[str]:
    """``/a/{name}/b`` -> a regex with one named group per ``{name}`` (one path segment)."""
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out.append(re.escape(template[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>[^/]+)")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("^" + "".join(out) + "$")


def matrix_error(status: int, errcode: str, error: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": error}, status=status)


@dataclass
class Reply:
    """A Myelin server's answer to one of the peer's requests."""

    status: int
    body: Any


@dataclass
class PeerRoom:
    """What the peer knows of a room it joined: enough to build its next events."""

    room_id: str
    version: RoomVersion
    state: dict[tuple[str, str], Event]
    events: dict[str, Event] = field(default_factory=dict)
    head: list[str] = field(default_factory=list)
    depth: int = 0

    def add(self, event: Event, *, advance: bool = True) -> None:
        """Remember an event; ``advance``: it becomes the forward extremity."""
        self.events[event.event_id] = event
        if event.is_state():
            self.state[event.state_tuple()] = event
        if advance:
            self.head = [event.event_id]
            self.depth = max(self.depth, int(event.pdu.get("depth", 0)))


@dataclass
class InboundRequest:
    method: str
    path: str
    body: Any


class ScriptedPeer:
    """A remote homeserver on 127.0.0.1 whose behaviour the test scripts."""

    def __init__(self, data_dir: Path, key_version: str | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.server_name = f"127.0.0.1:{self.port}"
        self.signing_key: SigningKey = generate_signing_key(key_version or secrets.token_hex(3))
        # The key response's valid_until_ts; None: an hour from now on each request.
        self.key_valid_until_ts: int | None = None
        self.old_verify_keys: dict[str, dict[str, Any]] = {}
        self.received: list[InboundRequest] = []
        self.transactions: list[dict[str, Any]] = []
        self.rooms: dict[str, PeerRoom] = {}
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._txn_counter = 0
        self.route("GET", "/_matrix/key/v2/server", self._key_server)
        self.route("PUT", "/_matrix/federation/v1/send/{txnId}", self._send)
        self.route("GET", "/_matrix/federation/v1/version", self._version)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> ScriptedPeer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cert, key = self.data_dir / "peer.crt", self.data_dir / "peer.key"
        write_self_signed(self.server_name, cert, key)
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            "127.0.0.1",
            self.port,
            ssl_context=server_ssl_context(str(cert), str(key)),
        )
        await site.start()
        self._session = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ScriptedPeer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- inbound -----------------------------------------------------------------------

    def route(self, method: str, template: str, handler: Handler) -> None:
        """Answer ``method template`` (``{name}`` matches one path segment) with ``handler``;
        a later registration for the same request wins."""
        self._routes.insert(0, (method.upper(), _pattern(template), handler))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = await request.json()
            except ValueError:
                body = None
        self.received.append(InboundRequest(request.method, request.path, body))
        for method, pattern, handler in self._routes:
            m = pattern.match(request.path)
            if m is not None and method == request.method:
                return await handler(request, m.groupdict(), body)
        return matrix_error(404, "M_UNRECOGNIZED", "Unrecognized request")

    def key_response(self, valid_until_ts: int | None = None) -> dict[str, Any]:
        """The peer's self-signed ``/_matrix/key/v2/server`` object."""
        until = valid_until_ts
        if until is None:
            until = self.key_valid_until_ts
        if until is None:
            until = int(time.time() * 1000) + 3600 * 1000
        body = {
            "server_name": self.server_name,
            "verify_keys": {self.signing_key.key_id: {"key": verify_key_base64(self.signing_key)}},
            "old_verify_keys": self.old_verify_keys,
            "valid_until_ts": until,
        }
        return sign_json(body, self.server_name, self.signing_key)

    async def _key_server(
        self, request: web.Request, params: dict[str, str], body: Any
    ) -> web.Response:
        return web.json_response(self.key_response())

    async def _version(
        self, request: web.Request, params: dict[str, str], body: Any
    ) -> web.Response:
        return web.json_response({"server": {"name": "ScriptedPeer", "version": "0"}})

    async def _send(self, request: web.Request, params: dict[str, str], body: Any) -> web.Response:
        if isinstance(body, dict):
            self.transactions.append(body)
            for pdu in body.get("pdus", []):
                self._learn(pdu)
        return web.json_response({"pdus": {}})

    def _learn(self, pdu: Any) -> None:
        """A PDU the server sent us in a room we joined moves our view of the room on."""
        if not isinstance(pdu, dict):
            return
        room = self.rooms.get(str(pdu.get("room_id")))
        if room is None:
            return
        event = Event(compute_event_id(pdu, room.version), pdu, room.version)
        room.add(event)

    def pdus_received(self, room_id: str | None = None) -> list[dict[str, Any]]:
        """Every PDU the peer was sent, in arrival order (of ``room_id`` if given)."""
        return [
            p
            for t in self.transactions
            for p in t.get("pdus", [])
            if isinstance(p, dict) and (room_id is None or p.get("room_id") == room_id)
        ]

    # --- outbound ----------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "start the peer first"
        return self._session

    def authorization(
        self,
        destination: str,
        method: str,
        uri: str,
        content: Any = None,
        key: SigningKey | None = None,
    ) -> str:
        return sign_request(
            self.server_name, key or self.signing_key, destination, method, uri, content
        )

    async def request(
        self,
        destination: str,
        method: str,
        path: str,
        content: Any = None,
        *,
        query: dict[str, str | list[str]] | None = None,
        key: SigningKey | None = None,
        timeout_s: float = 60.0,
    ) -> Reply:
        """One X-Matrix-signed request to ``destination`` (``127.0.0.1:PORT``)."""
        uri = path
        if query:
            uri += "?" + urlencode(query, doseq=True)
        auth = self.authorization(destination, method, uri, content, key)
        raw = None if content is None else encode_canonical_json(content)
        return await self._raw(destination, method, uri, raw, auth, timeout_s)

    async def send_raw(
        self,
        destination: str,
        method: str,
        uri: str,
        raw: bytes,
        signed_content: Any,
        *,
        timeout_s: float = 60.0,
    ) -> Reply:
        """Send ``raw`` bytes as the body, with an X-Matrix header signed over
        ``signed_content``: for bodies no JSON encoder would produce."""
        auth = self.authorization(destination, method, uri, signed_content)
        return await self._raw(destination, method, uri, raw, auth, timeout_s)

    async def _raw(
        self,
        destination: str,
        method: str,
        uri: str,
        raw: bytes | None,
        auth: str,
        timeout_s: float,
    ) -> Reply:
        url = URL(f"https://{destination}{uri}", encoded=True)
        headers = {"Authorization": auth}
        if raw is not None:
            headers["Content-Type"] = "application/json"
        async with self.session.request(
            method,
            url,
            data=raw,
            headers=headers,
            ssl=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            text = await resp.read()
            try:
                body: Any = await resp.json(content_type=None) if text else None
            except ValueError:
                body = text.decode("utf-8", "replace")
            return Reply(resp.status, body)

    def next_txn_id(self) -> str:
        self._txn_counter += 1
        return f"peer-{self._txn_counter}-{secrets.token_hex(3)}"

    def transaction(
        self, pdus: list[Any] | None = None, edus: list[Any] | None = None
    ) -> dict[str, Any]:
        return {
            "origin": self.server_name,
            "origin_server_ts": int(time.time() * 1000),
            "pdus": pdus or [],
            "edus": edus or [],
        }

    async def send_transaction(
        self,
        destination: str,
        pdus: list[Any] | None = None,
        edus: list[Any] | None = None,
        *,
        txn_id: str | None = None,
        timeout_s: float = 60.0,
    ) -> Reply:
        """``PUT /_matrix/federation/v1/send/{txnId}`` with these PDUs and EDUs."""
        path = "/_matrix/federation/v1/send/" + quote(txn_id or self.next_txn_id(), safe="")
        return await self.request(
            destination, "PUT", path, self.transaction(pdus, edus), timeout_s=timeout_s
        )

    # --- events ------------------------------------------------------------------------

    def user(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def build(
        self, version: RoomVersion, fields: dict[str, Any], key: SigningKey | None = None
    ) -> Event:
        """A hashed, signed event with exactly ``fields`` (plus ``origin_server_ts`` if absent)."""
        fields = dict(fields)
        fields.setdefault("origin_server_ts", int(time.time() * 1000))
        return build_event(version, fields, self.server_name, key or self.signing_key)

    def event_fields(
        self,
        room: PeerRoom,
        event_type: str,
        content: dict[str, Any],
        *,
        sender: str | None = None,
        state_key: str | None = None,
        prev_events: list[str] | None = None,
    ) -> dict[str, Any]:
        """The fields of a new event in ``room`` on top of the peer's forward extremity,
        citing the auth events the rules select from the state the peer knows."""
        sender = sender or self.user("mallory")
        keys = auth_types_for_event(event_type, state_key, sender, content, room.version)
        fields: dict[str, Any] = {
            "type": event_type,
            "room_id": room.room_id,
            "sender": sender,
            "content": content,
            "prev_events": list(room.head if prev_events is None else prev_events),
            "auth_events": [room.state[k].event_id for k in keys if k in room.state],
            "depth": room.depth + 1,
        }
        if state_key is not None:
            fields["state_key"] = state_key
        return fields

    def event(
        self,
        room: PeerRoom,
        event_type: str,
        content: dict[str, Any],
        *,
        sender: str | None = None,
        state_key: str | None = None,
    ) -> Event:
        """A valid next event in ``room`` (not remembered: ``room.add`` it once accepted)."""
        return self.build(
            room.version,
            self.event_fields(room, event_type, content, sender=sender, state_key=state_key),
        )

    async def join(self, destination: str, room_id: str, localpart: str = "mallory") -> PeerRoom:
        """Join ``room_id`` on ``destination`` as ``@localpart:peer`` (make_join, send_join v2)."""
        user_id = self.user(localpart)
        made = await self.request(
            destination,
            "GET",
            "/_matrix/federation/v1/make_join/"
            + quote(room_id, safe="")
            + "/"
            + quote(user_id, safe=""),
            query={"ver": sorted(KNOWN_ROOM_VERSIONS)},
        )
        if made.status != 200:
            raise AssertionError(f"make_join failed: {made.status} {made.body}")
        version = KNOWN_ROOM_VERSIONS[made.body.get("room_version", "1")]
        template = made.body["event"]
        fields = {k: template[k] for k in _TEMPLATE_FIELDS if k in template}
        fields["sender"] = user_id
        fields["state_key"] = user_id
        fields["content"] = {**template.get("content", {}), "membership": "join"}
        join = self.build(version, fields)
        sent = await self.request(
            destination,
            "PUT",
            "/_matrix/federation/v2/send_join/"
            + quote(room_id, safe="")
            + "/"
            + quote(join.event_id, safe=""),
            join.pdu,
        )
        if sent.status != 200:
            raise AssertionError(f"send_join failed: {sent.status} {sent.body}")
        room = PeerRoom(room_id, version, {})
        for pdu in [*sent.body.get("auth_chain", []), *sent.body.get("state", [])]:
            room.add(Event(compute_event_id(pdu, version), pdu, version), advance=False)
        room.add(join)
        self.rooms[room_id] = room
        return room


async def wait_for(
    probe: Callable[[], Awaitable[Any]] | Callable[[], Any], timeout_s: float = 30.0
) -> Any:
    """Poll ``probe`` until it returns something truthy (or the time is up: the last value)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)
