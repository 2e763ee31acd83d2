"""What an image file's header claims its size is, read without decoding it (PNG, GIF, BMP, WebP, JPEG).

Both the input check and the local server's renderer ask this first, so a 100-byte file claiming
50000x50000 pixels is refused before any decoder allocates memory for it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any


def claimed_size(path: Path) -> tuple[int, int] | None:
    """Width and height as a PNG, GIF, BMP, WebP or JPEG header claims them, read without decoding; else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(32)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
                return struct.unpack(">II", head[16:24])
            if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
                return struct.unpack("<HH", head[6:10])
            if head[:2] == b"BM" and len(head) >= 26:
                if head[14:18] == b"\x0c\x00\x00\x00":  # OS/2 BITMAPCOREHEADER: 16-bit sides
                    return struct.unpack("<HH", head[18:22])
                width, height = struct.unpack("<ii", head[18:26])
                return abs(width), abs(height)
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
                if head[12:16] == b"VP8X":
                    return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
                if head[12:16] == b"VP8L":
                    bits = int.from_bytes(head[21:25], "little")
                    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
                if head[12:16] == b"VP8 ":
                    width, height = struct.unpack("<HH", head[26:30])
                    return width & 0x3FFF, height & 0x3FFF
            if head[:2] == b"\xff\xd8":
                return _jpeg_size(fh)
    except OSError:
        pass  # unreadable: Image.open reports it
    return None


def _jpeg_size(fh: Any) -> tuple[int, int] | None:
    """The size in a JPEG's first SOFn segment, walking the marker segments before it."""
    fh.seek(2)
    while True:
        if fh.read(1) != b"\xff":
            return None  # not at a marker: left to the decoder
        marker = fh.read(1)
        while marker == b"\xff":  # fill bytes
            marker = fh.read(1)
        if not marker or marker[0] in (0xD9, 0xDA):  # end of file, end of image, start of scan
            return None
        if marker[0] == 0x01 or 0xD0 <= marker[0] <= 0xD7:  # markers without a length
            continue
        start = fh.tell()
        segment = fh.read(7)  # length, then for SOFn: precision, height, width
        if len(segment) < 2:
            return None
        length = struct.unpack(">H", segment[:2])[0]
        if 0xC0 <= marker[0] <= 0xCF and marker[0] not in (0xC4, 0xC8, 0xCC):  # SOF0..SOF15
            if len(segment) < 7:
                return None
            height, width = struct.unpack(">HH", segment[3:7])
            return width, height
        if length < 2:
            return None
        fh.seek(start + length)  # always forward: the walk ends at the end of the file
