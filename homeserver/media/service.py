"""The media repository: uploads, downloads (local and cached remote), thumbnails, upkeep.

Design note
-----------
Bytes go to the content store as they arrive (``ContentWriter``), hashed on
the way, and only then is the metadata row written, so a row never points
at a file that is not complete. Files are shared by hash; ``_files`` (one
asyncio lock) orders "file committed + row inserted" against "no row needs
this hash + file deleted", so de-duplication and deletion never race within
the process.

Remote media is fetched once per (server, id) at a time (a lock per key) and
kept in the cache; later requests are served from the cache whether or not
the origin is up. The cache is bounded in bytes: least recently read first
out. Thumbnails are made from the local copy (remote originals are fetched
first), in a worker thread, at most two at a time, and cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from homeserver.clock import Clock
from homeserver.config import Config, ThumbnailSize
from homeserver.errors import MatrixError, forbidden, limit_exceeded, not_found
from homeserver.media import thumbnailer
from homeserver.media.content_store import ContentStore, TooLarge
from homeserver.media.headers import clean_content_type, clean_filename
from homeserver.media.ids import check_media_id, mxc_uri, new_media_id
from homeserver.media.remote import RemoteMediaSource
from homeserver.media.store import MediaRow, MediaStore, ThumbnailRow

log = logging.getLogger("myelin.media")

DEFAULT_TIMEOUT_MS = 20_000
MAX_TIMEOUT_MS = 120_000
# last_access_ts is rewritten at most this often per media (retention granularity).
TOUCH_INTERVAL_MS = 60 * 60 * 1000
UPKEEP_INTERVAL_S = 3600.0
_BATCH = 500


def too_large(error: str = "The file is larger than this server allows") -> MatrixError:
    return MatrixError(413, "M_TOO_LARGE", error)


def not_yet_uploaded() -> MatrixError:
    return MatrixError(504, "M_NOT_YET_UPLOADED", "The media has not been uploaded yet")


def cannot_thumbnail() -> MatrixError:
    return MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content")


@dataclass(frozen=True, slots=True)
class Servable:
    """A file to send: where it is and how to describe it."""

    path: Path
    content_type: str
    filename: str | None
    size: int


def choose_size(sizes: list[ThumbnailSize], width: int, height: int, method: str) -> ThumbnailSize:
    """The configured size to make for a request: the smallest of the method that is at
    least as big as asked, else the largest of the method (never anything upscaled)."""
    same = [s for s in sizes if s.method == method] or sizes
    big_enough = [s for s in same if s.width >= width and s.height >= height]
    if big_enough:
        return min(big_enough, key=lambda s: s.width * s.height)
    return max(same, key=lambda s: s.width * s.height)


class MediaService:
    def __init__(self, config: Config, store: MediaStore, clock: Clock) -> None:
        self.server_name = config.server_name
        self.config = config.media
        self.max_upload = config.limits.max_upload_bytes
        self.max_remote = config.media.max_remote_bytes or config.limits.max_upload_bytes
        self.store = store
        self.clock = clock
        self.content = ContentStore(config.media.store_path)
        self.remote: RemoteMediaSource | None = None
        self._files = asyncio.Lock()
        self._fetching: dict[tuple[str, str], asyncio.Lock] = {}
        self._uploaded: dict[tuple[str, str], asyncio.Event] = {}
        self._thumbnailing = asyncio.Semaphore(2)

    # --- uploads ------------------------------------------------------------------------

    def upload_config(self) -> dict[str, int]:
        return {"m.upload.size": self.max_upload}

    async def upload(
        self,
        user_id: str,
        content_type: str | None,
        filename: str | None,
        body: AsyncIterator[bytes],
        content_length: int | None,
    ) -> str:
        """``POST /upload``: store the body under a new media id; its ``mxc://`` URI."""
        media_id = new_media_id()

        async def record(digest: str, size: int) -> bool:
            now = self.clock.now_ms()
            await self.store.insert(
                MediaRow(
                    self.server_name,
                    media_id,
                    user_id,
                    digest,
                    size,
                    clean_content_type(content_type),
                    clean_filename(filename),
                    now,
                    now,
                    now,
                    False,
                )
            )
            return True

        await self._receive(user_id, body, content_length, record)
        return mxc_uri(self.server_name, media_id)

    async def store_generated(self, data: bytes, content_type: str) -> str:
        """Media the server made itself (a URL preview's image): no uploader, no quota."""
        media_id = new_media_id()
        async with self._files:
            digest, size = await self.content.put_bytes(data)
            now = self.clock.now_ms()
            await self.store.insert(
                MediaRow(
                    self.server_name,
                    media_id,
                    None,
                    digest,
                    size,
                    clean_content_type(content_type),
                    None,
                    now,
                    now,
                    now,
                    False,
                )
            )
        return mxc_uri(self.server_name, media_id)

    async def create(self, user_id: str) -> tuple[str, int]:
        """``POST /media/v1/create``: a media id to upload to later; (URI, expiry ts)."""
        now = self.clock.now_ms()
        pending = await self.store.pending_count(user_id, now - self.config.unused_expiry_ms)
        if pending >= self.config.max_pending_uploads:
            raise limit_exceeded(60_000)
        media_id = new_media_id()
        await self.store.insert(
            MediaRow(
                self.server_name, media_id, user_id, None, 0, None, None, now, None, now, False
            )
        )
        return mxc_uri(self.server_name, media_id), now + self.config.unused_expiry_ms

    async def upload_to(
        self,
        user_id: str,
        server_name: str,
        media_id: str,
        content_type: str | None,
        filename: str | None,
        body: AsyncIterator[bytes],
        content_length: int | None,
    ) -> None:
        """``PUT /upload/{serverName}/{mediaId}``: the bytes of an id from ``create``."""
        check_media_id(server_name, media_id)
        row = (
            await self.store.get(server_name, media_id) if server_name == self.server_name else None
        )
        now = self.clock.now_ms()
        if row is None or (
            row.content_hash is None and row.created_ts + self.config.unused_expiry_ms < now
        ):
            raise not_found("Unknown media id")
        if row.user_id != user_id:
            raise forbidden("This media id was created by another user")
        if row.content_hash is not None:
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media has already been uploaded")

        async def record(digest: str, size: int) -> bool:
            return await self.store.fill_pending(
                server_name,
                media_id,
                digest,
                size,
                clean_content_type(content_type),
                clean_filename(filename),
                self.clock.now_ms(),
            )

        if not await self._receive(user_id, body, content_length, record):
            raise MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media has already been uploaded")
        event = self._uploaded.pop((server_name, media_id), None)
        if event is not None:
            event.set()

    async def _receive(
        self,
        user_id: str,
        body: AsyncIterator[bytes],
        content_length: int | None,
        record: Callable[[str, int], Awaitable[bool]],
    ) -> bool:
        """Stream a body into the content store, within the size limit and the user's
        quota, then ``record(digest, size)`` its row. File and row are made under one
        hold of ``_files``, so no deletion of an unused hash can come in between; when
        ``record`` declines, the file is dropped again unless something else uses it."""
        quota = self.config.max_bytes_per_user
        remaining = self.max_upload
        if quota is not None:
            remaining = min(remaining, quota - await self.store.user_usage(user_id))
        if content_length is not None and content_length > remaining:
            raise self._over(content_length)
        writer = self.content.writer(max(remaining, 0))
        try:
            async for chunk in body:
                await writer.write(chunk)
            async with self._files:
                digest, size = await writer.commit()
                recorded = await record(digest, size)
        except TooLarge:
            raise self._over(writer.size) from None
        finally:
            writer.discard()
        if not recorded:
            await self._drop_unused(digest)
        return recorded

    def _over(self, size: int) -> MatrixError:
        if size > self.max_upload:
            return too_large()
        return forbidden("Media quota exceeded")

    # --- downloads ----------------------------------------------------------------------

    async def download(
        self,
        server_name: str,
        media_id: str,
        *,
        allow_remote: bool = True,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        legacy: bool = False,
    ) -> Servable:
        """The file of an mxc URI: local, cached remote, or fetched now."""
        row = await self._row(server_name, media_id, allow_remote, timeout_ms, legacy)
        assert row.content_hash is not None
        return Servable(
            self.content.path_for(row.content_hash),
            row.content_type or "application/octet-stream",
            row.upload_name,
            row.size,
        )

    async def local_download(self, media_id: str, timeout_ms: int) -> Servable:
        """For federation: only our own media, never proxied onwards."""
        return await self.download(
            self.server_name, media_id, allow_remote=False, timeout_ms=timeout_ms
        )

    async def _row(
        self, server_name: str, media_id: str, allow_remote: bool, timeout_ms: int, legacy: bool
    ) -> MediaRow:
        check_media_id(server_name, media_id)
        timeout_ms = max(0, min(timeout_ms, MAX_TIMEOUT_MS))
        now = self.clock.now_ms()
        cutoff = self.config.legacy_cutoff_ts
        row: MediaRow | None
        if server_name == self.server_name:
            row = await self._local_row(media_id, timeout_ms)
        elif not allow_remote or (legacy and cutoff is not None and now >= cutoff):
            # Cache only. (On a frozen legacy endpoint, what is fetched now counts as
            # new media and would be refused anyway.)
            row = await self.store.get(server_name, media_id)
            if row is None or row.content_hash is None:
                raise not_found("Media not found")
        else:
            row = await self._remote_row(server_name, media_id, timeout_ms)
        if row.quarantined:
            raise not_found("Media not found")
        if legacy and cutoff is not None and (row.stored_ts is None or row.stored_ts >= cutoff):
            raise not_found("This media is only served by the authenticated endpoints")
        assert row.content_hash is not None
        if not self.content.exists(row.content_hash):
            log.warning("media %s/%s: content file is missing", server_name, media_id)
            raise not_found("Media not found")
        if now - row.last_access_ts > TOUCH_INTERVAL_MS:
            await self.store.touch(server_name, media_id, now)
        return row

    async def _local_row(self, media_id: str, timeout_ms: int) -> MediaRow:
        row = await self.store.get(self.server_name, media_id)
        if row is None:
            raise not_found("Media not found")
        if row.content_hash is not None:
            return row
        if row.created_ts + self.config.unused_expiry_ms < self.clock.now_ms():
            raise not_found("Media not found")
        event = self._uploaded.setdefault((self.server_name, media_id), asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_ms / 1000)
        row = await self.store.get(self.server_name, media_id)
        if row is None:
            raise not_found("Media not found")
        if row.content_hash is None:
            raise not_yet_uploaded()
        return row

    async def _remote_row(self, server_name: str, media_id: str, timeout_ms: int) -> MediaRow:
        key = (server_name, media_id)
        lock = self._fetching.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                row = await self.store.get(server_name, media_id)
                if row is not None and row.quarantined:
                    raise not_found("Media not found")  # possibly never fetched: keep it so
                if row is not None and row.content_hash is not None:
                    if self.content.exists(row.content_hash):
                        return row
                return await self._fetch(server_name, media_id, timeout_ms)
        finally:
            if not lock.locked() and self._fetching.get(key) is lock:
                del self._fetching[key]

    async def _fetch(self, server_name: str, media_id: str, timeout_ms: int) -> MediaRow:
        if self.remote is None:
            raise not_found("Media not found (federation is off)")
        writer = self.content.writer(self.max_remote)
        try:
            meta = await self.remote.download(server_name, media_id, writer, timeout_ms)
            async with self._files:
                digest, size = await writer.commit()
                now = self.clock.now_ms()
                row = MediaRow(
                    server_name,
                    media_id,
                    None,
                    digest,
                    size,
                    clean_content_type(meta.content_type),
                    clean_filename(meta.filename),
                    now,
                    now,
                    now,
                    False,
                )
                await self.store.upsert_remote(row)
        except TooLarge:
            raise MatrixError(502, "M_TOO_LARGE", "The remote file is too large") from None
        finally:
            writer.discard()
        await self._trim_remote_cache(keep=(server_name, media_id))
        return row

    # --- thumbnails ---------------------------------------------------------------------

    async def thumbnail(
        self,
        server_name: str,
        media_id: str,
        width: int,
        height: int,
        method: str,
        animated: bool,
        *,
        allow_remote: bool = True,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        legacy: bool = False,
    ) -> Servable:
        row = await self._row(server_name, media_id, allow_remote, timeout_ms, legacy)
        assert row.content_hash is not None
        original = Servable(
            self.content.path_for(row.content_hash),
            row.content_type or "application/octet-stream",
            row.upload_name,
            row.size,
        )
        if (row.content_type or "").partition(";")[0] not in thumbnailer.THUMBNAIL_TYPES:
            raise cannot_thumbnail()
        size = choose_size(self.config.thumbnail_sizes, width, height, method)
        box = (size.width, size.height, size.method)
        cached = await self.store.get_thumbnail(server_name, media_id, *box, animated)
        if cached is None:
            key = (server_name, f"{media_id}/{size.width}x{size.height}/{size.method}/{animated}")
            lock = self._fetching.setdefault(key, asyncio.Lock())
            try:
                async with lock:
                    cached = await self.store.get_thumbnail(server_name, media_id, *box, animated)
                    if cached is None:
                        cached = await self._make_thumbnail(row, original.path, size, animated)
            finally:
                if not lock.locked() and self._fetching.get(key) is lock:
                    del self._fetching[key]
            if cached is None:
                return original  # already within the box: never upscaled
        return Servable(
            self.content.path_for(cached.content_hash), cached.content_type, None, cached.size
        )

    async def _make_thumbnail(
        self, row: MediaRow, path: Path, size: ThumbnailSize, animated: bool
    ) -> ThumbnailRow | None:
        """Generate, store and record one thumbnail; None when the original is small enough."""
        async with self._thumbnailing:
            try:
                thumb = await asyncio.to_thread(
                    thumbnailer.make_thumbnail,
                    str(path),
                    size.width,
                    size.height,
                    size.method,
                    animated,
                    self.config.max_thumbnail_pixels,
                )
            except thumbnailer.TooSmall:
                return None
            except thumbnailer.ImageTooLarge:
                raise too_large("The image is too large to thumbnail") from None
            except thumbnailer.NotAnImage:
                raise cannot_thumbnail() from None
        async with self._files:
            digest, stored = await self.content.put_bytes(thumb.data)
            t = ThumbnailRow(
                size.width, size.height, size.method, animated, thumb.content_type, digest, stored
            )
            await self.store.put_thumbnail(row.server_name, row.media_id, t)
        return t

    # --- upkeep -------------------------------------------------------------------------

    async def quarantine(self, server_name: str, media_id: str) -> bool:
        """Stop serving a media id (and delete its bytes if nothing else needs them)."""
        check_media_id(server_name, media_id)
        if await self.store.get(server_name, media_id) is None:
            if server_name == self.server_name:
                return False
            # Quarantine remote media before it is ever fetched: a row without content.
            now = self.clock.now_ms()
            await self.store.insert(
                MediaRow(server_name, media_id, None, None, 0, None, None, now, None, now, True)
            )
            return True
        hashes = await self.store.hashes_of(server_name, media_id)
        await self.store.set_quarantined(server_name, media_id)
        for digest in hashes:
            await self._drop_unused(digest)
        return True

    async def delete_media(self, server_name: str, media_id: str) -> int:
        """Delete a media id and its thumbnails; the bytes freed on disk."""
        hashes = await self.store.hashes_of(server_name, media_id)
        await self.store.delete(self.store.db, server_name, media_id)
        freed = 0
        for digest in hashes:
            freed += await self._drop_unused(digest)
        return freed

    async def _drop_unused(self, digest: str) -> int:
        async with self._files:
            if await self.store.hash_in_use(digest):
                return 0
            return await self.content.delete(digest)

    async def purge_remote(self, before_ts: int) -> int:
        """Delete cached remote media not read since ``before_ts``; how many went."""
        return await self._purge(remote=True, before_ts=before_ts)

    async def _purge(self, *, remote: bool, before_ts: int) -> int:
        count = 0
        while True:
            batch = await self.store.not_accessed_since(self.server_name, remote, before_ts, _BATCH)
            for server_name, media_id in batch:
                await self.delete_media(server_name, media_id)
            count += len(batch)
            if len(batch) < _BATCH:
                return count

    async def _trim_remote_cache(self, keep: tuple[str, str]) -> None:
        over = (
            await self.store.remote_cache_size(self.server_name)
            - self.config.remote_cache_max_bytes
        )
        while over > 0:
            rows = await self.store.least_recent_remote(self.server_name, 50)
            victims = [r for r in rows if (r.server_name, r.media_id) != keep]
            if not victims:
                return
            for r in victims:
                if over <= 0:
                    return
                await self.delete_media(r.server_name, r.media_id)
                over -= r.size

    async def apply_retention(self) -> int:
        """One pass of the retention rules; how many media ids were deleted."""
        now = self.clock.now_ms()
        day = 24 * 60 * 60 * 1000
        count = 0
        if self.config.remote_retention_days is not None:
            count += await self._purge(
                remote=True, before_ts=now - self.config.remote_retention_days * day
            )
        if self.config.local_retention_days is not None:
            count += await self._purge(
                remote=False, before_ts=now - self.config.local_retention_days * day
            )
        for server_name, media_id in await self.store.expired_pending(
            now - self.config.unused_expiry_ms, _BATCH
        ):
            await self.store.delete(self.store.db, server_name, media_id)
            count += 1
        return count

    async def run_upkeep(self) -> None:
        """Background task: retention once an hour, for as long as the server runs."""
        while True:
            try:
                deleted = await self.apply_retention()
                if deleted:
                    log.info("media retention deleted %d media", deleted)
            except Exception:
                log.exception("media retention pass failed")
            await asyncio.sleep(UPKEEP_INTERVAL_S)
