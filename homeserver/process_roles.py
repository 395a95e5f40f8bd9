"""Which process does what when Myelin runs as several processes (README "Scaling out").

Pure: reads the config, no I/O. A worker's ``roles`` say what it does; a worker
without ``roles`` is a generic worker (the client API, as before roles existed).
The main process does everything except what ``main_roles`` leaves out; it always
serves the client API (its health check and the admin endpoints live there).

Roles:

- ``client``: the client API listener (``/_matrix/client``, ``/_matrix/media``,
  ``/_synapse``, ``/health``) on the worker's ``client_port``.
- ``sync``: the same listener; the role is the proxy's hint to send ``/sync`` and
  sliding sync there (a worker with only ``sync`` still answers every client path).
- ``federation_inbound``: the federation listener (``/_matrix/federation``,
  ``/_matrix/key``) on the worker's ``federation_port``, with TLS.
- ``federation_sender``: sends one shard of the federation outbox (destinations
  hashed over every sender), and takes over a dead sender's shard.
- ``background``: the background jobs (media upkeep, client-IP purges, retention,
  push delivery and its catch-up, guest reconciliation), on exactly one process at a
  time through a lease.
"""

from __future__ import annotations

import hashlib
from typing import Final

CLIENT: Final = "client"
SYNC: Final = "sync"
FEDERATION_INBOUND: Final = "federation_inbound"
FEDERATION_SENDER: Final = "federation_sender"
BACKGROUND: Final = "background"

ROLES: Final = (CLIENT, SYNC, FEDERATION_INBOUND, FEDERATION_SENDER, BACKGROUND)
MAIN: Final = "main"
# The main process's roles when the config does not say (``main_roles``): everything.
MAIN_DEFAULT: Final = (CLIENT, SYNC, FEDERATION_INBOUND, FEDERATION_SENDER, BACKGROUND)
# A worker without ``roles``: the client API only (a generic worker).
GENERIC_WORKER: Final = (CLIENT,)


def roles_of(
    name: str, main_roles: list[str] | None, worker_roles: dict[str, list[str] | None]
) -> frozenset[str]:
    """The roles of process ``name`` (``main`` or a worker's name)."""
    if name == MAIN:
        return frozenset(MAIN_DEFAULT if main_roles is None else main_roles) | {CLIENT}
    roles = worker_roles.get(name)
    return frozenset(GENERIC_WORKER if roles is None else roles)


def processes_with(
    role: str, main_roles: list[str] | None, worker_roles: dict[str, list[str] | None]
) -> list[str]:
    """Every process (by name, sorted, ``main`` included) that has ``role``."""
    names = [MAIN, *worker_roles]
    return sorted(n for n in names if role in roles_of(n, main_roles, worker_roles))


def client_processes(
    main_roles: list[str] | None, worker_roles: dict[str, list[str] | None]
) -> int:
    """How many processes serve the client API (``client`` or ``sync``): they split
    every rate limit between them."""
    names = [MAIN, *worker_roles]
    serving = {CLIENT, SYNC}
    return sum(1 for n in names if serving & roles_of(n, main_roles, worker_roles))


def shard_of(destination: str, shards: int) -> int:
    """The sender shard of ``destination``: a hash that every process computes alike
    (never Python's ``hash``, which is salted per process)."""
    digest = hashlib.sha256(destination.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards
