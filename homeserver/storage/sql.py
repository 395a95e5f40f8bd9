"""Small SQL text helpers shared by every store module (both engines)."""

from __future__ import annotations


def placeholders(n: int, start: int = 1) -> str:
    """``$start, $start+1, ...``: ``n`` numbered placeholders for an ``IN (...)`` list.

    Stores bind IN lists value by value (no array types: SQLite has none), so
    the statement text needs one numbered placeholder per value.
    """
    return ", ".join(f"${i}" for i in range(start, start + n))


def per_room_bounds(column: str, op: str, rooms: int, start: int) -> str:
    """``(room_nid = $start AND column op $start+1) OR ...`` for ``rooms`` rooms, each
    with a bound of its own (bind room nid, bound pairs in order): a batch read over
    many rooms in one statement."""
    return " OR ".join(
        f"(room_nid = ${start + 2 * i} AND {column} {op} ${start + 2 * i + 1})"
        for i in range(rooms)
    )
