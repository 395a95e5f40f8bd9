"""config.example.yaml documents every option of homeserver/config.py, with the real defaults."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from homeserver.config import Config, parse_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.yaml"


def _field_paths(cls: Any, prefix: str = "") -> list[str]:
    """Every option of a config dataclass, recursively, as dotted paths."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        out.append(path)
        if dataclasses.is_dataclass(hints[f.name]):
            out += _field_paths(hints[f.name], path + ".")
    return out


def _lookup(data: Any, path: str) -> tuple[bool, Any]:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


def _example() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_example_parses() -> None:
    config = parse_config(_example(), ROOT)
    assert config.server_name == "example.com"
    assert config.database_url == f"sqlite:///{ROOT / 'homeserver.db'}"


def test_example_has_every_option() -> None:
    data = _example()
    missing = [p for p in _field_paths(Config) if not _lookup(data, p)[0]]
    assert not missing, f"config.example.yaml lacks: {missing}"


def test_example_values_are_the_defaults() -> None:
    """Apart from server_name, the example shows each option's default."""
    data = _example()
    defaults = dataclasses.asdict(Config())
    differing = []
    for path in _field_paths(Config):
        if path == "server_name":
            continue
        _, value = _lookup(data, path)
        _, default = _lookup(defaults, path)
        if isinstance(default, dict):
            continue
        if path in ("signing_key_path", "tls_certificate_path", "tls_private_key_path"):
            continue  # empty default means the file name shown
        if value != default:
            differing.append((path, value, default))
    assert not differing
