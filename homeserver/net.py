"""Facts about a client connection that several layers need."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult


def client_ip(request: web.Request) -> str:
    """The client address; X-Forwarded-For is honoured only from a loopback proxy."""
    peer = request.remote or "-"
    fwd = request.headers.get("X-Forwarded-For")
    if fwd and peer in ("127.0.0.1", "::1"):
        return fwd.split(",")[0].strip()
    return peer


# Outbound connections on behalf of remote input (federation, push gateways) never reach
# this host's own or private networks unless a test set-up allows local addresses.
def is_forbidden_address(address: str) -> bool:
    """Is ``address`` one we never connect to without ``insecure_local``?"""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or not ip.is_global
    )


class AddressRefused(OSError):
    """Every address a hostname resolved to is forbidden by policy."""


class PolicyResolver(AbstractResolver):
    """getaddrinfo, then drop forbidden addresses (unless local addresses are allowed)."""

    def __init__(self, allow_local: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow_local = allow_local

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._allow_local:
            return results
        allowed = [r for r in results if not is_forbidden_address(r["host"])]
        if not allowed:
            raise AddressRefused(f"{host} resolves only to forbidden addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


RESOLVE_TIMEOUT_S = 5.0


def forbidden_literal_host(host: str) -> bool:
    """A URL host that names this host or a private network without a look-up: an
    address literal of such a network, or ``localhost``. aiohttp connects to address
    literals without asking its resolver, so ``PolicyResolver`` never sees them."""
    host = host.lower().rstrip(".").strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return is_forbidden_address(host)


async def resolves_only_to_forbidden(host: str) -> bool:
    """True when ``host`` resolves, and only to forbidden addresses. A name that does not
    resolve now is let through: connections check the addresses again (PolicyResolver)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError, UnicodeError):
        return False
    addresses = [str(info[4][0]) for info in infos]
    return bool(addresses) and all(is_forbidden_address(a) for a in addresses)


def policy_session(allow_local: bool) -> aiohttp.ClientSession:
    """An HTTPS client for servers that users name (push gateways, identity servers):
    names resolve through ``PolicyResolver``; with ``allow_local`` (test set-ups only)
    loopback is allowed and certificates are not checked."""
    connector = aiohttp.TCPConnector(
        resolver=PolicyResolver(allow_local), ssl=False if allow_local else True
    )
    return aiohttp.ClientSession(connector=connector)
