"""Server discovery: a server name to the address, port, Host header and TLS name to use.

Spec: server-server "Resolving server names" (steps 1-6 and 3.1-3.5). The
resolution order is pure (``ServerResolver.resolve`` over two injected
lookups); the I/O is the ``/.well-known/matrix/server`` fetch (done by the
federation client, so it obeys the same address policy and TLS rules) and
the SRV lookup (dnspython).

``/.well-known`` answers are cached: successful ones for their
``Cache-Control: max-age`` (default 24 h, at most 48 h), failures for 5
minutes doubling per consecutive failure up to an hour.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from homeserver.clock import Clock
from homeserver.events.identifiers import is_valid_server_name

log = logging.getLogger("myelin.federation.discovery")

DEFAULT_PORT = 8448
WELL_KNOWN_PATH = "/.well-known/matrix/server"
WELL_KNOWN_DEFAULT_CACHE_MS = 24 * 3600 * 1000
WELL_KNOWN_MAX_CACHE_MS = 48 * 3600 * 1000
WELL_KNOWN_ERROR_CACHE_MS = 5 * 60 * 1000
WELL_KNOWN_MAX_ERROR_CACHE_MS = 3600 * 1000
WELL_KNOWN_MAX_BYTES = 64 * 1024
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect and how to present the request.

    ``connect_host`` is an IP address or a hostname to resolve (A/AAAA);
    ``tls_name`` is the name the certificate must match and the SNI to send,
    or None when the certificate must match the IP address (no SNI).
    """

    connect_host: str
    port: int
    host_header: str
    tls_name: str | None


def split_server_name(name: str) -> tuple[str, int | None]:
    """``(host, port)`` of a valid server name; IPv6 hosts come without brackets."""
    if not is_valid_server_name(name):
        raise ValueError(f"invalid server name {name!r}")
    if name.startswith("["):
        close = name.index("]")
        host, rest = name[1:close], name[close + 1 :]
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = name.partition(":")
    if not port_text:
        return host, None
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"invalid port in server name {name!r}")
    return host, port


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_well_known(body: bytes) -> str | None:
    """The delegated server name from a ``/.well-known/matrix/server`` body, or None if invalid.

    The body is JSON whatever its Content-Type; ``m.server`` must be a valid
    server name.
    """
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    delegated = data.get("m.server")
    if not isinstance(delegated, str):
        return None
    try:
        split_server_name(delegated)
    except ValueError:
        return None
    return delegated


def well_known_cache_ms(cache_control: str | None) -> int:
    """How long to keep a successful answer: its max-age, else 24 h; at most 48 h."""
    if cache_control:
        if "no-store" in cache_control.lower():
            return 0
        match = _MAX_AGE.search(cache_control)
        if match:
            return min(int(match.group(1)) * 1000, WELL_KNOWN_MAX_CACHE_MS)
    return WELL_KNOWN_DEFAULT_CACHE_MS


def order_srv(records: list[tuple[int, int, str, int]]) -> list[tuple[str, int]]:
    """RFC 2782 order of ``(priority, weight, target, port)`` records as ``(target, port)``.

    Lowest priority first; within a priority, a weighted random choice. A
    lone record with target "." means the service is not offered.
    """
    usable = [r for r in records if r[2].rstrip(".")]
    out: list[tuple[str, int]] = []
    for priority in sorted({r[0] for r in usable}):
        group = [r for r in usable if r[0] == priority]
        while group:
            total = sum(r[1] for r in group)
            pick = group[0]
            if total > 0:
                point = random.uniform(0, total)
                acc = 0
                for r in group:
                    acc += r[1]
                    if acc >= point:
                        pick = r
                        break
            group.remove(pick)
            out.append((pick[2].rstrip("."), pick[3]))
    return out


async def dns_srv_lookup(name: str) -> list[tuple[str, int]]:
    """SRV records of ``name`` in RFC 2782 order; empty when there are none or DNS fails."""
    import dns.asyncresolver
    import dns.exception

    try:
        answer = await dns.asyncresolver.resolve(name, "SRV", lifetime=10.0)
    except dns.exception.DNSException:
        return []
    records = [(r.priority, r.weight, r.target.to_text(), r.port) for r in answer]
    return order_srv(records)


@dataclass(frozen=True, slots=True)
class WellKnownAnswer:
    status: int
    body: bytes
    cache_control: str | None


WellKnownFetcher = Callable[[str, int], Awaitable[WellKnownAnswer]]
SrvLookup = Callable[[str], Awaitable[list[tuple[str, int]]]]


@dataclass(slots=True)
class _Cached:
    delegated: str | None
    expires_ms: int
    failures: int


class ServerResolver:
    """Resolves server names to ``Target``s, caching ``/.well-known`` answers.

    ``fetch_well_known(hostname, port)`` GETs ``https://hostname[:port]/.well-known/matrix/server``
    (following redirects) and raises ``Exception`` subclasses when no answer comes;
    ``well_known_port`` is 443 except in tests.
    """

    def __init__(
        self,
        clock: Clock,
        fetch_well_known: WellKnownFetcher,
        srv_lookup: SrvLookup = dns_srv_lookup,
        well_known_port: int = 443,
    ) -> None:
        self.clock = clock
        self.fetch_well_known = fetch_well_known
        self.srv_lookup = srv_lookup
        self.well_known_port = well_known_port
        self._cache: dict[str, _Cached] = {}

    async def resolve(self, server_name: str) -> Target:
        host, port = split_server_name(server_name)
        if is_ip_literal(host):  # 1
            return Target(host, port or DEFAULT_PORT, server_name, None)
        if port is not None:  # 2
            return Target(host, port, server_name, host)
        delegated = await self.delegated_name(host)  # 3
        if delegated is not None:
            return await self._resolve_delegated(delegated)
        return await self._srv_or_default(host)  # 4, 5, 6

    async def _resolve_delegated(self, delegated: str) -> Target:
        d_host, d_port = split_server_name(delegated)
        if is_ip_literal(d_host):  # 3.1
            return Target(d_host, d_port or DEFAULT_PORT, delegated, None)
        if d_port is not None:  # 3.2
            return Target(d_host, d_port, delegated, d_host)
        return await self._srv_or_default(d_host)  # 3.3, 3.4, 3.5

    async def _srv_or_default(self, host: str) -> Target:
        for service in ("_matrix-fed._tcp.", "_matrix._tcp."):
            records = await self.srv_lookup(service + host)
            if records:
                target, port = records[0]
                return Target(target, port, host, host)
        return Target(host, DEFAULT_PORT, host, host)

    async def delegated_name(self, host: str) -> str | None:
        """``m.server`` of ``host``'s ``/.well-known/matrix/server``, from the cache if fresh."""
        now = self.clock.now_ms()
        cached = self._cache.get(host)
        if cached is not None and cached.expires_ms > now:
            return cached.delegated
        try:
            answer = await self.fetch_well_known(host, self.well_known_port)
        except Exception as e:  # any failure to get an answer counts as an error response
            log.debug("well-known of %s unavailable: %s", host, type(e).__name__)
            answer = None
        delegated = None
        if answer is not None and answer.status == 200:
            delegated = parse_well_known(answer.body)
        if delegated is not None and answer is not None:
            ttl = well_known_cache_ms(answer.cache_control)
            self._cache[host] = _Cached(delegated, now + ttl, 0)
        else:
            failures = cached.failures + 1 if cached is not None else 1
            ttl = min(
                WELL_KNOWN_ERROR_CACHE_MS * 2 ** (failures - 1), WELL_KNOWN_MAX_ERROR_CACHE_MS
            )
            self._cache[host] = _Cached(None, now + ttl, failures)
        return delegated
