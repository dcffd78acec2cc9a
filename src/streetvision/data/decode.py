"""Robust image decoding: decompression-bomb limit, EXIF orientation, every mode to RGB, reduced-size JPEG decode.

A file that cannot be decoded raises :class:`DecodeError` with a short reason; callers quarantine it.
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's default bomb limit
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never a half-grey image


_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")


class DecodeError(Exception):
    """A file is not a usable image; ``reason`` says why (recorded in data_report.json)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


EXIF_ORIENTATION = 0x0112  # the EXIF tag ImageOps.exif_transpose follows


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.round().astype(np.uint8), mode="L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


_SPECIAL_FILES = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"))


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as an image file, found without opening it (so a FIFO never blocks), or None
    for a non-empty regular file: does not exist, a broken link or symlink loop, not a regular file, zero bytes."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop: the link cannot be resolved"
        if os.path.islink(path):
            return f"broken symbolic link: its target '{os.readlink(path)}' does not exist"
        if exc.errno == errno.ENOENT:
            return "does not exist"
        return f"unreadable: {exc.strerror or exc}"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory"
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _SPECIAL_FILES if test(info.st_mode)), "a special file")
        return f"not a regular file ({kind})"
    return "zero-byte file" if info.st_size == 0 else None


def decode_image(
    source: str | Path | Image.Image, min_size: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Open ``source`` (path or PIL image) as an RGB image with EXIF orientation applied.

    ``min_size``: JPEGs are decoded at the smallest DCT scale whose shorter side is still >= min_size.
    """
    if isinstance(source, Image.Image):
        img = source
    else:
        path = Path(source)
        problem = file_problem(path)
        if problem:
            raise DecodeError(problem)
        old_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(path)
                if min_size and img.format == "JPEG":
                    w, h = img.size
                    scale = max(1.0, min(w, h) / float(min_size))
                    img.draft("RGB", (max(1, int(w / scale)), max(1, int(h / scale))))
                img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DecodeError(f"decompression bomb: more than {max_pixels} pixels") from exc
        except UnidentifiedImageError as exc:
            with open(path, "rb") as handle:
                head = handle.read(8)
            if any(head.startswith(magic) for magic in _MAGIC):
                raise DecodeError("corrupt: image header present but the data is unreadable") from exc
            raise DecodeError("not an image (unrecognised format)") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise DecodeError(f"corrupt or truncated: {exc}") from exc
        finally:
            Image.MAX_IMAGE_PIXELS = old_limit
    try:
        img = ImageOps.exif_transpose(img)
        return _to_rgb(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"corrupt or truncated: {exc}") from exc
