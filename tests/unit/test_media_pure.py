"""Pure parts of the media repository: ids and mxc URIs, serving headers, thumbnail sizes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from homeserver.config import ThumbnailSize
from homeserver.errors import MatrixError
from homeserver.media import thumbnailer
from homeserver.media.headers import (
    clean_content_type,
    clean_filename,
    content_disposition,
    filename_from_disposition,
)
from homeserver.media.ids import check_media_id, is_valid_media_id, new_media_id, parse_mxc
from homeserver.media.service import choose_size


@pytest.mark.parametrize(
    "media_id", ["..", "a/b", "a.b", "%2F", "", "a b", "ä", "x" * 256, "a\x00b", "a\\b"]
)
def test_bad_media_ids(media_id: str) -> None:
    assert not is_valid_media_id(media_id)
    with pytest.raises(MatrixError) as err:
        check_media_id("example.org", media_id)
    assert err.value.errcode == "M_INVALID_PARAM"


def test_good_ids_and_mxc() -> None:
    media_id = new_media_id()
    assert is_valid_media_id(media_id) and len(media_id) == 24
    assert parse_mxc(f"mxc://example.org:8448/{media_id}") == ("example.org:8448", media_id)
    for bad in (
        "mxc://example.org/../x",
        "https://example.org/x",
        "mxc://bad_server!/x",
        "mxc://a",
    ):
        with pytest.raises(ValueError):
            parse_mxc(bad)


def test_content_types_and_dispositions() -> None:
    assert clean_content_type("Text/Plain; charset=utf-8") == "text/plain; charset=utf-8"
    assert clean_content_type(None) == "application/octet-stream"
    assert clean_content_type("text/html\r\nX: y") == "application/octet-stream"
    assert clean_content_type("image/png; a") == "application/octet-stream"
    assert content_disposition("image/png", "a.png") == "inline; filename=a.png"
    assert content_disposition("text/html", "a.html") == "attachment; filename=a.html"
    assert content_disposition("image/svg+xml", None) == "attachment"
    assert content_disposition("application/javascript", None) == "attachment"
    assert (
        content_disposition("text/plain", "naïve file.txt")
        == "inline; filename*=utf-8''na%C3%AFve%20file.txt"
    )
    assert clean_filename("../../etc/passwd") == "....etcpasswd"
    assert clean_filename("a\r\nb") == "ab"
    assert filename_from_disposition("attachment; filename*=utf-8''na%C3%AFve.txt") == "naïve.txt"
    assert filename_from_disposition('inline; filename="x.png"') == "x.png"


def test_choose_size() -> None:
    sizes = [
        ThumbnailSize(32, 32, "crop"),
        ThumbnailSize(96, 96, "crop"),
        ThumbnailSize(320, 240, "scale"),
        ThumbnailSize(640, 480, "scale"),
    ]
    assert choose_size(sizes, 30, 30, "crop") == sizes[0]
    assert choose_size(sizes, 33, 10, "crop") == sizes[1]
    assert choose_size(sizes, 400, 100, "scale") == sizes[3]
    assert choose_size(sizes, 4000, 4000, "scale") == sizes[3]  # the largest we make


def _image(tmp_path: Path, size: tuple[int, int]) -> str:
    path = tmp_path / "img.png"
    Image.new("RGB", size, (10, 200, 10)).save(path, "PNG")
    return str(path)


def test_thumbnailer_never_upscales(tmp_path: Path) -> None:
    thumb = thumbnailer.make_thumbnail(_image(tmp_path, (1000, 20)), 96, 96, "crop", False, 10**7)
    assert (thumb.width, thumb.height) == (96, 20)
    with pytest.raises(thumbnailer.TooSmall):
        thumbnailer.make_thumbnail(_image(tmp_path, (50, 50)), 96, 96, "crop", False, 10**7)
    thumb = thumbnailer.make_thumbnail(
        _image(tmp_path, (1000, 500)), 320, 240, "scale", False, 10**7
    )
    assert (thumb.width, thumb.height) == (320, 160)
    with Image.open(io.BytesIO(thumb.data)) as img:
        assert img.size == (320, 160)


def test_thumbnailer_refuses_bombs_and_junk(tmp_path: Path) -> None:
    with pytest.raises(thumbnailer.ImageTooLarge):
        thumbnailer.make_thumbnail(_image(tmp_path, (2000, 2000)), 96, 96, "crop", False, 10**6)
    junk = tmp_path / "junk"
    junk.write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    with pytest.raises(thumbnailer.NotAnImage):
        thumbnailer.make_thumbnail(str(junk), 96, 96, "crop", False, 10**7)
