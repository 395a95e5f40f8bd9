"""``heap.settle_after_start``: the start-up heap is frozen out of the collector's
walks and generation 0 collects less often (the send workload's tail, issue 15)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from homeserver.heap import GEN0_THRESHOLD, settle_after_start


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_settle_freezes_and_raises_gen0(restored_gc: None) -> None:
    before = gc.get_threshold()
    kept = [[i] for i in range(100)]  # containers alive at start-up
    settle_after_start()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == (GEN0_THRESHOLD, before[1], before[2])
    # Garbage cycles made afterwards are still collected.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1


def test_the_server_settles_once_started() -> None:
    import inspect

    from homeserver import __main__ as cli

    source = inspect.getsource(cli._run)
    assert source.index("settle_after_start()") > source.index("await start(config)")
