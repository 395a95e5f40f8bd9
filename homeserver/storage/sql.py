"""Small SQL text helpers shared by every store module (both engines)."""

from __future__ import annotations


def placeholders(n: int, start: int = 1) -> str:
    """``$start, $start+1, ...``: ``n`` numbered placeholders for an ``IN (...)`` list.

    Stores bind IN lists value by value (no array types: SQLite has none), so
    the statement text needs one numbered placeholder per value.
    """
    return ", ".join(f"${i}" for i in range(start, start + n))
