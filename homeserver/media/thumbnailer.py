"""Thumbnails with Pillow (client-server "Thumbnails"), run in a thread, never on the loop.

``make_thumbnail`` reads an image file and returns the encoded thumbnail.
"scale" fits the image inside the box keeping its aspect; "crop" fills the
box and cuts the overflow from the centre. Images are never upscaled.
Animated images (GIF, WebP, APNG) give a still first frame unless an
animated thumbnail is asked for, which is then an animated WebP (when all
its frames together stay within the pixel bound).

Decoders are the attack surface here: the pixel count is checked from the
header before any pixel is decoded (Pillow's decompression-bomb guard is
set to the same bound), and only a few well-known formats are opened.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Pillow (and its image libraries) is imported on the first thumbnail, not at start:
    # a server that never thumbnails does not carry it.
    from PIL import Image

THUMBNAIL_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/apng"})
_FORMATS = ["JPEG", "PNG", "GIF", "WEBP"]
_MAX_FRAMES = 100


class NotAnImage(Exception):
    """The bytes are not an image we thumbnail."""


class ImageTooLarge(Exception):
    """The image has more pixels than the configured bound."""


class TooSmall(Exception):
    """The image is already within the requested box: serve the original."""


@dataclass(frozen=True, slots=True)
class Thumbnail:
    data: bytes
    content_type: str
    width: int
    height: int


def scaled_size(w: int, h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """ "scale": the largest size with the image's aspect that fits in the box."""
    ratio = min(box_w / w, box_h / h)
    return max(1, round(w * ratio)), max(1, round(h * ratio))


def cover_size(w: int, h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """ "crop", step one: the smallest size with the image's aspect that covers the box."""
    ratio = max(box_w / w, box_h / h)
    return max(box_w, round(w * ratio)), max(box_h, round(h * ratio))


def _resize_frame(frame: Image.Image, width: int, height: int, method: str) -> Image.Image:
    from PIL import Image

    w, h = frame.size
    if method == "crop":
        if w < width or h < height:
            # Covering the box would upscale: cut the box (or what there is) from the middle.
            cw, ch = min(w, width), min(h, height)
            left, top = (w - cw) // 2, (h - ch) // 2
            return frame.crop((left, top, left + cw, top + ch))
        cw, ch = cover_size(w, h, width, height)
        resized = frame.resize((cw, ch), Image.Resampling.LANCZOS)
        left, top = (cw - width) // 2, (ch - height) // 2
        return resized.crop((left, top, left + width, top + height))
    return frame.resize(scaled_size(w, h, width, height), Image.Resampling.LANCZOS)


def make_thumbnail(
    path: str, width: int, height: int, method: str, animated: bool, max_pixels: int
) -> Thumbnail:
    """The thumbnail of the image at ``path`` for a ``width`` x ``height`` box."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with Image.open(path, formats=_FORMATS) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageTooLarge()
            if w <= width and h <= height:
                raise TooSmall()
            frames = getattr(img, "n_frames", 1)
            if animated and frames > 1 and w * h * min(frames, _MAX_FRAMES) <= max_pixels:
                return _animated(img, width, height, method)
            img.seek(0)
            frame = img.convert("RGBA") if img.mode not in ("RGB", "RGBA", "L") else img.copy()
            thumb = _resize_frame(frame, width, height, method)
            out = io.BytesIO()
            if img.format == "JPEG":
                thumb.convert("RGB").save(out, "JPEG", quality=85)
                content_type = "image/jpeg"
            else:
                thumb.save(out, "PNG", optimize=False)
                content_type = "image/png"
            return Thumbnail(out.getvalue(), content_type, thumb.width, thumb.height)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge() from None
    except (OSError, ValueError, SyntaxError, EOFError):  # Pillow's errors for bad data
        raise NotAnImage() from None


def _animated(img: Image.Image, width: int, height: int, method: str) -> Thumbnail:
    from PIL import ImageSequence

    frames: list[Image.Image] = []
    durations: list[int] = []
    for i, frame in enumerate(ImageSequence.Iterator(img)):
        if i >= _MAX_FRAMES:
            break
        frames.append(_resize_frame(frame.convert("RGBA"), width, height, method))
        durations.append(int(frame.info.get("duration", 100)))
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return Thumbnail(out.getvalue(), "image/webp", frames[0].width, frames[0].height)
