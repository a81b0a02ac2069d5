"""Chunk payload codecs: raw, zstd, and zstd with a base chunk as dictionary.

``zstd-dict`` compresses a chunk with an older chunk (the one it replaces) as
a raw-content dictionary, so a chunk in which one line changed costs about one
line. Decoding is bounded: a payload may never expand past ``limit`` bytes.
"""

from __future__ import annotations

import io
import threading
from enum import IntEnum

import zstandard

from linesync.protocol.errors import Code, LinesyncError


class Codec(IntEnum):
    RAW = 0
    ZSTD = 1
    ZSTD_DICT = 2


NAMES = {"raw": Codec.RAW, "zstd": Codec.ZSTD, "zstd-dict": Codec.ZSTD_DICT}
LEVEL = 3  # against a base: the bytes of an edit are what linesync is for
# Without one: level 1 makes line-sized chunks as small as level 3 does (94.46
# against 94.53 MB for the benchmark corpus) in 70% of the time.
PLAIN_LEVEL = 1


_local = threading.local()  # a compressor and a decompressor per thread, made once


def _plain() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    pair = getattr(_local, "pair", None)
    if pair is None:
        pair = _local.pair = (
            zstandard.ZstdCompressor(level=PLAIN_LEVEL),
            zstandard.ZstdDecompressor(),
        )
    return pair


def _cctx(base: bytes | None) -> zstandard.ZstdCompressor:
    if base is None:
        return _plain()[0]
    d = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdCompressor(level=LEVEL, dict_data=d)


def dict_compressor(base: bytes) -> zstandard.ZstdCompressor:
    """A compressor with ``base`` as dictionary, prepared once: compressing many
    chunks against one base then costs little more than the chunks themselves."""
    d = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    d.precompute_compress(level=LEVEL)
    return zstandard.ZstdCompressor(level=LEVEL, dict_data=d)


def encode(
    data: bytes, base: bytes | None = None, compressor: zstandard.ZstdCompressor | None = None
) -> tuple[Codec, bytes]:
    """The smallest of raw / zstd / zstd-dict (when a base is given; ``compressor``:
    one :func:`dict_compressor` made for that base)."""
    best = (Codec.RAW, data)
    if len(data) > 16:
        packed = _cctx(None).compress(data)
        if len(packed) < len(best[1]):
            best = (Codec.ZSTD, packed)
    if base:
        packed = (compressor or _cctx(base)).compress(data)
        if len(packed) < len(best[1]):
            best = (Codec.ZSTD_DICT, packed)
    return best


def decode(codec: int, payload: bytes, base: bytes | None, limit: int) -> bytes:
    """Decode a payload, refusing to produce more than ``limit`` bytes: one
    pass for one frame that names its size (what linesync sends), a stream
    across frames for anything else."""
    if codec == Codec.RAW:
        if len(payload) > limit:
            raise LinesyncError(Code.PAYLOAD_TOO_LARGE, "chunk is larger than the limit")
        return payload
    if codec == Codec.ZSTD:
        dctx = _plain()[1]
        out = _one_frame(dctx, payload, limit)
        if out is not None:
            return out
    elif codec == Codec.ZSTD_DICT:
        if base is None:
            raise LinesyncError(Code.BAD_REQUEST, "zstd-dict chunk without a base")
        d = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        dctx = zstandard.ZstdDecompressor(dict_data=d)
        out = _one_frame(dctx, payload, limit)
        if out is not None:
            return out
    else:
        raise LinesyncError(Code.BAD_REQUEST, f"unknown chunk codec {codec}")
    if not payload:
        raise LinesyncError(Code.BAD_REQUEST, "chunk does not decompress: no zstd frame")
    try:
        with dctx.stream_reader(io.BytesIO(payload), read_across_frames=True) as reader:
            out = reader.read(limit + 1)
        if len(out) > limit:
            raise LinesyncError(Code.PAYLOAD_TOO_LARGE, "chunk decompresses past the size limit")
        _whole_frames(dctx, payload)
    except zstandard.ZstdError as exc:
        raise LinesyncError(Code.BAD_REQUEST, f"chunk does not decompress: {exc}") from exc
    return bytes(out)


def _one_frame(dctx: zstandard.ZstdDecompressor, payload: bytes, limit: int) -> bytes | None:
    """A payload of exactly one whole frame that names its size, at most
    ``limit`` (what linesync sends), decoded in one pass; None for anything
    else, which the general path then decodes or refuses. (The size is
    checked first: zstd would otherwise make a buffer of whatever size a
    frame claims, ``max_output_size`` notwithstanding.)"""
    try:
        size = zstandard.frame_content_size(payload)
        if not 0 <= size <= limit:
            return None
        return dctx.decompress(payload, allow_extra_data=False)
    except zstandard.ZstdError:
        return None


def names_its_size(payload: bytes) -> bool:
    """True for a zstd frame whose header gives the size it decodes to."""
    try:
        return bool(zstandard.frame_content_size(payload) >= 0)
    except zstandard.ZstdError:
        return False


def _whole_frames(dctx: zstandard.ZstdDecompressor, payload: bytes) -> None:
    """Refuse a payload that ends inside a frame. The stream reader stops quietly
    where its input ends, so a frame cut before its checksum still yields every
    byte; stored as sent, it would reach other readers cut. (Bounded: these
    bytes just decoded within the limit.)"""
    rest = payload
    while rest:
        frame = dctx.decompressobj()
        frame.decompress(rest)
        if not frame.eof:
            raise LinesyncError(Code.BAD_REQUEST, "chunk does not decompress: truncated frame")
        rest = frame.unused_data
