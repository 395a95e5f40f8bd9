"""`myelin run` with ``logging.format: json`` and the metrics listener, as an operator runs it."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Api
from tests.integration.test_cli import (  # the `database_url` fixture comes along
    database_url,  # noqa: F401
    free_port,
    generate,
    run_server,
)


async def test_run_logs_json_lines_and_serves_metrics(
    tmp_path: Path,
    database_url: str | None,  # noqa: F811
) -> None:
    data_dir = tmp_path / "data"
    client_port, _ = await generate(data_dir, database_url, "--open-registration")
    config_path = data_dir / "homeserver.yaml"
    config = yaml.safe_load(config_path.read_text())
    metrics_port = free_port()
    config["logging"] = {"format": "json", "level": "INFO"}
    config["metrics"] = {"enabled": True, "bind_address": "127.0.0.1", "port": metrics_port}
    config_path.write_text(yaml.safe_dump(config))
    families: list[str] = []

    async def check(url: str) -> None:
        async with Api(url) as api:
            await api.register("alice", "pw-Kestrel-4471")
        base = f"http://127.0.0.1:{metrics_port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
            async with session.get(base + "/health") as resp:
                assert (resp.status, await resp.text()) == (200, "OK")
        families.extend(f.name for f in text_string_to_metric_families(text))

    rc, err = await run_server(config_path, client_port, check, signal.SIGTERM)
    assert rc == 0, err
    assert "myelin_http_requests" in families and "myelin_database_connections" in families
    lines: list[dict[str, Any]] = [json.loads(line) for line in err.splitlines() if line.strip()]
    messages = [line["msg"] for line in lines]
    assert any(m.startswith(f"metrics on http://127.0.0.1:{metrics_port}/") for m in messages)
    (register,) = [
        line
        for line in lines
        if line["logger"] == "myelin.access" and line["route"].endswith("/register")
    ]
    assert register["method"] == "POST" and register["status"] == 200
    assert len(register["request_id"]) == 12
    assert "pw-Kestrel-4471" not in err
