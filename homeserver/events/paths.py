"""Dot-separated property paths and glob-style matching (spec: Appendices).

Pure helpers shared by push rule conditions and filters' ``event_fields``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

_MISSING = object()


@lru_cache(maxsize=1024)
def split_path(path: str) -> tuple[str, ...]:
    """Split ``content.m\\.relates_to.rel_type`` into its property names.

    Spec (Appendices, "Dot-separated property paths"): ``\\.`` is a literal dot,
    ``\\\\`` a literal backslash, and any other escape is kept as written.
    """
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "\\" and i + 1 < len(path) and path[i + 1] in ".\\":
            current.append(path[i + 1])
            i += 2
            continue
        if ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return tuple(parts)


def lookup(obj: Mapping[str, Any], path: str) -> Any:
    """The value at ``path`` in ``obj``, or ``MISSING`` when any step is absent."""
    value: Any = obj
    for name in split_path(path):
        if not isinstance(value, Mapping) or name not in value:
            return _MISSING
        value = value[name]
    return value


def is_missing(value: Any) -> bool:
    return value is _MISSING


def _glob_body(pattern: str) -> str:
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return "".join(out)


@lru_cache(maxsize=4096)
def glob_regex(
    pattern: str, *, ignore_case: bool = True, word_boundary: bool = False
) -> re.Pattern[str]:
    """Compile a glob (spec: ``*`` any run of characters, ``?`` exactly one).

    Without ``word_boundary`` the glob must match the whole value. With it,
    it must match a substring that starts and ends at a word boundary (the
    ``content.body`` rule of push ``event_match``): the start or end of the
    value, or a character outside ``[A-Za-z0-9_]``.
    """
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    body = _glob_body(pattern)
    if word_boundary:
        return re.compile(rf"(?<![A-Za-z0-9_]){body}(?![A-Za-z0-9_])", flags)
    return re.compile(rf"{body}\Z", flags)


def glob_matches(pattern: str, value: str, *, ignore_case: bool = True) -> bool:
    return glob_regex(pattern, ignore_case=ignore_case).match(value) is not None


def glob_in_words(pattern: str, value: str) -> bool:
    """True when ``pattern`` matches a word-bounded substring of ``value``."""
    return glob_regex(pattern, word_boundary=True).search(value) is not None
