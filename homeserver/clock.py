"""Wall-clock time in milliseconds, injected so services can be tested with a fixed clock."""

from __future__ import annotations

import time


class Clock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)
