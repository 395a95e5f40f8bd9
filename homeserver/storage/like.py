"""Substring search in SQL that means the same on SQLite and PostgreSQL."""

from __future__ import annotations


def like_pattern(text: str) -> str:
    """A pattern for ``LOWER(col) LIKE $n ESCAPE '\\'`` matching ``text`` anywhere,
    case-insensitively; ``%``, ``_`` and ``\\`` in ``text`` match only themselves."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
