"""How a webhook's body is kept in Redis: zstd-compressed with a dictionary of providers'
bodies, and read back whatever the version that wrote it.

A verified body is kept once, for replays and re-verification, for EVENT_RETENTION_DAYS.
Small JSON, forms and XML are mostly field names that zstd alone cannot find twice in
one body (a 2.1 KB Stripe event kept 838 B); primed with a dictionary of bodies of the
same shapes, it keeps about a quarter of that, at the same CPU (README Benchmarks). The
dictionary (``dictionaries/d1.raw``, made by bench/body_dictionary.py) is raw content
and never changes: every body kept with it says so (encoding ``zstd-d1``); a better
one would be d2, beside it. Bodies kept before it say ``zstd`` (no dictionary); a hash
without an encoding (written by 0.1.0) holds the body as received.
"""

from __future__ import annotations

from importlib.resources import files

import zstandard

#: zstd without a dictionary: what the release before d1 wrote (still read).
ZSTD = "zstd"
#: zstd with dictionary d1: what is written now.
ZSTD_D1 = "zstd-d1"
LEVEL = 3

_D1 = zstandard.ZstdCompressionDict(
    files("payhooks.storage").joinpath("dictionaries/d1.raw").read_bytes(),
    dict_type=zstandard.DICT_TYPE_RAWCONTENT,
)
# The dictionary is digested once, not per body, into match tables sized for bodies of a
# few KB: level 3's own (512 + 256 KB, for inputs of any size) kept the same bytes but left
# the cache for every body under load (zstd 7% of the receiver's CPU by perf, against 6%
# with these; the README's fourth pass). No dictionary id in the frame (a raw-content
# dictionary has none): the encoding names it.
_PARAMETERS = zstandard.ZstdCompressionParameters.from_level(
    LEVEL, hash_log=14, chain_log=14, write_dict_id=False
)
_D1.precompute_compress(compression_params=_PARAMETERS)
_compressor = zstandard.ZstdCompressor(dict_data=_D1, compression_params=_PARAMETERS)
_decompressors = {
    ZSTD: zstandard.ZstdDecompressor(),
    ZSTD_D1: zstandard.ZstdDecompressor(dict_data=_D1),
}


def pack(body: bytes) -> tuple[bytes, str]:
    """(what is stored, its encoding): compressed unless that would not be smaller."""
    packed = _compressor.compress(body)
    if len(packed) < len(body):
        return packed, ZSTD_D1
    return body, ""


def unpack(stored: bytes, encoding: str) -> bytes:
    if not encoding:
        return stored
    decompressor = _decompressors.get(encoding)
    if decompressor is None:
        raise ValueError(f"unknown body encoding {encoding!r}")
    # The frame records its size (compress() writes it): no guessing of buffers.
    return decompressor.decompress(stored)
