"""Leases (homeserver/storage/leases.py, homeserver/leasing.py) on the real database
of a running server (SQLite or PostgreSQL, per MYELIN_TEST_DB): one holder at a time,
takeover after expiry, a home process getting its lease back, release at close.
Time is injected (wall clock and monotonic), so nothing here waits."""

from __future__ import annotations

from homeserver.app import RunningServer
from homeserver.clock import Clock
from homeserver.leasing import SAFETY, Lease, LeaseKeeper
from homeserver.storage.leases import LeaseStore

TTL = 10_000


class Time(Clock):
    """Wall clock and monotonic clock moved by hand, together."""

    def __init__(self) -> None:
        self.ms = 1_000_000

    def now_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000


async def test_one_holder_until_expiry_then_takeover(server: RunningServer) -> None:
    store = LeaseStore(server.hs.db)
    assert await store.claim("job", "a", 1000, TTL)
    assert not await store.claim("job", "b", 1000 + TTL - 1, TTL)  # a still holds it
    assert await store.claim("job", "a", 5000, TTL)  # a renews
    assert not await store.claim("job", "b", 5000 + TTL, TTL)
    assert await store.holder("job", 5000 + TTL) == "a"
    assert await store.claim("job", "b", 5001 + TTL, TTL)  # expired: b takes over
    assert await store.holder("job", 5001 + TTL) == "b"
    assert not await store.claim("job", "a", 5002 + TTL, TTL)  # a is late: refused
    await store.release("job", "a")  # not a's to release
    assert await store.holder("job", 5002 + TTL) == "b"
    await store.release("job", "b")
    assert await store.holder("job", 5002 + TTL) is None
    assert await store.claim("job", "a", 5003 + TTL, TTL)


async def test_a_foreign_holder_yields_when_the_home_process_wants_its_lease(
    server: RunningServer,
) -> None:
    store = LeaseStore(server.hs.db)
    assert await store.claim("shard", "other", 0, TTL, yield_when_wanted=True)
    assert await store.claim("shard", "other", 100, TTL, yield_when_wanted=True)
    await store.want("shard", "home")
    # Wanted: the foreign holder renews no more; its lease runs out as it stands.
    assert not await store.claim("shard", "other", 200, TTL, yield_when_wanted=True)
    assert not await store.claim("shard", "home", 100 + TTL, TTL)
    assert await store.claim("shard", "home", 101 + TTL, TTL)
    # Taken by its home: nobody wants it any more, a home holder keeps it.
    assert await store.claim("shard", "home", 200 + TTL, TTL)
    await store.want("shard", "other")
    assert await store.claim("shard", "home", 300 + TTL, TTL)


async def test_keepers_hand_a_dead_processes_lease_over_and_back(server: RunningServer) -> None:
    store = LeaseStore(server.hs.db)
    time = Time()
    events: list[tuple[str, str, set[str]]] = []

    def keeper(owner: str, home: str) -> LeaseKeeper:
        return LeaseKeeper(
            store,
            owner,
            time,
            TTL,
            [Lease("s0", home == "s0"), Lease("s1", home == "s1")],
            on_gained=lambda names: events.append((owner, "gained", names)),
            on_lost=lambda names: events.append((owner, "lost", names)),
            monotonic=time.monotonic,
        )

    a, b = keeper("a", "s0"), keeper("b", "s1")
    await a.tick()
    # The first sender up takes every free shard: nothing waits for a late process.
    assert events == [("a", "gained", {"s0", "s1"})]
    await b.tick()  # b asks for its home shard back ...
    assert not b.held("s1")
    await a.tick()  # ... a stops acting on it at once and lets it run out ...
    assert not a.held("s1") and events[-1] == ("a", "lost", {"s1"})
    time.ms += TTL + 1
    await a.tick()
    await b.tick()  # ... and b takes it.
    assert events[-1] == ("b", "gained", {"s1"})
    assert a.held("s0") and not a.held("s1") and b.held("s1") and not b.held("s0")

    # b dies (no more ticks). a renews on schedule; b's local deadline is past first.
    events.clear()
    time.ms += int(TTL * SAFETY) + 1
    assert not b.held("s1")  # a stalled holder stops acting before its row expires
    await a.tick()
    assert a.held("s0") and not a.held("s1")  # b's row has not expired yet
    time.ms += TTL
    await a.tick()
    assert a.held("s1") and events == [("a", "gained", {"s1"})]

    # b comes back (a new process): it asks for s1, a lets it run out, b takes it.
    events.clear()
    b2 = keeper("b2", "s1")
    await b2.tick()
    assert not b2.held("s1")
    await a.tick()  # wanted: a stops renewing and stops acting on s1 at once
    assert not a.held("s1") and events == [("a", "lost", {"s1"})]
    time.ms += TTL + 1
    await a.tick()  # expired, but wanted by b2: a leaves it to b2
    assert not a.held("s1")
    await b2.tick()
    assert b2.held("s1") and a.held("s0") and not a.held("s1")
    assert events[-1] == ("b2", "gained", {"s1"})

    # Had the wanting process died as well, the lease is free again a lease time later.
    await store.want("s1", "nobody")
    time.ms += 2 * TTL + 2
    await a.tick()
    assert a.held("s1")
    time.ms += 1000
    await a.tick()  # and it keeps it: the dead process's wish went with the takeover
    assert a.held("s1")

    # A clean close releases: the lease is free for another process at once.
    await a.close()
    assert await store.holder("s1", time.ms) is None
    assert await store.holder("s0", time.ms) is None
