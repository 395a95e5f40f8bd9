"""Application-service registration files, read as Synapse reads them.

Bridges ship a ``registration.yaml`` that operators list under
``app_service_config_files``; the same file must work here unchanged, so the
keys and their checks follow Synapse's loader: ``id``, ``as_token``,
``hs_token`` and ``sender_localpart`` are required strings, ``url`` is
required but may be null (then nothing is pushed to the service),
``namespaces`` holds ``users``/``aliases``/``rooms`` lists of
``{exclusive: bool, regex: str}``, ``rate_limited`` defaults to true,
``protocols`` is a list of strings, and ephemeral events are asked for with
``receive_ephemeral`` (or the MSC2409 name ``de.sorunome.msc2409.push_ephemeral``).
Regexes match the whole id (``re.fullmatch``), as the spec's examples assume.
A bad file stops the start-up with a ``RegistrationError`` naming file and key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NAMESPACE_KINDS = ("users", "aliases", "rooms")
_LOCALPART = re.compile(r"[a-z0-9._=/+-]+")


class RegistrationError(ValueError):
    """A registration file that cannot be used (the message names file and key)."""


@dataclass(frozen=True, slots=True)
class Namespace:
    exclusive: bool
    regex: re.Pattern[str]


@dataclass(frozen=True)
class AppService:
    id: str
    url: str | None
    as_token: str
    hs_token: str
    sender: str  # @sender_localpart:server_name
    users: tuple[Namespace, ...] = ()
    aliases: tuple[Namespace, ...] = ()
    rooms: tuple[Namespace, ...] = ()
    rate_limited: bool = True
    protocols: tuple[str, ...] = ()
    receive_ephemeral: bool = False
    source: str = field(default="", compare=False)

    # ------------------------------------------------------------ namespaces

    def is_interested_in_user(self, user_id: str) -> bool:
        """The sender or a user id in the users namespace (exclusive or not)."""
        return user_id == self.sender or _matches(self.users, user_id)

    def is_exclusive_user(self, user_id: str) -> bool:
        return user_id == self.sender or _matches(self.users, user_id, exclusive_only=True)

    def is_interested_in_alias(self, alias: str) -> bool:
        return _matches(self.aliases, alias)

    def is_exclusive_alias(self, alias: str) -> bool:
        return _matches(self.aliases, alias, exclusive_only=True)

    def is_interested_in_room(self, room_id: str) -> bool:
        return _matches(self.rooms, room_id)


def _matches(spaces: tuple[Namespace, ...], value: str, exclusive_only: bool = False) -> bool:
    return any((ns.exclusive or not exclusive_only) and ns.regex.fullmatch(value) for ns in spaces)


def _flag(info: dict[str, Any], where: str, *keys: str) -> bool:
    for key in keys:
        value = info.get(key)
        if value is not None and not isinstance(value, bool):
            raise RegistrationError(f"{where}: '{key}' must be true or false")
        if value:
            return True
    return False


def _namespaces(info: dict[str, Any], where: str) -> dict[str, tuple[Namespace, ...]]:
    raw = info.get("namespaces")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RegistrationError(f"{where}: 'namespaces' must be a mapping")
    out: dict[str, tuple[Namespace, ...]] = {}
    for kind in NAMESPACE_KINDS:
        entries = raw.get(kind)
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise RegistrationError(f"{where}: 'namespaces.{kind}' must be a list")
        spaces = []
        for i, entry in enumerate(entries):
            key = f"namespaces.{kind}[{i}]"
            if not isinstance(entry, dict):
                raise RegistrationError(f"{where}: '{key}' must be a mapping")
            exclusive = entry.get("exclusive")
            if not isinstance(exclusive, bool):
                raise RegistrationError(f"{where}: '{key}.exclusive' must be true or false")
            regex = entry.get("regex")
            if not isinstance(regex, str):
                raise RegistrationError(f"{where}: '{key}.regex' must be a string")
            try:
                spaces.append(Namespace(exclusive, re.compile(regex)))
            except re.error as e:
                raise RegistrationError(f"{where}: '{key}.regex' is invalid: {e}") from None
        out[kind] = tuple(spaces)
    return out


def parse_registration(info: Any, server_name: str, where: str) -> AppService:
    """One registration (the parsed YAML of one file)."""
    if not isinstance(info, dict):
        raise RegistrationError(f"{where}: a registration must be a YAML mapping")
    for key in ("id", "as_token", "hs_token", "sender_localpart"):
        if not isinstance(info.get(key), str) or not info[key]:
            raise RegistrationError(f"{where}: '{key}' is required and must be a string")
    if "url" not in info:
        raise RegistrationError(f"{where}: 'url' is required (null to push nothing)")
    url = info["url"]
    if url is not None and (
        not isinstance(url, str) or not url.startswith(("http://", "https://"))
    ):
        raise RegistrationError(f"{where}: 'url' must be an http(s) URL or null")
    localpart = info["sender_localpart"]
    if not _LOCALPART.fullmatch(localpart):
        raise RegistrationError(f"{where}: 'sender_localpart' is not a valid user localpart")
    rate_limited = info.get("rate_limited", True)
    if not isinstance(rate_limited, bool):
        raise RegistrationError(f"{where}: 'rate_limited' must be true or false")
    protocols = info.get("protocols") or []
    if not isinstance(protocols, list) or not all(isinstance(p, str) for p in protocols):
        raise RegistrationError(f"{where}: 'protocols' must be a list of strings")
    spaces = _namespaces(info, where)
    return AppService(
        id=info["id"],
        url=url.rstrip("/") if isinstance(url, str) else None,
        as_token=info["as_token"],
        hs_token=info["hs_token"],
        sender=f"@{localpart}:{server_name}",
        users=spaces["users"],
        aliases=spaces["aliases"],
        rooms=spaces["rooms"],
        rate_limited=rate_limited,
        protocols=tuple(protocols),
        receive_ephemeral=_flag(
            info, where, "receive_ephemeral", "de.sorunome.msc2409.push_ephemeral", "push_ephemeral"
        ),
        source=where,
    )


def load_registrations(paths: list[str], server_name: str) -> list[AppService]:
    """Every file of ``app_service_config_files``; ids and tokens must be unique."""
    services: list[AppService] = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise RegistrationError(f"{path}: cannot read: {e.strerror}") from None
        try:
            info = yaml.safe_load(text)
        except yaml.YAMLError:
            raise RegistrationError(f"{path}: invalid YAML") from None
        services.append(parse_registration(info, server_name, path))
    seen: set[tuple[str, str]] = set()
    for s in services:
        for kind, value in (("id", s.id), ("as_token", s.as_token), ("hs_token", s.hs_token)):
            if (kind, value) in seen:
                raise RegistrationError(f"{s.source}: '{kind}' is used by another registration")
            seen.add((kind, value))
    return services
