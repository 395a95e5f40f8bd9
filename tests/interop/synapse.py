"""A real Synapse on 127.0.0.1 for interop tests: config, start, registration, stop.

Synapse (``matrix-synapse`` from PyPI) lives in its own venv, ``.venv-synapse``, installed
by ``scripts/setup-synapse`` (``scripts/test`` runs it). Each server gets a temporary
directory with a generated ``homeserver.yaml``, a SQLite database, a signing key, a
self-signed TLS certificate and its logs, and runs as a subprocess:

- server name ``127.0.0.1:FEDPORT``, so other servers reach it by IP literal and port;
- a plain HTTP client listener on ``127.0.0.1:CLIENTPORT`` (client API and admin API);
- a TLS federation listener on ``127.0.0.1:FEDPORT`` (federation and key server);
- open registration without verification, a registration shared secret, rate limits
  raised far beyond what a test reaches, short federation back-off, no /sync response cache;
- outbound federation allowed to loopback only as far as this file is concerned: TLS
  verification off, no trusted key servers, no identity server, no stats reporting.

Nothing here needs Synapse importable from the test venv: the one fact taken from
Synapse's own code (its default IP range blocklist) is asked of the Synapse venv.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from homeserver.events.keys import encode_signing_key_line, generate_signing_key
from homeserver.tls import write_self_signed
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SYNAPSE_VENV = Path(os.environ.get("MYELIN_SYNAPSE_VENV", ROOT / ".venv-synapse"))
SYNAPSE_PYTHON = SYNAPSE_VENV / "bin" / "python"
STAMP = SYNAPSE_VENV / ".myelin-install-stamp"

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_CHARS = 20_000

# Every rate limiter Synapse has, raised so that no test is slowed or refused by one.
_UNLIMITED = {"per_second": 10_000, "burst_count": 100_000}
RATE_LIMITS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {
        "address": _UNLIMITED,
        "account": _UNLIMITED,
        "failed_attempts": _UNLIMITED,
    },
    "rc_admin_redaction": _UNLIMITED,
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_invites": {
        "per_room": _UNLIMITED,
        "per_user": _UNLIMITED,
        "per_issuer": _UNLIMITED,
    },
    "rc_third_party_invite": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
    "rc_profile": _UNLIMITED,
    "rc_federation": {
        "window_size": 1000,
        "sleep_limit": 10_000,
        "sleep_delay": 0,
        "reject_limit": 10_000,
        "concurrent": 1000,
    },
    "federation_rr_transactions_per_room_per_second": 10_000,
}

LOOPBACK_RANGES = ("127.0.0.0/8", "::1/128")


class SynapseUnavailable(Exception):
    """Synapse is not installed in ``.venv-synapse``."""


def synapse_installed() -> bool:
    return SYNAPSE_PYTHON.is_file() and STAMP.is_file()


@functools.cache
def default_ip_range_blocklist() -> tuple[str, ...]:
    """Synapse's own default blocklist of private/unroutable ranges, from the installed Synapse."""
    out = subprocess.run(
        [
            str(SYNAPSE_PYTHON),
            "-c",
            "import json; from synapse.config.server import DEFAULT_IP_RANGE_BLOCKLIST as b;"
            " print(json.dumps(b))",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return tuple(json.loads(out.stdout))


def synapse_config(
    base_dir: Path, client_port: int, federation_port: int, **overrides: Any
) -> dict[str, Any]:
    """The homeserver.yaml content for a test Synapse; ``overrides`` replace top-level keys."""
    server_name = f"127.0.0.1:{federation_port}"
    blocklist = [r for r in default_ip_range_blocklist() if r not in LOOPBACK_RANGES]
    config: dict[str, Any] = {
        "server_name": server_name,
        "public_baseurl": f"http://127.0.0.1:{client_port}/",
        "pid_file": str(base_dir / "homeserver.pid"),
        "report_stats": False,
        "listeners": [
            {
                "port": client_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            },
            {
                "port": federation_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": True,
                "x_forwarded": False,
                "resources": [{"names": ["federation"], "compress": False}],
            },
        ],
        "tls_certificate_path": str(base_dir / "tls.crt"),
        "tls_private_key_path": str(base_dir / "tls.key"),
        "database": {"name": "sqlite3", "args": {"database": str(base_dir / "homeserver.db")}},
        "log_config": str(base_dir / "log.config"),
        "media_store_path": str(base_dir / "media_store"),
        "signing_key_path": str(base_dir / "signing.key"),
        "macaroon_secret_key": secrets.token_hex(32),
        "form_secret": secrets.token_hex(32),
        "registration_shared_secret": secrets.token_hex(32),
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "enable_metrics": False,
        # Synapse answers a repeated /sync (same user, since, filter) from a cache for 2 minutes
        # by default; tests poll /sync for what federation brought in and need fresh answers.
        "caches": {"sync_response_cache_duration": 0},
        "url_preview_enabled": False,
        "presence": {"enabled": True},
        "user_directory": {"enabled": True, "search_all_users": True},
        # Local users may publish rooms in the directory (Synapse's default is "nobody").
        "room_list_publication_rules": [{"action": "allow"}],
        "allow_public_rooms_over_federation": True,
        # Federation on loopback: self-signed peers, IP-literal names, no notaries, and
        # Synapse's private-range blocklist without the loopback ranges (an allowlist
        # alone is not enough for IP-literal server names).
        "federation_verify_certificates": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "ip_range_blacklist": blocklist,
        "ip_range_whitelist": list(LOOPBACK_RANGES),
        "federation": {
            # Durations in milliseconds (Synapse's suffixes stop at "s").
            "destination_min_retry_interval": 500,
            "destination_retry_multiplier": 2,
            "destination_max_retry_interval": 5000,
            "max_short_retry_delay": 500,
            "max_long_retry_delay": 2000,
        },
        # No traffic leaves the machine: no identity server, no push gateway by default.
        "default_identity_server": None,
        "account_threepid_delegates": {},
        **RATE_LIMITS,
    }
    config.update(overrides)
    return config


def log_config(log_file: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "formatters": {
            "precise": {
                "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(message)s"
            }
        },
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": str(log_file),
                "encoding": "utf8",
            }
        },
        "root": {"level": "WARNING", "handlers": ["file"]},
        "disable_existing_loggers": False,
    }


@dataclass
class RegisteredUser:
    user_id: str
    access_token: str
    device_id: str
    password: str


@dataclass
class SynapseServer:
    """One Synapse subprocess and its files; ``start``/``stop`` may be called again (restart)."""

    base_dir: Path
    client_port: int
    federation_port: int
    config: dict[str, Any] = field(repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def server_name(self) -> str:
        return str(self.config["server_name"])

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def federation_url(self) -> str:
        return f"https://127.0.0.1:{self.federation_port}"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "homeserver.log"

    @property
    def output_file(self) -> Path:
        """Synapse's own stdout/stderr (start-up errors land here, not in the log)."""
        return self.base_dir / "output.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        with self.output_file.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    str(SYNAPSE_PYTHON),
                    "-m",
                    "synapse.app.homeserver",
                    "--config-path",
                    str(self.base_dir / "homeserver.yaml"),
                ],
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**_clean_env(), "SYNAPSE_CACHE_FACTOR": "1"},
                start_new_session=True,
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        url = self.client_url + "/_matrix/client/versions"
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Synapse exited with status {self.process.returncode} during start-up\n"
                    + self.logs()
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"Synapse did not answer /versions within {START_TIMEOUT_S:.0f}s\n"
                    + self.logs()
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if Synapse has not exited within STOP_TIMEOUT_S."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)

    def restart(self) -> None:
        self.stop()
        self.start()

    def logs(self) -> str:
        """The tails of Synapse's output and log file, for failure reports."""
        parts = []
        for path in (self.output_file, self.log_file):
            text = path.read_text(errors="replace") if path.exists() else ""
            if len(text) > LOG_TAIL_CHARS:
                text = "[...]\n" + text[-LOG_TAIL_CHARS:]
            parts.append(f"----- {path} -----\n{text or '(empty)'}")
        return "\n".join(parts)

    def register(
        self, username: str, password: str | None = None, *, admin: bool = False
    ) -> RegisteredUser:
        """Create a user through the shared-secret admin API (no UIA, no rate limit)."""
        password = password or secrets.token_urlsafe(16)
        nonce_url = self.client_url + "/_synapse/admin/v1/register"
        nonce = _http_json("GET", nonce_url)["nonce"]
        mac = hmac.new(
            str(self.config["registration_shared_secret"]).encode(),
            b"\x00".join(
                [
                    nonce.encode(),
                    username.encode(),
                    password.encode(),
                    b"admin" if admin else b"notadmin",
                ]
            ),
            hashlib.sha1,
        ).hexdigest()
        body = _http_json(
            "POST",
            nonce_url,
            {
                "nonce": nonce,
                "username": username,
                "password": password,
                "admin": admin,
                "mac": mac,
            },
        )
        return RegisteredUser(body["user_id"], body["access_token"], body["device_id"], password)


def _clean_env() -> dict[str, str]:
    """Our environment without the test venv's Python settings, which would confuse Synapse's."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _http_json(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 (the URL is our own loopback server)
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{method} {url}: {exc.code} {exc.read()[:500]!r}") from None


def create_synapse(base_dir: Path, **overrides: Any) -> SynapseServer:
    """Write the files of a new Synapse into ``base_dir`` (ports picked now); do not start it."""
    if not synapse_installed():
        raise SynapseUnavailable(
            f"Synapse is not installed in {SYNAPSE_VENV}; run scripts/setup-synapse"
        )
    base_dir.mkdir(parents=True, exist_ok=True)
    client_port, federation_port = free_port(), free_port()
    while federation_port == client_port:
        federation_port = free_port()
    config = synapse_config(base_dir, client_port, federation_port, **overrides)
    key = generate_signing_key("a_" + secrets.token_hex(2))
    (base_dir / "signing.key").write_text(encode_signing_key_line(key) + "\n")
    write_self_signed(config["server_name"], base_dir / "tls.crt", base_dir / "tls.key")
    (base_dir / "log.config").write_text(yaml.safe_dump(log_config(base_dir / "homeserver.log")))
    (base_dir / "homeserver.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return SynapseServer(base_dir, client_port, federation_port, config)


def start_synapse(base_dir: Path, **overrides: Any) -> SynapseServer:
    """Create and start a Synapse; it answers ``/_matrix/client/versions`` when this returns."""
    server = create_synapse(base_dir, **overrides)
    server.start()
    return server


if __name__ == "__main__":  # manual use: `python -m tests.interop.synapse`, Ctrl-C stops it
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        srv = start_synapse(Path(tmp))
        print(
            f"Synapse {srv.server_name}: client API {srv.client_url}, federation"
            f" {srv.federation_url}, files in {tmp} (started in {time.monotonic() - started:.1f}s)"
        )
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
        finally:
            srv.stop()
