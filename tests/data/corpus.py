"""Builds a corpus of awkward and broken image files in a test's temp folder (nothing is stored in the repo)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# file name -> expected outcome: "ok" (decodes to RGB) or a substring of the quarantine reason
EXPECTED = {
    "corrupt.jpg": "corrupt",
    "truncated.jpg": "corrupt or truncated",
    "zero.jpg": "zero-byte",
    "text.jpg": "not an image",
    "png16.png": "ok",
    "palette_alpha.png": "ok",
    "cmyk.jpg": "ok",
    "gray.jpg": "ok",
    "bomb.png": "decompression bomb",
    "rgba.png": "ok",
    "exif_rotated.jpg": "ok",
}


def _png_with_header_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR claims width x height (a decompression-bomb header)."""
    raw = zlib.compress(b"\x00\x00\x00\x00")
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def build_corpus(folder: Path, seed: int = 0) -> dict[str, str]:
    """Write every file of EXPECTED into ``folder``; return EXPECTED."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8))
    rgb.save(folder / "good.jpg")
    good = (folder / "good.jpg").read_bytes()
    (folder / "corrupt.jpg").write_bytes(good[:20] + bytes(rng.integers(0, 255, 500, dtype=np.uint8)))
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "good.jpg").unlink()
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not an image\n")
    Image.fromarray((rng.integers(0, 65535, (40, 50))).astype(np.uint16)).save(folder / "png16.png")
    pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(folder / "palette_alpha.png", transparency=0)
    rgb.convert("CMYK").save(folder / "cmyk.jpg")
    rgb.convert("L").save(folder / "gray.jpg")
    (folder / "bomb.png").write_bytes(_png_with_header_size(30000, 30000))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    rgb.save(folder / "exif_rotated.jpg", exif=exif)
    return EXPECTED
