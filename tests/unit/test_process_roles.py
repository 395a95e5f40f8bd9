"""Roles of the processes (homeserver/process_roles.py) and how the config checks them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver import process_roles as pr
from homeserver.config import ConfigError, parse_config

PG = "postgresql://u@127.0.0.1/db"


def config(tmp_path: Path, **raw: Any) -> Any:
    return parse_config({"server_name": "example.org", "database_url": PG, **raw}, tmp_path)


def test_main_does_everything_and_a_worker_without_roles_is_a_client_worker() -> None:
    workers: dict[str, list[str] | None] = {"w1": None, "s1": ["federation_sender"]}
    assert pr.roles_of("main", None, workers) == set(pr.ROLES)
    assert pr.roles_of("w1", None, workers) == {"client"}
    assert pr.roles_of("s1", None, workers) == {"federation_sender"}
    # main keeps the client API (health, admin) whatever main_roles says.
    assert pr.roles_of("main", ["background"], workers) == {"client", "background"}
    assert pr.processes_with("federation_sender", None, workers) == ["main", "s1"]
    assert pr.processes_with("federation_sender", ["client"], workers) == ["s1"]
    # Rate limits are split over the processes that serve clients: main and w1, not s1.
    assert pr.client_processes(None, workers) == 2
    assert pr.client_processes(None, {**workers, "y": ["sync"]}) == 3


def test_shards_are_stable_and_spread() -> None:
    destinations = [f"server{i}.example" for i in range(300)]
    shards = [pr.shard_of(d, 3) for d in destinations]
    assert shards == [pr.shard_of(d, 3) for d in destinations]  # same in every process
    assert pr.shard_of("matrix.org", 3) == 0  # sha256, never the salted hash()
    assert all(shards.count(i) > 60 for i in range(3))


def test_roles_in_the_config(tmp_path: Path) -> None:
    c = config(
        tmp_path,
        main_roles=["client", "federation_inbound"],
        workers={
            "sync1": {"client_port": 8010, "roles": ["sync"]},
            "sender1": {"roles": ["federation_sender", "background"]},
            "fed1": {"client_port": 8011, "federation_port": 8449, "roles": ["federation_inbound"]},
        },
        worker_lease_ms=2000,
    )
    assert c.workers["sender1"].client_port == 0  # no client listener: no port needed
    assert c.worker_lease_ms == 2000
    with pytest.raises(ConfigError, match=r"workers\.w\.roles: unknown role 'mailer'"):
        config(tmp_path, workers={"w": {"client_port": 8010, "roles": ["mailer"]}})
    with pytest.raises(ConfigError, match=r"workers\.f\.federation_port"):
        config(tmp_path, workers={"f": {"client_port": 8010, "roles": ["federation_inbound"]}})
    with pytest.raises(ConfigError, match="federation_sender role"):
        config(tmp_path, main_roles=["background"], workers={"w": {"client_port": 8010}})
    with pytest.raises(ConfigError, match="background role"):
        config(tmp_path, main_roles=[], workers={"w": {"roles": ["federation_sender"]}})
    with pytest.raises(ConfigError, match=r"workers\.w\.client_port"):
        config(tmp_path, workers={"w": {"roles": ["sync"]}})
    with pytest.raises(ConfigError, match="worker_lease_ms"):
        config(tmp_path, workers={"w": {"client_port": 8010}}, worker_lease_ms=10)
