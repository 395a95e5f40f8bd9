"""Outbound federation requests: discovery, X-Matrix signing, TLS and address policy.

Design note
-----------
Every request to another server goes through ``FederationClient.request``:

    destination --ServerResolver--> Target(connect_host, port, Host, TLS name)
        -> address policy: IP literals checked here, hostnames checked by
           ``PolicyResolver`` after DNS, before any connection is made
        -> signed with X-Matrix over the path+query exactly as sent
        -> one shared aiohttp session (bounded connector: total and per host)
        -> body read up to a size limit -> JSON, or ``FederationError``

Loopback, private, link-local, multicast, reserved and unspecified addresses
(IPv4, IPv6 and IPv4-mapped IPv6) are refused unless ``insecure_local`` is
set; that flag also turns TLS verification off, for tests on one machine.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urljoin

import aiohttp
from yarl import URL

from federation.auth import sign_request
from federation.discovery import (
    WELL_KNOWN_MAX_BYTES,
    WELL_KNOWN_PATH,
    ServerResolver,
    SrvLookup,
    Target,
    WellKnownAnswer,
    dns_srv_lookup,
    is_ip_literal,
)
from federation.errors import DestinationDenied, DestinationRefused, FederationError
from homeserver.clock import Clock
from homeserver.events.canonical import encode_canonical_json
from homeserver.events.keys import SigningKey
from homeserver.http.bodies import BadJsonBytes, decode_json_buffer
from homeserver.net import AddressRefused, PolicyResolver, is_forbidden_address
from homeserver.server_lists import ServerPolicy

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_REDIRECTS = 5
Query = Mapping[str, str | Sequence[str]]


def encode_path(*segments: str) -> str:
    """``/`` + percent-encoded segments, for paths holding ids: encode_path("_matrix", ...)."""
    return "/" + "/".join(quote(s, safe="") for s in segments)


class FederationClient:
    """Signed JSON requests to other homeservers."""

    def __init__(
        self,
        server_name: str,
        signing_key: SigningKey,
        clock: Clock,
        *,
        insecure_local: bool = False,
        max_connections: int = 100,
        max_connections_per_host: int = 8,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        srv_lookup: SrvLookup = dns_srv_lookup,
        well_known_port: int = 443,
    ) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        self.insecure_local = insecure_local
        self.max_connections = max_connections
        self.max_connections_per_host = max_connections_per_host
        self.max_response_bytes = max_response_bytes
        self.resolver = ServerResolver(clock, self._fetch_well_known, srv_lookup, well_known_port)
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | bool = False if insecure_local else ssl.create_default_context()
        # federation.allow_list / deny_list; None: every server.
        self.policy: ServerPolicy | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=self.max_connections_per_host,
                resolver=PolicyResolver(self.insecure_local),
                ttl_dns_cache=60,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, auto_decompress=True
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- public API ---------------------------------------------------------------------

    async def get_json(
        self,
        destination: str,
        path: str,
        query: Query | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_response_bytes: int | None = None,
    ) -> Any:
        return await self.request(
            "GET", destination, path, query, None, timeout_s, max_response_bytes
        )

    async def put_json(
        self,
        destination: str,
        path: str,
        body: Any,
        query: Query | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_response_bytes: int | None = None,
    ) -> Any:
        return await self.request(
            "PUT", destination, path, query, body, timeout_s, max_response_bytes
        )

    async def post_json(
        self,
        destination: str,
        path: str,
        body: Any,
        query: Query | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_response_bytes: int | None = None,
    ) -> Any:
        return await self.request(
            "POST", destination, path, query, body, timeout_s, max_response_bytes
        )

    async def request(
        self,
        method: str,
        destination: str,
        path: str,
        query: Query | None = None,
        body: Any = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_response_bytes: int | None = None,
    ) -> Any:
        """One signed request; the parsed JSON answer, else ``FederationError``.

        ``path`` must already be percent-encoded (see ``encode_path``); ``body``
        is sent (and signed) for PUT/POST, ``{}`` when None.
        """
        self._check_allowed(destination)
        if method in ("PUT", "POST") and body is None:
            body = {}
        uri = path
        if query:
            uri += "?" + urlencode(query, doseq=True, quote_via=quote)
        try:
            target = await self.resolver.resolve(destination)
        except ValueError:
            raise FederationError(destination, "invalid server name") from None
        self._check_literal(destination, target.connect_host)
        headers = {
            "Host": target.host_header,
            "Authorization": sign_request(
                self.server_name, self.signing_key, destination, method, uri, body
            ),
        }
        data = None
        if body is not None:
            data = encode_canonical_json(body)
            headers["Content-Type"] = "application/json"
        limit = max_response_bytes or self.max_response_bytes
        status, raw = await self._send(
            destination, method, target, uri, headers, data, timeout_s, limit
        )
        return _decode_answer(destination, status, raw)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        destination: str,
        path: str,
        query: Query | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A signed GET whose answer is read as a stream (media), not parsed as JSON.

        The caller reads ``resp.content`` within its own limits; a non-2xx answer
        is raised as ``FederationError`` (its JSON error read, bounded) before
        the caller sees it.
        """
        self._check_allowed(destination)
        uri = path
        if query:
            uri += "?" + urlencode(query, doseq=True, quote_via=quote)
        try:
            target = await self.resolver.resolve(destination)
        except ValueError:
            raise FederationError(destination, "invalid server name") from None
        self._check_literal(destination, target.connect_host)
        headers = {
            "Host": target.host_header,
            "Authorization": sign_request(
                self.server_name, self.signing_key, destination, "GET", uri, None
            ),
        }
        server_hostname = target.tls_name if target.tls_name != target.connect_host else None
        async with self._mapped_errors(destination):
            async with self._get_session().get(
                self._url(target, uri),
                headers=headers,
                ssl=self._ssl,
                server_hostname=server_hostname,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                if not 200 <= resp.status < 300:
                    raw = await resp.content.read(65536)
                    _decode_answer(destination, resp.status, bytearray(raw))
                yield resp

    @contextlib.asynccontextmanager
    async def stream_url(
        self, destination: str, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """An unsigned GET of a URL a server sent us (a media ``Location``), with the same
        address policy as every federation request. Redirects are followed by hand so
        that every hop's address is checked (IP literals never reach the resolver)."""
        self._check_allowed(destination)
        for _ in range(MAX_REDIRECTS + 1):
            parsed = URL(url)
            if parsed.scheme not in ("https", "http") or not parsed.raw_host:
                raise FederationError(destination, "media location is not an http(s) URL")
            self._check_literal(destination, parsed.raw_host.strip("[]"))
            async with self._mapped_errors(destination):
                async with self._get_session().get(
                    parsed,
                    ssl=self._ssl,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=timeout_s),
                ) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    if not 200 <= resp.status < 300:
                        raise FederationError(
                            destination, f"HTTP {resp.status}", status=resp.status
                        )
                    yield resp
                    return
        raise FederationError(destination, "too many media redirects")

    @contextlib.asynccontextmanager
    async def _mapped_errors(self, destination: str) -> AsyncIterator[None]:
        try:
            yield
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, AddressRefused):
                raise DestinationRefused(
                    destination, "destination address is not allowed"
                ) from None
            raise FederationError(destination, f"cannot connect: {type(e).__name__}") from None
        except (aiohttp.ClientError, TimeoutError) as e:
            raise FederationError(destination, f"request failed: {type(e).__name__}") from None

    # --- internals ----------------------------------------------------------------------

    def _check_allowed(self, destination: str) -> None:
        if self.policy is not None and not self.policy.allows(destination):
            raise DestinationDenied(destination)

    def _check_literal(self, destination: str, host: str) -> None:
        if not self.insecure_local and is_ip_literal(host) and is_forbidden_address(host):
            raise DestinationRefused(destination, "destination address is not allowed")

    def _url(self, target: Target, uri: str) -> URL:
        host = f"[{target.connect_host}]" if ":" in target.connect_host else target.connect_host
        return URL(f"https://{host}:{target.port}{uri}", encoded=True)

    async def _send(
        self,
        destination: str,
        method: str,
        target: Target,
        uri: str,
        headers: dict[str, str],
        data: bytes | None,
        timeout_s: float,
        limit: int,
    ) -> tuple[int, bytearray]:
        """Send one request to ``target``: the status and the body (at most ``limit`` bytes)."""
        server_hostname = target.tls_name if target.tls_name != target.connect_host else None
        try:
            async with self._get_session().request(
                method,
                self._url(target, uri),
                headers=headers,
                data=data,
                ssl=self._ssl,
                server_hostname=server_hostname,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                if resp.content_length is not None and resp.content_length > limit:
                    raise FederationError(destination, "response too large", status=resp.status)
                # One buffer grown in place, not chunks joined into a copy: an answer
                # may be megabytes (a room's state), and the parse consumes it.
                body = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    if len(body) + len(chunk) > limit:
                        raise FederationError(destination, "response too large", status=resp.status)
                    body += chunk
                return resp.status, body
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, AddressRefused):
                raise DestinationRefused(
                    destination, "destination address is not allowed"
                ) from None
            raise FederationError(destination, f"cannot connect: {type(e).__name__}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise FederationError(destination, f"request failed: {type(e).__name__}") from None

    async def _fetch_well_known(self, hostname: str, port: int) -> WellKnownAnswer:
        """GET ``https://hostname/.well-known/matrix/server``, following HTTPS redirects."""
        authority = hostname if port == 443 else f"{hostname}:{port}"
        url = f"https://{authority}{WELL_KNOWN_PATH}"
        for _ in range(MAX_REDIRECTS + 1):
            parsed = URL(url)
            host = parsed.raw_host or ""
            if parsed.scheme != "https" or not host:
                raise FederationError(hostname, "well-known redirect is not https")
            self._check_literal(hostname, host)
            async with self._get_session().get(
                parsed,
                ssl=self._ssl,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=10.0),
            ) as resp:
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    url = urljoin(url, resp.headers["Location"])
                    continue
                body = await resp.content.read(WELL_KNOWN_MAX_BYTES + 1)
                if len(body) > WELL_KNOWN_MAX_BYTES:
                    raise FederationError(hostname, "well-known response too large")
                return WellKnownAnswer(resp.status, body, resp.headers.get("Cache-Control"))
        raise FederationError(hostname, "too many well-known redirects")


def _decode_answer(destination: str, status: int, raw: bytearray) -> Any:
    """The answer's JSON (``raw`` is consumed: emptied before the parse)."""
    try:
        body: Any = decode_json_buffer(raw, unique_keys=True) if raw else None
    except BadJsonBytes:
        body = None
        if 200 <= status < 300:
            raise FederationError(destination, "response is not JSON", status=status) from None
    if 200 <= status < 300:
        return body
    errcode = body.get("errcode") if isinstance(body, dict) else None
    error = body.get("error") if isinstance(body, dict) else None
    raise FederationError(
        destination,
        error if isinstance(error, str) else f"HTTP {status}",
        status=status,
        errcode=errcode if isinstance(errcode, str) else None,
        body=body,
    )
