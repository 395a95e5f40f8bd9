"""What the media service needs from federation: the bytes of a remote mxc URI.

The composition root gives the service an implementation from federation/
(homeserver never imports federation). The source writes into the
``ContentWriter`` it is handed, which enforces the size limit; failures are
``MatrixError``s ready for the client (404 not found, 502 too large or
unreachable, 504 not yet uploaded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from homeserver.media.content_store import ContentWriter


@dataclass(frozen=True, slots=True)
class RemoteMeta:
    content_type: str | None
    filename: str | None


class RemoteMediaSource(Protocol):
    async def download(
        self, server_name: str, media_id: str, writer: ContentWriter, timeout_ms: int
    ) -> RemoteMeta: ...
