"""Media with `myelin run` as a real process: a 20 MiB upload and download are streamed
(the process's peak resident memory, VmHWM from /proc, does not grow by the file's size),
and the `myelin media` commands quarantine a media id and purge the remote cache."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import Api
from tests.integration.media_support import AUTHED, upload_ok
from tests.integration.test_cli import _wait_until_up, database_url, generate, myelin, spawn_run

__all__ = ["database_url"]  # the fixture, used by name below

SIZE = 20 * 1024 * 1024
CHUNK = 256 * 1024
# Growth of the peak RSS allowed across the 20 MiB upload + download: well below the size.
ALLOWED_GROWTH = 8 * 1024 * 1024


def peak_rss(pid: int) -> int:
    """VmHWM (peak resident set) of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def pattern(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (CHUNK // 32)


async def body() -> AsyncIterator[bytes]:
    for i in range(SIZE // CHUNK):
        yield pattern(i)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
async def test_big_upload_is_streamed(tmp_path: Path, database_url: str | None) -> None:
    data_dir = tmp_path / "data"
    client_port, _ = await generate(
        data_dir, database_url, "--open-registration", "--no-rate-limits"
    )
    proc = await spawn_run(data_dir / "homeserver.yaml")
    url = f"http://127.0.0.1:{client_port}"
    try:
        await _wait_until_up(url, proc, rounds=1200)  # bounded: at most ~60 s
        async with Api(url) as api:
            alice = await api.register("alice")
            # Warm up every code path once (imports, pools, buffers) with a small file.
            s, m = await upload_ok(api, alice, os.urandom(512 * 1024), "application/octet-stream")
            assert (
                await api.get(f"{AUTHED}/download/{s}/{m}", token=alice.access_token)
            ).status == 200
            # Start-up (imports, migrations) peaks higher than a 20 MiB copy would reach:
            # reset the peak to the current resident size first (Linux clear_refs "5").
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
            before = peak_rss(proc.pid)

            assert api.session is not None
            auth = {"Authorization": f"Bearer {alice.access_token}"}
            async with api.session.post(
                url + "/_matrix/media/v3/upload?filename=big.bin",
                data=body(),
                headers={**auth, "Content-Type": "application/octet-stream"},
            ) as resp:
                assert resp.status == 200, await resp.text()
                uri = (await resp.json())["content_uri"]
            s, _, m = uri[len("mxc://") :].partition("/")
            digest = hashlib.sha256()
            size = 0
            async with api.session.get(f"{url}{AUTHED}/download/{s}/{m}", headers=auth) as resp:
                assert resp.status == 200
                async for chunk in resp.content.iter_chunked(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
            after = peak_rss(proc.pid)
            # `myelin media` works beside the running server (no process lock taken).
            config = str(data_dir / "homeserver.yaml")
            rc, out, err = await myelin("media", "quarantine", "--config", config, uri)
            assert rc == 0 and "quarantined" in out, err
            async with api.session.get(f"{url}{AUTHED}/download/{s}/{m}", headers=auth) as resp:
                assert resp.status == 404
        want = hashlib.sha256(b"".join(pattern(i) for i in range(SIZE // CHUNK))).hexdigest()
        assert (size, digest.hexdigest()) == (SIZE, want)
        assert after - before < ALLOWED_GROWTH, (before, after)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_media_cli(tmp_path: Path, database_url: str | None) -> None:
    data_dir = tmp_path / "data"
    await generate(data_dir, database_url, "--open-registration")
    config = str(data_dir / "homeserver.yaml")
    rc, out, err = await myelin("media", "purge-remote", "--config", config, "--before", "30")
    assert rc == 0, err
    assert "purged 0 remote media" in out
    rc, _, err = await myelin("media", "quarantine", "--config", config, "mxc://cli.test/../x")
    assert rc == 1 and "Traceback" not in err and "not a valid mxc" in err
    rc, _, err = await myelin("media", "quarantine", "--config", config, "mxc://cli.test/nope")
    assert rc == 1 and "no local media" in err
    rc, _, err = await myelin("media", "purge-remote", "--config", config, "--before", "-1")
    assert rc == 1 and "Traceback" not in err
