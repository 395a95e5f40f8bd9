"""A running server does not load what only some requests or commands need: Pillow
(thumbnails, URL previews), cryptography (generate-config's certificate) and aiosmtplib
(mail) are imported on first use. Together they were ~11 MiB of the idle server's
resident memory (benchmarks/README.md, 2026-12-06)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAZY = ("PIL", "cryptography", "aiosmtplib")

PROBE = (
    "import sys, homeserver.__main__, homeserver.app, federation\n"
    f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({LAZY!r}))))\n"
)


def test_server_modules_do_not_import_the_lazy_libraries() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_lazy_libraries_load_on_first_use() -> None:
    probe = (
        "import sys, pathlib, tempfile\n"
        "from homeserver.tls import write_self_signed\n"
        "from homeserver.media.preview import image_dimensions\n"
        "d = pathlib.Path(tempfile.mkdtemp())\n"
        "write_self_signed('example.org', d / 'c.pem', d / 'k.pem')\n"
        "assert (d / 'c.pem').read_bytes().startswith(b'-----BEGIN CERTIFICATE')\n"
        "assert image_dimensions(b'not an image') is None\n"
        "print('PIL' in sys.modules, 'cryptography' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


# Loaded only where used: SQLite by the SQLite engine (a server on PostgreSQL never
# needs it), importlib.metadata by the two version endpoints. ~1 MiB each of an idle
# server's resident memory (benchmarks/README.md, 2026-12-07).
ON_USE = ("sqlite3", "importlib.metadata")

ON_USE_PROBE = (
    "import sys, homeserver.__main__, homeserver.app, federation\n"
    f"print(' '.join(m for m in {ON_USE!r} if m in sys.modules))\n"
)


def test_server_modules_do_not_import_sqlite_or_package_metadata() -> None:
    done = subprocess.run(
        [sys.executable, "-c", ON_USE_PROBE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_sqlite_and_package_metadata_load_on_first_use() -> None:
    probe = (
        "import asyncio, sys, tempfile\n"
        "from homeserver.storage.database import connect\n"
        "from federation.server import _version\n"
        "from homeserver.api.admin.server import server_version\n"
        "async def main():\n"
        "    db = await connect(f'sqlite:///{tempfile.mkdtemp()}/h.db')\n"
        "    try:\n"
        "        assert await db.fetchval('SELECT 1') == 1\n"
        "    finally:\n"
        "        await db.close()\n"
        "asyncio.run(main())\n"
        "print(_version() == server_version() != 'unknown', *(m in sys.modules for m in"
        f" {ON_USE!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "True"]


# prometheus_client (with wsgiref, http.server and gzip: ~1.1 MiB) only when the metrics
# listener is on (config ``metrics.enabled``, off by default; benchmarks/README.md, tidy4).
METRICS_PROBE = (
    "import asyncio, sys, tempfile, pathlib, aiohttp\n"
    "from homeserver.app import start\n"
    "from tests.conftest import make_config, write_data_dir\n"
    "async def main(enabled):\n"
    "    d = pathlib.Path(tempfile.mkdtemp())\n"
    "    write_data_dir(d, 'localhost')\n"
    "    config = make_config(d, f'sqlite:///{d}/h.db', metrics={'enabled': enabled, 'port': 0})\n"
    "    server = await start(config)\n"
    "    try:\n"
    "        async with aiohttp.ClientSession() as s:\n"
    "            async with s.get(server.client_url + '/_matrix/client/versions') as r:\n"
    "                assert r.status == 200\n"
    "    finally:\n"
    "        await server.stop()\n"
    "    return 'prometheus_client' in sys.modules\n"
    "print(asyncio.run(main(sys.argv[1] == 'on')))\n"
)


def test_prometheus_client_loads_only_with_the_metrics_listener_on() -> None:
    for switch, loaded in (("off", "False"), ("on", "True")):
        done = subprocess.run(
            [sys.executable, "-c", METRICS_PROBE, switch],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [loaded], switch
