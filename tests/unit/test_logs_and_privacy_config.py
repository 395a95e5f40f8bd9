"""The log formats (request id on every line) and the logging/metrics/privacy config checks."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from homeserver.config import ConfigError, parse_config, parse_duration_ms
from homeserver.logs import make_log_handler, new_request_id, request_id


def _log_through(log_format: str, rid: str | None) -> str:
    stream = io.StringIO()
    logger = logging.getLogger("myelin.test.formats")
    handler = make_log_handler(stream, log_format)
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    token = request_id.set(rid) if rid is not None else None
    try:
        logger.info("event %s stored", "$abc")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        if token is not None:
            request_id.reset(token)
        logger.removeHandler(handler)
    return stream.getvalue()


def test_text_lines_carry_the_request_id() -> None:
    rid = new_request_id()
    first = _log_through("text", rid).splitlines()[0]
    assert first.endswith(f"INFO myelin.test.formats [{rid}]: event $abc stored")
    outside = _log_through("text", None).splitlines()[0]
    assert outside.endswith("[-]: event $abc stored")


def test_json_lines_parse_one_by_one() -> None:
    rid = new_request_id("job")
    assert rid.startswith("job-")
    lines = [json.loads(line) for line in _log_through("json", rid).splitlines()]
    assert len(lines) == 2  # the traceback stays inside its line
    assert lines[0]["msg"] == "event $abc stored" and lines[0]["request_id"] == rid
    assert lines[0]["level"] == "INFO" and lines[0]["ts"].endswith("Z")
    assert lines[1]["level"] == "ERROR" and "ValueError: boom" in lines[1]["exc"]


@pytest.mark.parametrize(
    ("text", "ms"),
    [("250ms", 250), ("30s", 30_000), ("15m", 900_000), ("12h", 43_200_000), ("2w", 1_209_600_000)],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "d", "12", "1.5h", "-1d", "3 days", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(text)


def _config(tmp_path: Path, **extra: Any) -> Any:
    return parse_config({"server_name": "example.org", **extra}, tmp_path)


def test_defaults_and_overrides(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert config.metrics.enabled is False and config.logging.format == "text"
    assert config.privacy.store_client_ips is True
    assert config.privacy.client_ip_retention_ms == parse_duration_ms("28d")
    config = _config(
        tmp_path,
        log_level="INFO",
        logging={"format": "json", "level": "debug"},
        privacy={"client_ip_retention": None},
    )
    assert config.log_level == "debug" and config.privacy.client_ip_retention_ms is None


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"logging": {"format": "xml"}}, "logging.format"),
        ({"logging": {"level": "LOUD"}}, "logging.level"),
        ({"metrics": {"port": 70000}}, "metrics.port"),
        ({"metrics": {"bind": "127.0.0.1"}}, "metrics.bind"),
        ({"privacy": {"client_ip_retention": "soon"}}, "privacy.client_ip_retention"),
        ({"privacy": {"client_ip_retention": "10ms"}}, "privacy.client_ip_retention"),
        ({"privacy": {"store_client_ips": "no"}}, "privacy.store_client_ips"),
    ],
)
def test_bad_values_name_their_key(tmp_path: Path, extra: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        _config(tmp_path, **extra)
    assert str(e.value).startswith(key + ":")
