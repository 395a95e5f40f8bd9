"""Fixtures for interop tests: a real Synapse, and one test module run against both servers.

- ``synapse_server``: one Synapse per test module (a start costs about 3 s), already answering
  ``/_matrix/client/versions``. Tests that share it must use their own user names.
- ``make_synapse(**config_overrides)``: fresh Synapses for one test (other config, restarts).
- ``homeserver_url``: parametrized over ``myelin`` and ``synapse``; a ``Homeserver``
  (``base_url``, ``server_name``, ``kind``) that unpacks as ``(base_url, server_name, kind)``.

Synapse comes from ``.venv-synapse`` (``scripts/setup-synapse``). When it is missing the
Synapse tests skip, saying so, except in CI (``CI=true``) where they fail. When a test fails,
the logs of every running Synapse are attached to its report.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tests.conftest import ServerFactory
from tests.interop.synapse import SYNAPSE_VENV, SynapseServer, start_synapse, synapse_installed

SynapseFactory = Callable[..., SynapseServer]

# Synapses started by the fixtures below and not yet stopped: their logs go into failure reports.
_live: list[SynapseServer] = []


class Homeserver(NamedTuple):
    base_url: str
    server_name: str
    kind: str


def _require_synapse() -> None:
    if synapse_installed():
        return
    message = f"Synapse is not installed in {SYNAPSE_VENV}; run scripts/setup-synapse"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _stop(server: SynapseServer) -> None:
    crashed = server.process is not None and not server.running
    server.stop()
    _live.remove(server)
    if crashed:
        pytest.fail(f"Synapse {server.server_name} died during the test\n{server.logs()}")


@pytest.fixture(scope="module")
def synapse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    """A running Synapse shared by the tests of one module."""
    _require_synapse()
    server = start_synapse(tmp_path_factory.mktemp("synapse"))
    _live.append(server)
    yield server
    _stop(server)


@pytest.fixture
def make_synapse(tmp_path: Path) -> Iterator[SynapseFactory]:
    """Start Synapses for one test; ``overrides`` replace top-level homeserver.yaml keys."""
    _require_synapse()
    started: list[SynapseServer] = []

    def factory(**overrides: Any) -> SynapseServer:
        server = start_synapse(tmp_path / f"synapse{len(started) + 1}", **overrides)
        started.append(server)
        _live.append(server)
        return server

    yield factory
    for server in started:
        _stop(server)


@pytest.fixture(params=["myelin", "synapse"])
async def homeserver_url(
    request: pytest.FixtureRequest, make_server: ServerFactory
) -> AsyncIterator[Homeserver]:
    """The same test against a fresh Myelin and against the module's Synapse."""
    if request.param == "myelin":
        myelin = await make_server()
        yield Homeserver(myelin.client_url, myelin.hs.config.server_name, "myelin")
    else:
        synapse: SynapseServer = request.getfixturevalue("synapse_server")
        yield Homeserver(synapse.client_url, synapse.server_name, "synapse")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        for server in _live:
            report.sections.append((f"Synapse {server.server_name} logs", server.logs()))
