"""Helpers for media tests: upload and download through the real client API."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from tests.helpers import Api, Reply, User

AUTHED = "/_matrix/client/v1/media"
UPLOAD = "/_matrix/media/v3/upload"


def png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def gif_animated(width: int, height: int, frames: int = 3) -> bytes:
    images = [Image.new("RGB", (width, height), (i * 80, 0, 0)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return out.getvalue()


async def upload(
    api: Api, user: User, data: bytes, content_type: str, filename: str | None = None
) -> Reply:
    params = {"filename": filename} if filename else None
    return await api.post(
        UPLOAD,
        token=user.access_token,
        data=data,
        headers={"Content-Type": content_type},
        params=params,
    )


async def upload_ok(
    api: Api, user: User, data: bytes, content_type: str, filename: str | None = None
) -> tuple[str, str]:
    """(server_name, media_id) of a successful upload."""
    r = await upload(api, user, data, content_type, filename)
    assert r.status == 200, r.body
    uri: str = r.body["content_uri"]
    assert uri.startswith("mxc://")
    server_name, _, media_id = uri[len("mxc://") :].partition("/")
    return server_name, media_id


async def download(
    api: Api, user: User | None, server_name: str, media_id: str, **kw: Any
) -> Reply:
    token = user.access_token if user is not None else None
    return await api.get(f"{AUTHED}/download/{server_name}/{media_id}", token=token, **kw)


async def thumbnail(api: Api, user: User, server_name: str, media_id: str, **params: str) -> Reply:
    return await api.get(
        f"{AUTHED}/thumbnail/{server_name}/{media_id}", token=user.access_token, params=params
    )


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size
