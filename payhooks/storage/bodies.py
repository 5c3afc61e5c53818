"""How a webhook's body is kept in Redis: zstd-compressed, and read back whatever the
version that wrote it.

A verified body is kept once, for replays and re-verification, for EVENT_RETENTION_DAYS;
providers' JSON, XML and forms compress to about a third (README Benchmarks: zstd at
level 3 keeps them within 7% of zlib's best at a third of its CPU, which the receiver
pays per webhook). The webhook hash names its ``encoding``; a hash without one (written
by 0.1.0) holds the body as received.
"""

from __future__ import annotations

import zstandard

ZSTD = "zstd"
LEVEL = 3

_compressor = zstandard.ZstdCompressor(level=LEVEL)
_decompressor = zstandard.ZstdDecompressor()


def pack(body: bytes) -> tuple[bytes, str]:
    """(what is stored, its encoding): compressed unless that would not be smaller."""
    packed = _compressor.compress(body)
    if len(packed) < len(body):
        return packed, ZSTD
    return body, ""


def unpack(stored: bytes, encoding: str) -> bytes:
    if encoding == ZSTD:
        # The frame records its size (compress() writes it): no guessing of buffers.
        return _decompressor.decompress(stored)
    if encoding:
        raise ValueError(f"unknown body encoding {encoding!r}")
    return stored
