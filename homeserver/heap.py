"""The garbage collector's settings for a long-running server process.

Design note
-----------
CPython's cyclic collector runs a full (generation 2) collection now and then, and
a full collection walks every tracked object: after start-up that is the whole
module graph, the app, its routes and services (tens of thousands of objects that
live as long as the process). On the 2-core benchmark machine one such pause took
80-260 ms in the middle of the concurrent send workload, delaying every request
in flight at once: the slow tail of the sends (issue 15). Its generation 0
collections, one every 700 allocations, ran ~130 times a run (~50-80 ms in all).

Once the server has started, ``settle_after_start`` collects once and freezes what
is left (``gc.freeze``: moved to a permanent generation the collector no longer
walks; nothing of it is ever freed, and nothing of it is garbage: it is what the
process runs on), and raises generation 0's threshold so that short bursts of
requests are not interrupted every few hundred allocations. The same benchmark then
had no full collection during the workload and ~17 young ones (~9 ms in all), at the
same RSS. Cycles made while serving are still found, later and in fewer passes.
"""

from __future__ import annotations

import gc
from typing import Final

# Allocations (net) between two generation 0 collections (CPython's default is 700).
GEN0_THRESHOLD: Final = 5000


def settle_after_start() -> None:
    """Collect, freeze the start-up heap, and raise generation 0's threshold."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
