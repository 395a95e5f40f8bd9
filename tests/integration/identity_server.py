"""A small identity server for tests (identity service API v2), on 127.0.0.1 over TLS.

There is no identity server we could run here, so this one implements the parts a
homeserver talks to, honestly: ``/v2/hash_details`` and ``/v2/lookup`` (sha256 with
a pepper, and ``none``), ``/v2/store-invite``, ``/v2/pubkey/{keyId}`` and
``/v2/pubkey/isvalid``, ``/v2/3pid/bind`` (of addresses a test validated) and
``/v2/3pid/unbind``, which checks the homeserver's X-Matrix signature against the
key that homeserver publishes. Its v2 endpoints want the access token it hands out.
``bind_and_notify`` is what happens when a user proves an address: the binding,
and ``/3pid/onbind`` on the homeserver with each pending invite's signed block.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from homeserver.events.canonical import encode_canonical_json
from homeserver.tls import write_self_signed

ACCESS_TOKEN = "id-token-for-tests"
PEPPER = "matrixrocks"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def signed_by(obj: dict[str, Any], name: str, key: SigningKey, key_id: str) -> dict[str, Any]:
    """``obj`` with a signature by this identity server (appendices "Signing JSON")."""
    plain = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    sig = b64(key.sign(encode_canonical_json(plain)).signature)
    out = dict(obj)
    out.setdefault("signatures", {}).setdefault(name, {})[key_id] = sig
    return out


@dataclass
class StoredInvite:
    medium: str
    address: str
    room_id: str
    sender: str
    token: str
    body: dict[str, Any]


@dataclass
class IdentityServer:
    name: str = ""
    key: SigningKey = field(default_factory=SigningKey.generate)
    ephemeral: SigningKey = field(default_factory=SigningKey.generate)
    bindings: dict[tuple[str, str], str] = field(default_factory=dict)
    validated: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    invites: list[StoredInvite] = field(default_factory=list)
    unbind_requests: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------ test helpers

    def public_keys(self) -> dict[str, str]:
        return {
            "ed25519:0": b64(bytes(self.key.verify_key)),
            "ed25519:ephemeral": b64(bytes(self.ephemeral.verify_key)),
        }

    def rotate_keys(self) -> None:
        """New keys: signatures by the old ones stop being valid (``isvalid`` says no)."""
        self.key = SigningKey.generate()
        self.ephemeral = SigningKey.generate()

    def validate(self, medium: str, address: str, client_secret: str) -> str:
        """A validation session the user completed (the mail round-trip, skipped)."""
        sid = "session_" + secrets.token_hex(4)
        self.validated[sid] = (medium, address, client_secret)
        return sid

    def sign(self, obj: dict[str, Any], ephemeral: bool = False) -> dict[str, Any]:
        return signed_by(obj, self.name, self.ephemeral if ephemeral else self.key, "ed25519:0")

    async def bind_and_notify(
        self, hs_client_url: str, medium: str, address: str, mxid: str
    ) -> aiohttp.ClientResponse:
        """Bind out of band, then tell the homeserver with the pending invites."""
        self.bindings[(medium, address)] = mxid
        invites = []
        for inv in self.invites:
            if (inv.medium, inv.address) != (medium, address):
                continue
            signed = self.sign({"mxid": mxid, "token": inv.token})
            invites.append(
                {
                    "medium": medium,
                    "address": address,
                    "mxid": mxid,
                    "room_id": inv.room_id,
                    "sender": inv.sender,
                    "signed": signed,
                }
            )
        body = self.sign({"medium": medium, "address": address, "mxid": mxid, "invites": invites})
        async with (
            aiohttp.ClientSession() as session,
            session.put(f"{hs_client_url}/_matrix/federation/v1/3pid/onbind", json=body) as resp,
        ):
            await resp.read()
            return resp

    # ----------------------------------------------------------------- routes

    def app(self) -> web.Application:
        app = web.Application()
        p = "/_matrix/identity/v2"
        app.add_routes(
            [
                web.get(p + "/hash_details", self.hash_details),
                web.post(p + "/lookup", self.lookup),
                web.post(p + "/store-invite", self.store_invite),
                web.get(p + "/pubkey/isvalid", self.is_valid),
                web.get(p + "/pubkey/{key_id}", self.pubkey),
                web.post(p + "/3pid/bind", self.bind),
                web.post(p + "/3pid/unbind", self.unbind),
            ]
        )
        return app

    @staticmethod
    def _authorised(request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {ACCESS_TOKEN}"

    @staticmethod
    def _error(status: int, errcode: str, error: str) -> web.Response:
        return web.json_response({"errcode": errcode, "error": error}, status=status)

    async def hash_details(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(401, "M_UNAUTHORIZED", "access token needed")
        return web.json_response({"lookup_pepper": PEPPER, "algorithms": ["none", "sha256"]})

    async def lookup(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(401, "M_UNAUTHORIZED", "access token needed")
        body = await request.json()
        if body.get("pepper") != PEPPER:
            return self._error(400, "M_INVALID_PEPPER", "wrong pepper")
        mappings: dict[str, str] = {}
        for (medium, address), mxid in self.bindings.items():
            if body.get("algorithm") == "sha256":
                digest = hashlib.sha256(f"{address} {medium} {PEPPER}".encode()).digest()
                key = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            elif body.get("algorithm") == "none":
                key = f"{address} {medium}"
            else:
                return self._error(400, "M_INVALID_PARAM", "unknown algorithm")
            if key in body.get("addresses", []):
                mappings[key] = mxid
        return web.json_response({"mappings": mappings})

    async def store_invite(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(401, "M_UNAUTHORIZED", "access token needed")
        body = await request.json()
        for key in ("medium", "address", "room_id", "sender"):
            if not isinstance(body.get(key), str):
                return self._error(400, "M_MISSING_PARAMS", f"{key} is required")
        if (body["medium"], body["address"]) in self.bindings:
            return self._error(400, "M_THREEPID_IN_USE", "already bound")
        token = secrets.token_urlsafe(12)
        self.invites.append(
            StoredInvite(
                body["medium"], body["address"], body["room_id"], body["sender"], token, body
            )
        )
        url = f"https://{self.name}/_matrix/identity/v2/pubkey/isvalid"
        keys = self.public_keys()
        return web.json_response(
            {
                "token": token,
                "display_name": "B...@e...",
                "public_keys": [
                    {"public_key": keys["ed25519:0"], "key_validity_url": url},
                    {"public_key": keys["ed25519:ephemeral"], "key_validity_url": url},
                ],
            }
        )

    async def is_valid(self, request: web.Request) -> web.Response:
        valid = request.query.get("public_key") in self.public_keys().values()
        return web.json_response({"valid": valid})

    async def pubkey(self, request: web.Request) -> web.Response:
        key = self.public_keys().get(request.match_info["key_id"])
        if key is None:
            return self._error(404, "M_NOT_FOUND", "no such key")
        return web.json_response({"public_key": key})

    async def bind(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(401, "M_UNAUTHORIZED", "access token needed")
        body = await request.json()
        session = self.validated.get(body.get("sid", ""))
        if session is None or session[2] != body.get("client_secret"):
            return self._error(400, "M_NO_VALID_SESSION", "unknown session")
        medium, address, _ = session
        self.bindings[(medium, address)] = body["mxid"]
        answer = {
            "medium": medium,
            "address": address,
            "mxid": body["mxid"],
            "not_before": 0,
            "not_after": 4582425849161,
            "ts": 0,
        }
        return web.json_response(self.sign(answer))

    async def unbind(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw)
        if not await self._homeserver_signed(request, body):
            return self._error(403, "M_FORBIDDEN", "bad X-Matrix signature")
        threepid = body.get("threepid", {})
        key = (threepid.get("medium"), threepid.get("address"))
        if self.bindings.get(key) != body.get("mxid"):
            return self._error(404, "M_NOT_FOUND", "no such binding")
        del self.bindings[key]
        self.unbind_requests.append(body)
        return web.json_response({})

    async def _homeserver_signed(self, request: web.Request, body: dict[str, Any]) -> bool:
        """The request is signed by the homeserver of ``mxid`` (X-Matrix, its published key)."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("X-Matrix "):
            return False
        params = dict(part.strip().split("=", 1) for part in header[len("X-Matrix ") :].split(","))
        params = {k: v.strip('"') for k, v in params.items()}
        origin = params.get("origin", "")
        if origin != body.get("mxid", "").split(":", 1)[-1]:
            return False
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"https://{origin}/_matrix/key/v2/server", ssl=False) as resp,
        ):
            keys = (await resp.json())["verify_keys"]
        verify = keys.get(params.get("key", ""))
        if verify is None:
            return False
        signed = {
            "method": request.method,
            "uri": request.path_qs,
            "origin": origin,
            "destination": params.get("destination", ""),
            "content": body,
        }
        try:
            VerifyKey(unb64(verify["key"])).verify(
                encode_canonical_json(signed), unb64(params.get("sig", ""))
            )
        except (BadSignatureError, ValueError):
            return False
        return params.get("destination") == self.name


@asynccontextmanager
async def identity_server(tmp_path: Path) -> AsyncIterator[IdentityServer]:
    """An identity server listening on 127.0.0.1 (a free port) with a self-signed certificate."""
    server = IdentityServer()
    cert, key = tmp_path / "is.crt", tmp_path / "is.key"
    write_self_signed("127.0.0.1", cert, key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.name = f"127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()
