"""Content-defined chunking: where a file's bytes are cut into chunks.

Cut points are part of the on-disk format (a moved cut point re-uploads and
re-stores content), so the rules and parameters here are pinned by
known-answer tests and versioned by ``FORMAT_VERSION``. docs/FORMAT.md
("Chunking") specifies them in words.

- **Text** (``is_text``: valid UTF-8, no NUL byte) is cut only at line ends.
  A line is a *candidate* when ``zlib.crc32(line) < len(line) * (2**32 //
  avg_size)``, the line taken without its ``\\n``: a line's chance is
  proportional to its length, so chunks average about ``avg_size`` bytes
  whatever the line lengths, and blank lines are never candidates. A chunk
  ends after a candidate that lies at least ``min_size`` bytes after the
  previous candidate. That decision depends only on the text between two
  neighbouring candidates, so a one-line edit changes at most two chunks.
  A chunk that would grow past ``max_size`` is cut before the line that
  does not fit; a single line longer than ``max_size`` becomes chunks of
  its own, cut inside the line by FastCDC with the same sizes.
- **Binary** is cut by FastCDC (2020, normalized chunking 1, seed 0).

Pure: no I/O.
"""

from __future__ import annotations

import codecs
import zlib
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate, compress, repeat
from operator import lt, mul
from typing import NamedTuple

from pyfastcdc import FastCDC

from linesync.core.ids import ChunkId, chunk_id

FORMAT_VERSION = 1
"""Version of the chunking rules and parameters; bump on any cut-point change."""

Buffer = bytes | bytearray | memoryview

_DECODE_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class ChunkParams:
    """Chunk sizes in bytes, within the bounds pyfastcdc accepts."""

    min_size: int
    avg_size: int
    max_size: int

    def __post_init__(self) -> None:
        if not 64 <= self.min_size <= self.avg_size <= self.max_size:
            raise ValueError("need 64 <= min_size <= avg_size <= max_size")
        if not (256 <= self.avg_size <= 1 << 22 and 1024 <= self.max_size <= 1 << 24):
            raise ValueError("need 256 <= avg_size <= 4 MiB and 1 KiB <= max_size <= 16 MiB")
        if self.min_size > 1 << 20:
            raise ValueError("need min_size <= 1 MiB")
        if self.avg_size & (self.avg_size - 1):
            raise ValueError("avg_size must be a power of two")


TEXT = ChunkParams(min_size=512, avg_size=2048, max_size=32768)
"""Text: line-rule sizes; over-long lines use FastCDC with the same sizes."""

BINARY = ChunkParams(min_size=8192, avg_size=32768, max_size=131072)
"""Binary: FastCDC sizes."""


class Chunk(NamedTuple):
    """One chunk of a buffer: ``data[offset:offset + length]``."""

    offset: int
    length: int


def is_text(data: Buffer) -> bool:
    """True for valid UTF-8 without a NUL byte; the empty buffer is text."""
    raw = data if isinstance(data, bytes) else bytes(data)
    if b"\x00" in raw:
        return False
    if raw.isascii():
        return True
    # Decode in blocks so a large file never becomes one huge str.
    view = memoryview(raw)
    pos, end = 0, len(raw)
    try:
        while pos < end:
            stop = pos + _DECODE_BLOCK
            _, used = codecs.utf_8_decode(view[pos:stop], "strict", stop >= end)
            pos += used
    except UnicodeDecodeError:
        return False
    return True


def _fastcdc(params: ChunkParams) -> FastCDC:
    return FastCDC(
        params.avg_size,
        min_size=params.min_size,
        max_size=params.max_size,
        normalized_chunking=1,
        seed=0,
    )


def _cdc_ends(cdc: FastCDC, view: memoryview, base: int) -> list[int]:
    """End offsets (relative to the whole buffer) of FastCDC chunks of ``view``."""
    return [base + c.offset + c.length for c in cdc.cut_buf(view)]


def _text_ends(raw: bytes, params: ChunkParams) -> list[int]:
    """End offsets of the text chunks of ``raw`` (non-empty), in order."""
    n = len(raw)
    lines = raw.split(b"\n")
    lens = list(map(len, lines))
    # ends[i]: offset just past line i's "\n"; the final piece has no "\n".
    ends = list(accumulate(map((1).__add__, lens)))
    ends[-1] = n
    per_byte = (1 << 32) // params.avg_size
    flags = map(lt, map(zlib.crc32, lines), map(mul, lens, repeat(per_byte)))
    min_size, max_size = params.min_size, params.max_size
    cdc: FastCDC | None = None
    view = memoryview(raw)

    cuts: list[int] = []
    start = 0  # start of the current chunk
    last = 0  # end of the previous candidate line (or 0)
    # Lines longer than max_size are always candidates (crc32 < 2**32), so the
    # lines between two candidates all fit in a chunk.
    for i in compress(range(len(lines)), flags):
        end = ends[i]
        begin = ends[i - 1] if i else 0
        while begin - start > max_size:  # forced cuts before this line
            start = ends[bisect_right(ends, start + max_size) - 1]
            cuts.append(start)
        if end - begin > max_size:  # an over-long line: FastCDC inside it
            if begin > start:
                cuts.append(begin)
            if cdc is None:
                cdc = _fastcdc(params)
            cuts += _cdc_ends(cdc, view[begin:end], begin)
            start = last = end
            continue
        if end - start > max_size:
            cuts.append(begin)
            start = begin
        if end - last >= min_size:
            cuts.append(end)
            start = end
        last = end
    while n - start > max_size:
        start = ends[bisect_right(ends, start + max_size) - 1]
        cuts.append(start)
    if start < n:
        cuts.append(n)
    return cuts


def _to_chunks(ends: list[int]) -> list[Chunk]:
    return [Chunk(s, e - s) for s, e in zip([0, *ends], ends, strict=False)]


def chunk_text(data: Buffer, params: ChunkParams = TEXT) -> list[Chunk]:
    """Chunks of ``data`` cut by the text (line) rule, whatever its content."""
    raw = data if isinstance(data, bytes) else bytes(data)
    if not raw:
        return []
    return _to_chunks(_text_ends(raw, params))


def chunk_binary(data: Buffer, params: ChunkParams = BINARY) -> list[Chunk]:
    """Chunks of ``data`` cut by FastCDC, whatever its content."""
    view = memoryview(data)
    if not view.nbytes:
        return []
    return [Chunk(c.offset, c.length) for c in _fastcdc(params).cut_buf(view)]


def chunk(data: Buffer) -> list[Chunk]:
    """The chunks of a file's content: text rule if ``is_text``, else FastCDC.

    The chunks tile ``data``: contiguous, in order, none empty; no chunks for
    empty data.
    """
    raw = data if isinstance(data, bytes) else bytes(data)
    return chunk_text(raw) if is_text(raw) else chunk_binary(raw)


def chunk_ids(data: Buffer) -> list[ChunkId]:
    """The blocklist of a file's content: the ids of ``chunk(data)`` in order."""
    raw = data if isinstance(data, bytes) else bytes(data)
    view = memoryview(raw)
    return [chunk_id(view[o : o + n]) for o, n in chunk(raw)]


blocklist = chunk_ids
