"""A minimal inbound ``PUT /_matrix/federation/v1/send/{txnId}``: each PDU goes to
``handle_pdu``; EDUs are ignored.

TO BE REPLACED at merge by the ``fedsend`` branch's receiver (idempotent
transaction ids, bounded per-room queues, EDUs), which calls the same seam:
``pdu_handler(origin, pdu_json) -> str | None``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from federation.auth import authenticated, signed_content
from homeserver.api.http import json_response
from homeserver.errors import bad_json

PduHandler = Callable[[str, Any], Awaitable[str | None]]
MAX_PDUS = 50


class SendStubApi:
    def __init__(
        self, handle_pdu: PduHandler, event_id_of: Callable[[Any], Awaitable[str | None]]
    ) -> None:
        self.handle_pdu = handle_pdu
        self.event_id_of = event_id_of

    def routes(self) -> list[web.RouteDef]:
        return [web.put("/_matrix/federation/v1/send/{txnId}", authenticated(self.send))]

    async def send(self, request: web.Request, origin: str) -> web.Response:
        body = signed_content(request)
        pdus = body.get("pdus") if isinstance(body, dict) else None
        if not isinstance(pdus, list) or len(pdus) > MAX_PDUS:
            raise bad_json("Expected 'pdus', a list of at most 50 PDUs")
        results: dict[str, Any] = {}
        for pdu in pdus:
            error = await self.handle_pdu(origin, pdu)
            event_id = await self.event_id_of(pdu)
            if event_id is not None:
                results[event_id] = {} if error is None else {"error": error}
        return json_response({"pdus": results})
