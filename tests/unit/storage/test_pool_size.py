"""The PostgreSQL pool's size is the operator's choice (database.pool_size), 10 by default;
a size the server could not work with is refused when the config is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.config import ConfigError, parse_config


def test_default_chosen_and_refused_sizes(tmp_path: Path) -> None:
    base = {"server_name": "example.com", "data_dir": str(tmp_path)}
    assert parse_config(base, tmp_path).database.pool_size == 10
    assert parse_config({**base, "database": {"pool_size": 40}}, tmp_path).database.pool_size == 40
    for bad in (0, 1, 1001, "ten"):
        with pytest.raises(ConfigError, match=r"pool_size"):
            parse_config({**base, "database": {"pool_size": bad}}, tmp_path)
