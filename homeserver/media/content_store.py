"""Content files on disk, named by the SHA-256 of their bytes (de-duplicated).

Design note
-----------
A file is written to ``tmp/`` while it arrives, hashed as it goes, and
renamed to ``content/ab/cd/<sha256>`` once complete (``os.replace`` is atomic
on one file system). Two uploads of the same bytes end in the same file, so
the database rows (media, thumbnails) reference content by hash and a file
is deleted only when no row references it any more. Paths are built only
from a hex digest, never from ids a client chose, so no request can name a
path outside the store.

Writes go in chunks as they arrive from the network (never the whole body in
memory); each chunk is written by a thread so a slow disk does not stall the
event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from pathlib import Path

_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


class TooLarge(Exception):
    """More bytes arrived than the writer's limit allows."""


class ContentWriter:
    """One file being written: ``write`` chunks, then ``commit`` (or ``discard``)."""

    def __init__(self, store: ContentStore, limit: int) -> None:
        self._store = store
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()
        self._tmp = store.root / "tmp" / secrets.token_hex(16)
        self._file = open(self._tmp, "wb")

    async def write(self, chunk: bytes) -> None:
        """Append ``chunk``; ``TooLarge`` (and the partial file removed) past the limit."""
        self.size += len(chunk)
        if self.size > self.limit:
            self.discard()
            raise TooLarge()
        self._hash.update(chunk)
        await asyncio.to_thread(self._file.write, chunk)

    async def commit(self) -> tuple[str, int]:
        """Move the file into place; its ``(sha256 hex, size)``."""
        digest = self._hash.hexdigest()
        self._file.close()
        target = self._store.path_for(digest)
        await asyncio.to_thread(_move_into_place, self._tmp, target)
        return digest, self.size

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


def _move_into_place(tmp: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        tmp.unlink(missing_ok=True)  # the same bytes are already stored
    else:
        os.replace(tmp, target)


class ContentStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        (self.root / "content").mkdir(parents=True, exist_ok=True)
        for leftover in (self.root / "tmp").iterdir():  # writes cut short by a crash
            leftover.unlink(missing_ok=True)

    def path_for(self, digest: str) -> Path:
        if _HEX_SHA256.fullmatch(digest) is None:
            raise ValueError("not a SHA-256 hex digest")
        return self.root / "content" / digest[:2] / digest[2:4] / digest

    def writer(self, limit: int) -> ContentWriter:
        return ContentWriter(self, limit)

    async def put_bytes(self, data: bytes) -> tuple[str, int]:
        """Store a small blob made here (a thumbnail)."""
        writer = self.writer(len(data))
        try:
            await writer.write(data)
            return await writer.commit()
        except BaseException:
            writer.discard()
            raise

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    async def delete(self, digest: str) -> int:
        """Remove a file no row references any more; the bytes freed."""
        path = self.path_for(digest)
        try:
            size = path.stat().st_size
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return 0
        return size
