"""Listening ports for test servers, outside the kernel's ephemeral range.

A port the kernel hands out for ``bind(0)`` lies in the range it also uses for the local
end of outgoing connections. A test that stops a server and starts it again on the same
port (a restart keeps the server name and so the federation port) could find it taken
meanwhile by one of the many client or PostgreSQL connections of the run. Ports below (or
above) that range are never given to an outgoing connection."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000  # below: well-known and registered services
_TRIES = 200


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(x) for x in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default
    return low, high


def _candidates() -> range:
    low, high = _ephemeral_range()
    if low - _LOWEST >= 1000:
        return range(_LOWEST, low)
    return range(high + 1, 65536)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, outside the ephemeral range
    (the kernel's pick if no such port is free)."""
    candidates = _candidates()
    for _ in range(_TRIES if len(candidates) else 0):
        port = random.choice(candidates)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
