"""Prometheus metrics of one server, in a registry of its own.

Each ``HomeServer`` owns a ``CollectorRegistry`` (never prometheus_client's
global one), so several servers in one process (the tests) keep their
numbers apart. Counters are bumped where things happen (the HTTP shell, the
event hooks, the federation sender); gauges that mirror the database (outbox
depth) are refreshed by async callbacks just before each scrape.

Label cardinality stays bounded: HTTP metrics use the route's pattern
(``/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}``), never the
concrete path, so no user or room id becomes a label; unmatched paths share
one ``unmatched`` route. The only unbounded-by-code label is ``destination``
on ``myelin_federation_send_failures_total``: one series per server we failed
to reach, bounded by the servers this one federates with.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("myelin.metrics")

Refresher = Callable[[], Awaitable[None]]

# Request latency buckets in seconds: fast reads to long-poll /sync (30 s and more).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Every metric Myelin exports, registered in ``registry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "myelin_http_requests",
            "HTTP requests answered, per listener, method, route pattern and status class.",
            ["listener", "method", "route", "status_class"],
            registry=r,
        )
        self.http_latency = Histogram(
            "myelin_http_request_duration_seconds",
            "Time from receiving a request to its answer, per route pattern.",
            ["listener", "method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_in_flight = Gauge(
            "myelin_http_requests_in_flight",
            "Requests being handled now, per listener.",
            ["listener"],
            registry=r,
        )
        self.sync_in_flight = Gauge(
            "myelin_sync_requests_in_flight",
            "/sync (and sliding sync) requests being handled or long-polling now.",
            registry=r,
        )
        self.events_persisted = Counter(
            "myelin_events_persisted",
            "Room events stored, by origin: local (sent by our users) or remote.",
            ["origin"],
            registry=r,
        )
        self.outbox_depth = Gauge(
            "myelin_federation_outbox_depth",
            "Items waiting to be sent to other servers (pdu, edu, to_device).",
            ["kind"],
            registry=r,
        )
        self.destinations_backing_off = Gauge(
            "myelin_federation_destinations_backing_off",
            "Destinations whose last transaction failed and that wait to retry.",
            registry=r,
        )
        self.send_failures = Counter(
            "myelin_federation_send_failures",
            "Outbound transactions that failed (will be retried), per destination.",
            ["destination"],
            registry=r,
        )
        self.db_pool_size = Gauge(
            "myelin_database_connections",
            "Open database connections (PostgreSQL pool size; SQLite writer + readers).",
            ["engine"],
            registry=r,
        )
        self.db_pool_in_use = Gauge(
            "myelin_database_connections_in_use",
            "Database connections checked out by a query or transaction now.",
            ["engine"],
            registry=r,
        )
        self.db_pool_max = Gauge(
            "myelin_database_connections_max",
            "The most connections the pool opens.",
            ["engine"],
            registry=r,
        )
        self._refreshers: list[Refresher] = []

    def add_refresher(self, refresher: Refresher) -> None:
        """Run ``refresher`` before each scrape (gauges read from the database)."""
        self._refreshers.append(refresher)

    async def render(self) -> bytes:
        """The registry in the Prometheus text format, gauges refreshed first."""
        for refresh in self._refreshers:
            try:
                await refresh()
            except Exception:
                # A scrape still answers with what is known; the failure is logged.
                log.exception("metrics refresher failed")
        return generate_latest(self.registry)
