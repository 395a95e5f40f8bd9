"""Outbound requests to identity servers (spec: identity service API v2).

Identity servers are named by clients (``id_server``: a host with an optional
port) and reached over HTTPS. Like push gateways, hosts on this machine or on
private networks are refused unless the server allows local addresses
(``federation.insecure_local``, tests only), which also drops certificate checks
(test identity servers use self-signed certificates).

Every call answers plain data or raises ``IdentityServerError``; callers turn
that into the client's Matrix error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

from homeserver.events.keys import SigningKey
from homeserver.events.signing import sign_json
from homeserver.net import forbidden_literal_host, policy_session

TIMEOUT_S = 15.0
MAX_ANSWER_BYTES = 64 * 1024
# A host, an IPv4 address or a bracketed IPv6 address, with an optional port.
_ID_SERVER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")


class IdentityServerError(Exception):
    """An identity server could not be reached or answered unusably."""

    def __init__(self, reason: str, status: int | None = None, errcode: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.errcode = errcode


def valid_id_server(name: str) -> bool:
    """Whether ``name`` is a host[:port] we could send a request to."""
    return len(name) <= 255 and _ID_SERVER.match(name) is not None


def lookup_hash(medium: str, address: str, pepper: str) -> str:
    """The ``sha256`` lookup form: unpadded URL-safe base64 of "address medium pepper"."""
    digest = hashlib.sha256(f"{address} {medium} {pepper}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class IdentityClient:
    def __init__(self, server_name: str, signing_key: SigningKey, allow_local: bool) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        self.allow_local = allow_local
        self._session: aiohttp.ClientSession | None = None

    # ----------------------------------------------------------- the API pieces

    async def bind(
        self, id_server: str, access_token: str, sid: str, client_secret: str, mxid: str
    ) -> dict[str, Any]:
        """``POST /v2/3pid/bind``: the signed association the server made."""
        return await self._call(
            id_server,
            "POST",
            "/_matrix/identity/v2/3pid/bind",
            {"sid": sid, "client_secret": client_secret, "mxid": mxid},
            access_token=access_token,
        )

    async def unbind(self, id_server: str, mxid: str, medium: str, address: str) -> None:
        """``POST /v2/3pid/unbind``, authenticated as this homeserver (X-Matrix)."""
        path = "/_matrix/identity/v2/3pid/unbind"
        body = {"mxid": mxid, "threepid": {"medium": medium, "address": address}}
        await self._call(id_server, "POST", path, body, x_matrix=True)

    async def lookup(
        self, id_server: str, access_token: str, medium: str, address: str
    ) -> str | None:
        """The user id bound to an address, via ``/v2/hash_details`` and ``/v2/lookup``."""
        details = await self._call(
            id_server, "GET", "/_matrix/identity/v2/hash_details", None, access_token=access_token
        )
        algorithms = details.get("algorithms")
        pepper = details.get("lookup_pepper")
        if not isinstance(algorithms, list) or not isinstance(pepper, str):
            raise IdentityServerError("hash_details answer is malformed")
        if "sha256" in algorithms:
            key = lookup_hash(medium, address, pepper)
            body = {"addresses": [key], "algorithm": "sha256", "pepper": pepper}
        elif "none" in algorithms:
            key = f"{address} {medium}"
            body = {"addresses": [key], "algorithm": "none", "pepper": pepper}
        else:
            raise IdentityServerError("identity server offers no lookup algorithm we know")
        answer = await self._call(
            id_server, "POST", "/_matrix/identity/v2/lookup", body, access_token=access_token
        )
        mappings = answer.get("mappings")
        mxid = mappings.get(key) if isinstance(mappings, dict) else None
        return mxid if isinstance(mxid, str) else None

    async def store_invite(
        self, id_server: str, access_token: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """``POST /v2/store-invite``: token, display_name and public_keys."""
        return await self._call(
            id_server, "POST", "/_matrix/identity/v2/store-invite", body, access_token=access_token
        )

    async def key_is_valid(self, url: str, public_key: str) -> bool:
        """Ask a ``key_validity_url`` whether ``public_key`` is still valid."""
        answer = await self._get_url(f"{url}?{urlencode({'public_key': public_key})}")
        return answer.get("valid") is True

    # ------------------------------------------------------------- plumbing

    async def _call(
        self,
        id_server: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        access_token: str | None = None,
        x_matrix: bool = False,
    ) -> dict[str, Any]:
        if not valid_id_server(id_server):
            raise IdentityServerError("not a valid identity server name")
        headers: dict[str, str] = {}
        if access_token is not None:
            headers["Authorization"] = f"Bearer {access_token}"
        if x_matrix:
            headers["Authorization"] = self._x_matrix(id_server, method, path, body)
        return await self._request(method, f"https://{id_server}{path}", body, headers)

    def _x_matrix(self, destination: str, method: str, uri: str, body: Any) -> str:
        """Server-server request authentication, as the identity API asks for unbind."""
        obj: dict[str, Any] = {
            "method": method,
            "uri": uri,
            "origin": self.server_name,
            "destination": destination,
        }
        if body is not None:
            obj["content"] = body
        signed = sign_json(obj, self.server_name, self.signing_key)
        sig = signed["signatures"][self.server_name][self.signing_key.key_id]
        return (
            f'X-Matrix origin="{self.server_name}",destination="{destination}",'
            f'key="{self.signing_key.key_id}",sig="{sig}"'
        )

    async def _get_url(self, url: str) -> dict[str, Any]:
        if not url.startswith("https://"):
            raise IdentityServerError("key_validity_url is not https")
        return await self._request("GET", url, None, {})

    async def _request(
        self, method: str, url: str, body: dict[str, Any] | None, headers: dict[str, str]
    ) -> dict[str, Any]:
        host = urlsplit(url).hostname or ""
        if not self.allow_local and forbidden_literal_host(host):
            raise IdentityServerError("identity server address refused by policy")
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers = {**headers, "Content-Type": "application/json"}
        try:
            async with self._client().request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
            ) as resp:
                raw = await resp.content.read(MAX_ANSWER_BYTES + 1)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise IdentityServerError(f"identity server unreachable: {type(e).__name__}") from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise IdentityServerError("identity server answer too large")
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = None
        if status != 200:
            errcode = answer.get("errcode") if isinstance(answer, dict) else None
            raise IdentityServerError(
                f"identity server answered HTTP {status}",
                status=status,
                errcode=errcode if isinstance(errcode, str) else None,
            )
        if not isinstance(answer, dict):
            raise IdentityServerError("identity server answer is not a JSON object")
        return answer

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = policy_session(self.allow_local)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
