"""Our signing key and the key server: ``/_matrix/key/v2/server`` and the notary queries.

Spec: server-server "Publishing Keys" and "Querying Keys Through Another
Server". Our response is valid for a day (well over the hour the spec asks
for, well under the 7-day cap receivers apply) and signed with our key.
Notary answers are the origin's own signed responses, counter-signed by us.
The keyed paths (``/server/{keyId}``, ``/query/{serverName}/{keyId}``) are
deprecated but still called by older servers; the spec tells servers to
ignore the key id and answer with every key, so they share the handlers.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from federation.keyring import Keyring
from homeserver.clock import Clock
from homeserver.errors import bad_json, invalid_param
from homeserver.events.identifiers import is_valid_server_name
from homeserver.events.keys import SigningKey, verify_key_base64
from homeserver.events.signing import sign_json
from homeserver.http.bodies import json_body
from homeserver.http.shell import json_response

KEY_RESPONSE_LIFETIME_MS = 24 * 3600 * 1000
MAX_NOTARY_SERVERS = 50


def own_key_response(server_name: str, key: SigningKey, now_ms: int) -> dict[str, Any]:
    """Our ``/_matrix/key/v2/server`` object, signed."""
    body = {
        "server_name": server_name,
        "verify_keys": {key.key_id: {"key": verify_key_base64(key)}},
        "old_verify_keys": {},
        "valid_until_ts": now_ms + KEY_RESPONSE_LIFETIME_MS,
    }
    return sign_json(body, server_name, key)


def _min_valid(value: Any, now_ms: int) -> int:
    if value is None:
        return now_ms
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_json("'minimum_valid_until_ts' must be an integer")
    return value


class KeyApi:
    """Routes under ``/_matrix/key/v2`` (unauthenticated, as the spec has them)."""

    def __init__(self, server_name: str, key: SigningKey, keyring: Keyring, clock: Clock) -> None:
        self.server_name = server_name
        self.key = key
        self.keyring = keyring
        self.clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_matrix/key/v2/server", self.get_server),
            web.get("/_matrix/key/v2/server/{keyId}", self.get_server),
            web.get("/_matrix/key/v2/query/{serverName}", self.get_query),
            web.get("/_matrix/key/v2/query/{serverName}/{keyId}", self.get_query),
            web.post("/_matrix/key/v2/query", self.post_query),
        ]

    async def get_server(self, request: web.Request) -> web.Response:
        return json_response(own_key_response(self.server_name, self.key, self.clock.now_ms()))

    async def get_query(self, request: web.Request) -> web.Response:
        server_name = request.match_info["serverName"]
        if not is_valid_server_name(server_name):
            raise invalid_param("Invalid server name")
        raw = request.query.get("minimum_valid_until_ts")
        now = self.clock.now_ms()
        try:
            min_valid = int(raw) if raw is not None else now
        except ValueError:
            raise invalid_param("'minimum_valid_until_ts' must be an integer") from None
        # The keyed path's key id is deprecated and ignored (spec): every key is returned.
        answer = await self._query(server_name, min_valid, None, raw is not None)
        return json_response({"server_keys": answer})

    async def post_query(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        queries = body.get("server_keys")
        if not isinstance(queries, dict):
            raise bad_json("'server_keys' must be an object")
        if len(queries) > MAX_NOTARY_SERVERS:
            raise bad_json(f"At most {MAX_NOTARY_SERVERS} servers per query")
        now = self.clock.now_ms()
        wanted: list[tuple[str, int, list[str] | None, bool]] = []
        for server_name, criteria in queries.items():
            if not isinstance(criteria, dict):
                raise bad_json("Each server's query criteria must be an object")
            mins = []
            for crit in criteria.values():
                if not isinstance(crit, dict):
                    raise bad_json("Each key's query criteria must be an object")
                mins.append(_min_valid(crit.get("minimum_valid_until_ts"), now))
            asked_min = any(
                isinstance(c, dict) and c.get("minimum_valid_until_ts") is not None
                for c in criteria.values()
            )
            if is_valid_server_name(server_name):
                # No key ids: every key of the server is wanted (spec).
                key_ids = list(criteria) or None
                wanted.append((server_name, max(mins, default=now), key_ids, asked_min))
        results = await asyncio.gather(*(self._query(*w) for w in wanted))
        return json_response({"server_keys": [r for rs in results for r in rs]})

    async def _query(
        self, server_name: str, min_valid_ts: int, key_ids: list[str] | None, asked_min: bool
    ) -> list[dict[str, Any]]:
        if server_name == self.server_name:
            return [own_key_response(self.server_name, self.key, self.clock.now_ms())]
        responses = await self.keyring.key_responses_for_notary(
            server_name, min_valid_ts, key_ids, asked_min=asked_min
        )
        return [sign_json(r, self.server_name, self.key) for r in responses]
