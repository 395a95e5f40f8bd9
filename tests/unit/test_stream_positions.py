"""PositionTracker: readers never pass a position that is still uncommitted."""

from __future__ import annotations

import asyncio
import contextlib

from homeserver.streams.positions import PositionTracker


class Counter:
    """Hands out 6, 7, 8... like a sequence; ``gate`` holds a taker until it opens."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.gate: asyncio.Event | None = None

    async def next(self) -> int:
        self.last += 1
        value = self.last
        if self.gate is not None:
            await self.gate.wait()
        return value


async def test_commits_out_of_order_publish_only_below_the_oldest_unfinished() -> None:
    tracker = PositionTracker(5)
    counter = Counter(5)
    async with contextlib.AsyncExitStack() as a:
        pos_a = await a.enter_async_context(tracker.take(counter.next))
        assert pos_a == 6
        async with tracker.take(counter.next) as pos_b:
            assert pos_b == 7
        # 7 finished first, 6 still open: readers stay at 5.
        assert tracker.published == 5
        waiter = asyncio.ensure_future(tracker.wait_published(7))
        await asyncio.sleep(0)
        assert not waiter.done()
    # 6 finished too: both are readable, and the writer of 7 is let go.
    assert tracker.published == 7
    await asyncio.wait_for(waiter, 5)


async def test_an_abandoned_position_is_a_hole_readers_pass() -> None:
    tracker = PositionTracker(0)
    counter = Counter(0)
    try:
        async with tracker.take(counter.next):
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    assert tracker.published == 1
    async with tracker.take(counter.next) as pos:
        assert pos == 2
        assert tracker.published == 1
    assert tracker.published == 2


async def test_nothing_is_published_while_a_position_is_being_taken() -> None:
    """A taker whose value is not known yet may get one below a finished position."""
    tracker = PositionTracker(10)
    slow = Counter(10)
    slow.gate = asyncio.Event()
    fast = Counter(11)  # a later nextval that returns first

    async def slow_writer() -> int:
        async with tracker.take(slow.next) as pos:
            return pos

    pending = asyncio.ensure_future(slow_writer())
    await asyncio.sleep(0)
    async with tracker.take(fast.next) as pos:
        assert pos == 12
    assert tracker.published == 10  # 11 is still being taken
    slow.gate.set()
    assert await asyncio.wait_for(pending, 5) == 11
    assert tracker.published == 12
