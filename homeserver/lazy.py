"""A part of the server built on its first use, so that its modules load only then.

Every module a process imports stays resident for the life of the process (its code
objects, classes and tables). An idle server, or one whose users never call a rarely
used feature (sliding sync, URL previews), should not pay for it: the composition root
hands such a feature over as ``OnFirstUse(build)``, where ``build`` imports the
feature's modules inside the function, and the handler calls ``get()`` per request
(issue 15 #9, resident memory; benchmarks/README.md, rss-idle).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class OnFirstUse(Generic[T]):
    """``build()`` once, on the first ``get()``; the same object ever after.

    Used from the event loop's thread only, so no lock: ``build`` must not await.
    """

    def __init__(self, build: Callable[[], T]) -> None:
        self._build: Callable[[], T] | None = build
        self._value: T | None = None

    @property
    def built(self) -> bool:
        return self._build is None

    def get(self) -> T:
        if self._build is not None:
            self._value = self._build()
            self._build = None
        return self._value  # type: ignore[return-value]
