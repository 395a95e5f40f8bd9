"""Lists of server names from the config, with ``*`` patterns ("*.example.org").

Used by the federation allow/deny lists and by invite protection. Server
names compare case-insensitively (DNS names are); a pattern's ``*`` matches
any run of characters, including dots, and nothing else is special. An entry
without a port covers every port of that host ("evil.example" also refuses
"evil.example:8448"); an entry with a port covers only that port.
"""

from __future__ import annotations

import re


def _regex(pattern: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in pattern.lower().split("*")]
    return re.compile(".*".join(parts) + r"\Z", re.DOTALL)


def _has_port(name: str) -> bool:
    return "]:" in name if name.startswith("[") else ":" in name


def _host(name: str) -> str:
    """The host part of a server name (spec appendices "Server Name")."""
    if name.startswith("["):
        return name[: name.find("]") + 1] if "]" in name else name
    return name.partition(":")[0]


class ServerNameList:
    def __init__(self, patterns: list[str]) -> None:
        self._exact = {p.lower() for p in patterns if "*" not in p}
        self._patterns = [(_regex(p), _has_port(p)) for p in patterns if "*" in p]

    def __bool__(self) -> bool:
        return bool(self._exact or self._patterns)

    def matches(self, server_name: str) -> bool:
        name = server_name.lower()
        host = _host(name)
        if name in self._exact or host in self._exact:
            return True
        return any(regex.match(name if port else host) for regex, port in self._patterns)


class ServerPolicy:
    """federation.allow_list / deny_list: whether this server talks to another."""

    def __init__(self, allow: list[str] | None, deny: list[str]) -> None:
        self._allow = None if allow is None else ServerNameList(allow)
        self._deny = ServerNameList(deny)

    def allows(self, server_name: str) -> bool:
        if self._deny.matches(server_name):
            return False
        return self._allow is None or self._allow.matches(server_name)
