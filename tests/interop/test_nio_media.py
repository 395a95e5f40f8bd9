"""matrix-nio's media calls against Myelin: plain and encrypted upload, authenticated
download, thumbnail."""

from __future__ import annotations

from pathlib import Path

import nio
import pytest
from nio.crypto.attachments import decrypt_attachment

from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.media_support import image_size, png

pytestmark = pytest.mark.interop


async def test_nio_upload_download_thumbnail(make_server: ServerFactory, tmp_path: Path) -> None:
    server = await make_server()
    async with Api(server.client_url) as api:
        await api.register("niomedia", "nio media password")
    client = nio.AsyncClient(server.client_url, "@niomedia:localhost", store_path=str(tmp_path))
    try:
        login = await client.login("nio media password")
        assert isinstance(login, nio.LoginResponse), login
        data = b"plain file from nio\n" * 100
        up, keys = await client.upload(
            lambda *_: data, "text/plain", "notes.txt", filesize=len(data)
        )
        assert isinstance(up, nio.UploadResponse), up
        assert keys is None
        down = await client.download(up.content_uri)
        assert isinstance(down, nio.MemoryDownloadResponse), down
        assert down.body == data
        assert down.content_type.startswith("text/plain")
        assert down.filename == "notes.txt"

        image = png(400, 300)
        up, _ = await client.upload(lambda *_: image, "image/png", "p.png", filesize=len(image))
        assert isinstance(up, nio.UploadResponse), up
        server_name, media_id = up.content_uri[len("mxc://") :].split("/")
        thumb = await client.thumbnail(server_name, media_id, 32, 32, nio.ResizingMethod.crop)
        assert isinstance(thumb, nio.ThumbnailResponse), thumb
        assert image_size(thumb.body) == (32, 32)

        secret = b"encrypted by nio " * 1000
        up, keys = await client.upload(
            lambda *_: secret,
            "application/octet-stream",
            None,
            encrypt=True,
            filesize=len(secret),
        )
        assert isinstance(up, nio.UploadResponse), up
        assert keys is not None
        down = await client.download(up.content_uri)
        assert isinstance(down, nio.MemoryDownloadResponse), down
        assert down.body != secret
        plain = decrypt_attachment(
            down.body, keys["key"]["k"], keys["hashes"]["sha256"], keys["iv"]
        )
        assert plain == secret
    finally:
        await client.close()
