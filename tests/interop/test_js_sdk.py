"""matrix-js-sdk 37.5.0, from Node, against a Myelin: what a new user of the SDK would try.

``tests/interop/js/check.mjs`` registers two users, logs them in and starts syncing clients
(the SDK fetches ``/versions``, ``/capabilities``, ``/pushrules/``, uploads a filter and syncs
with it), creates a room, invites, joins, sends 30 messages and watches them arrive in order,
redacts one, pages back from a short initial sync on a new device, and leaves. The same script
runs against Synapse, which shows it asks for what the spec promises and not our habits.

The SDK is installed with ``npm ci`` from the committed ``package-lock.json`` into
``tests/interop/js/node_modules`` (ignored by git) and reinstalled only when the lock file
changes. Without Node 20+ and npm the test skips, saying so, except in CI (``CI=true``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.interop.conftest import Homeserver

pytestmark = pytest.mark.interop

JS_DIR = Path(__file__).resolve().parent / "js"
LOCK = JS_DIR / "package-lock.json"
STAMP = JS_DIR / "node_modules" / ".myelin-lock-sha256"
SCRIPT_TIMEOUT_S = 150.0


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with matrix-js-sdk installed next to the script."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("matrix-js-sdk check needs node (20 or later) and npm on PATH")
        raise AssertionError("unreachable")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < 20:
        _unavailable(f"matrix-js-sdk 37.5.0 needs Node 20 or later; found {version.stdout}")
    want = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text() != want:
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if installed.returncode != 0:
            pytest.fail(f"npm ci failed in {JS_DIR}:\n{installed.stdout}\n{installed.stderr}")
        STAMP.write_text(want)
    return node


async def test_js_sdk_client_journey(node: str, homeserver_url: Homeserver) -> None:
    # The servers run on this event loop, so the script runs as an asyncio subprocess.
    proc = await asyncio.create_subprocess_exec(
        node,
        "check.mjs",
        cwd=JS_DIR,
        env={**os.environ, "MATRIX_BASE_URL": homeserver_url.base_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), SCRIPT_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"check.mjs did not finish in {SCRIPT_TIMEOUT_S} s")
    text = output.decode(errors="replace")
    print(text)  # shown with -rP: the steps, and requests the SDK made that got an error status
    assert proc.returncode == 0, f"check.mjs against {homeserver_url.kind} failed:\n{text}"
    assert "OK" in text.splitlines(), text


async def test_js_sdk_sliding_sync(node: str, homeserver_url: Homeserver) -> None:
    """``sliding.mjs``: the SDK's ``SlidingSync`` class (simplified sliding sync, MSC4186)
    drives a room list and a room subscription; against Synapse too, which shows the script
    asks only what MSC4186 promises."""
    proc = await asyncio.create_subprocess_exec(
        node,
        "sliding.mjs",
        cwd=JS_DIR,
        env={**os.environ, "MATRIX_BASE_URL": homeserver_url.base_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), SCRIPT_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"sliding.mjs did not finish in {SCRIPT_TIMEOUT_S} s")
    text = output.decode(errors="replace")
    print(text)
    assert proc.returncode == 0, f"sliding.mjs against {homeserver_url.kind} failed:\n{text}"
    assert "OK" in text.splitlines(), text
