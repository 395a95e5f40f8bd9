"""X-Matrix request authentication (server-server "Request Authentication").

Outbound: ``sign_request`` wraps method, uri, origin, destination and the
JSON content in an object, signs it with our key, and renders the
``Authorization`` header. Inbound: ``RequestAuthenticator.authenticate``
parses the header (RFC 9110 auth-params: quoted or bare values, escapes,
any order, case-insensitive names, colons allowed bare), checks the
destination, rebuilds the same object from the request as received and
checks the origin's signature with a key the keyring trusts *now* (old
keys are valid for events, never for requests). Every failure is a 401
``M_UNAUTHORIZED`` that names no key material.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from federation.errors import KeyLookupError
from homeserver.clock import Clock
from homeserver.errors import MatrixError
from homeserver.events.identifiers import is_valid_server_name
from homeserver.events.keys import SigningKey
from homeserver.events.signing import SignatureError, sign_json
from homeserver.http.bodies import MAX_JSON_BODY_BYTES, parse_json_bytes, read_body
from homeserver.server_lists import ServerPolicy

log = logging.getLogger("myelin.federation.auth")

SCHEME = "X-Matrix"
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class KeyVerifier(Protocol):
    async def verify_json_for_server(
        self, server_name: str, obj: dict[str, Any], min_valid_ts: int
    ) -> None: ...


def unauthorized(error: str) -> MatrixError:
    return MatrixError(401, "M_UNAUTHORIZED", error)


# --- building -----------------------------------------------------------------------------


def request_json(
    method: str, uri: str, origin: str, destination: str, content: Any = None
) -> dict[str, Any]:
    """The object whose signature authenticates a request (step 1)."""
    obj: dict[str, Any] = {
        "method": method,
        "uri": uri,
        "origin": origin,
        "destination": destination,
    }
    if content is not None:
        obj["content"] = content
    return obj


def sign_request(
    origin: str,
    key: SigningKey,
    destination: str,
    method: str,
    uri: str,
    content: Any = None,
) -> str:
    """The ``Authorization`` header value for one request (step 2).

    ``uri`` is the path with its query string exactly as it goes on the wire.
    Sent the compatible way: one space, lower-case names, quoted values.
    """
    signed = sign_json(request_json(method, uri, origin, destination, content), origin, key)
    sig = signed["signatures"][origin][key.key_id]
    return f'{SCHEME} origin="{origin}",destination="{destination}",key="{key.key_id}",sig="{sig}"'


# --- parsing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XMatrixAuth:
    origin: str
    destination: str | None
    key: str
    sig: str


def _parse_params(text: str) -> dict[str, str]:
    """RFC 9110 auth-param list: ``name=value`` pairs separated by commas."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise ValueError("parameter without a value")
        name = text[i:eq].strip(" \t").lower()
        if not name or any(c not in _TOKEN_CHARS for c in name):
            raise ValueError("bad parameter name")
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted value")
                c = text[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise ValueError("dangling escape")
                    chars.append(text[i + 1])
                    i += 2
                    continue
                i += 1
                if c == '"':
                    break
                chars.append(c)
            value = "".join(chars)
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] != ",":
                raise ValueError("junk after quoted value")
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            value = text[i:end].strip(" \t")
            # Bare values should be tokens; we also take colons (older senders) and
            # the "/" and "=" of base64 signatures: anything visible but quote and backslash.
            if not value or any(not ("!" <= c <= "~") or c in '"\\' for c in value):
                raise ValueError("bad bare value")
            i = end
        params.setdefault(name, value)
    return params


class InvalidOrigin(ValueError):
    """The X-Matrix ``origin`` is not a server name."""


def parse_authorization(header: str) -> XMatrixAuth:
    """Parse an ``X-Matrix`` Authorization header; ``ValueError`` if it is not one."""
    scheme, sep, rest = header.partition(" ")
    if not sep or scheme.lower() != SCHEME.lower():
        raise ValueError("not an X-Matrix authorization")
    params = _parse_params(rest.lstrip(" "))
    try:
        origin, key, sig = params["origin"], params["key"], params["sig"]
    except KeyError as e:
        raise ValueError(f"missing parameter {e.args[0]}") from None
    if not is_valid_server_name(origin):
        raise InvalidOrigin("origin is not a valid server name")
    return XMatrixAuth(origin, params.get("destination"), key, sig)


# --- inbound verification -------------------------------------------------------------------


class RequestAuthenticator:
    """Checks inbound federation requests against the origin's published keys."""

    def __init__(
        self,
        server_name: str,
        keyring: KeyVerifier,
        clock: Clock,
        policy: ServerPolicy | None = None,
    ) -> None:
        self.server_name = server_name
        self.keyring = keyring
        self.clock = clock
        # federation.allow_list / deny_list: refused origins get 403 before any key lookup.
        self.policy = policy

    async def authenticate(self, request: web.Request) -> str:
        """The origin server name of a correctly signed request, else 401 M_UNAUTHORIZED.

        The JSON body (if any) is read here and kept as ``request[SIGNED_CONTENT]``
        (see ``signed_content``), since the signature covers it.
        """
        header = request.headers.get("Authorization")
        if header is None:
            raise unauthorized("Missing Authorization header")
        try:
            auth = parse_authorization(header)
        except InvalidOrigin as e:
            # A request naming no possible server (such as a non-numeric port) is a bad
            # request rather than a failed authentication (as Synapse answers it).
            raise MatrixError(400, "M_INVALID_PARAM", f"Malformed X-Matrix origin: {e}") from None
        except ValueError as e:
            raise unauthorized(f"Malformed X-Matrix Authorization header: {e}") from None
        if auth.destination is not None and auth.destination != self.server_name:
            raise unauthorized("Request is for another destination")
        if self.policy is not None and not self.policy.allows(auth.origin):
            _log_refusal(request, auth.origin, "server not allowed by federation config")
            raise MatrixError(403, "M_FORBIDDEN", "This server does not federate with your server")
        try:
            raw = await read_body(request, request.app[MAX_JSON_BODY_BYTES])
            content = parse_json_bytes(raw, unique_keys=True) if raw.strip() else None
        except MatrixError as e:
            _log_refusal(request, auth.origin, e.error)
            raise
        request[SIGNED_CONTENT] = content
        obj = request_json(request.method, request.raw_path, auth.origin, self.server_name, content)
        obj["signatures"] = {auth.origin: {auth.key: auth.sig}}
        try:
            await self.keyring.verify_json_for_server(auth.origin, obj, self.clock.now_ms())
        except (SignatureError, KeyLookupError) as e:
            _log_refusal(request, auth.origin, "invalid request signature")
            raise unauthorized(f"Invalid request signature: {e}") from None
        request[ORIGIN] = auth.origin
        return auth.origin


def _log_refusal(request: web.Request, origin: str, reason: str) -> None:
    """One line per refused request, naming the (claimed) origin; never the body."""
    log.info("refused %s %r from %s: %s", request.method, request.path, origin, reason)


AUTHENTICATOR = web.AppKey("federation_authenticator", RequestAuthenticator)
# Set on a request by ``authenticate``: its parsed body (None without one) and its origin.
SIGNED_CONTENT = web.RequestKey[Any]("federation_content")
ORIGIN = web.RequestKey("federation_origin", str)

FedHandler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


async def authenticate_request(request: web.Request) -> str:
    """The origin of an X-Matrix-signed request to the federation app, else 401."""
    return await request.app[AUTHENTICATOR].authenticate(request)


def signed_content(request: web.Request) -> Any:
    """The request body parsed by ``authenticate_request`` (None when there was none).

    Handlers of authenticated routes must use this, not ``json_body``: the
    body stream has already been read to check the signature.
    """
    return request.get(SIGNED_CONTENT)


def authenticated(handler: FedHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap ``handler(request, origin)`` so it runs only for authenticated requests."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        origin = await authenticate_request(request)
        return await handler(request, origin)

    return wrapper
