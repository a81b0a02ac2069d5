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


def _text_cuts(raw: bytes, params: ChunkParams, last: int = 0) -> tuple[list[int], int, int]:
    """The cuts of ``raw`` (non-empty) that no later byte can move, and the
    state after them: the start of the chunk still open and the end of the
    last candidate line (``last`` on entry: that of the bytes before ``raw``,
    0 or negative). ``raw`` ending in ``\n`` can be continued from that state;
    at the end of a file the open chunk is the last one."""
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
    # Cuts forced before the next candidate line, wherever it begins.
    while n - start > max_size:
        start = ends[bisect_right(ends, start + max_size) - 1]
        cuts.append(start)
    return cuts, start, last


def _text_ends(raw: bytes, params: ChunkParams) -> list[int]:
    """End offsets of the text chunks of ``raw`` (non-empty), in order."""
    cuts, start, _ = _text_cuts(raw, params)
    if start < len(raw):
        cuts.append(len(raw))
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


def cut(data: bytes) -> tuple[list[ChunkId], list[int]]:
    """The blocklist of ``data`` and its chunks' sizes (what a scan records)."""
    view = memoryview(data)
    pieces = chunk(data)
    return [chunk_id(view[o : o + n]) for o, n in pieces], [n for _, n in pieces]


def cut_all(datas: list[bytes]) -> list[tuple[list[ChunkId], list[int]]]:
    """:func:`cut` of each (one task of a scan's worker processes)."""
    return [cut(d) for d in datas]


# -- streams -------------------------------------------------------------------
# A file too big to hold in memory is read twice in blocks: once by a
# TextSniffer (is it text?), then through a Chunker, which cuts exactly where
# ``chunk`` cuts the whole file (property-tested), holding about one block
# plus one chunk.


class TextSniffer:
    """``is_text`` over a stream of blocks."""

    def __init__(self) -> None:
        self._decode = codecs.getincrementaldecoder("utf-8")("strict").decode
        self.text = True

    def feed(self, block: Buffer, final: bool = False) -> bool:
        """Take the next block (``final`` for the last); False once it is not text."""
        if self.text:
            raw = block if isinstance(block, bytes) else bytes(block)
            if b"\x00" in raw:
                self.text = False
            elif not raw.isascii() or final:
                try:
                    self._decode(raw, final)
                except UnicodeDecodeError:
                    self.text = False
        return self.text


class Chunker:
    """The chunks of a file fed block by block: ``feed`` gives back the chunks
    that later bytes cannot change, ``finish`` the rest. ``text`` says which
    rule cuts (``is_text`` of the whole file, from a TextSniffer)."""

    def __init__(self, text: bool) -> None:
        self.text = text
        self._params = TEXT if text else BINARY
        self._cdc = _fastcdc(self._params)
        self._buf = b""
        self._last = 0  # the last candidate line's end, relative to _buf (text)
        self._long = False  # _buf starts an over-long line (text)

    def feed(self, block: Buffer) -> list[bytes]:
        self._buf += block
        if not self.text or self._long:
            return self._cdc_head()
        out: list[bytes] = []
        newline = self._buf.rfind(b"\n")
        partial = len(self._buf) - newline - 1  # the line in progress
        if newline >= 0:
            whole = self._buf[: newline + 1]
            cuts, start, last = _text_cuts(whole, self._params, self._last)
            out = _pieces(self._buf, cuts)
            self._buf, self._last = self._buf[start:], last - start
        if partial > self._params.max_size:  # the line in progress is over-long
            head = len(self._buf) - partial
            if head:  # what is before it is a chunk of its own
                out.append(self._buf[:head])
                self._buf = self._buf[head:]
            self._long = True
            out += self._cdc_head()
        return out

    def finish(self) -> list[bytes]:
        out: list[bytes] = []
        if self._long:
            newline = self._buf.find(b"\n")
            out = self._end_long(newline + 1 if newline >= 0 else len(self._buf))
        buf, self._buf = self._buf, b""
        if not buf:
            return out
        if not self.text:
            return out + [buf[c.offset : c.offset + c.length] for c in self._cdc.cut_buf(buf)]
        cuts, start, _ = _text_cuts(buf, self._params, self._last)
        if start < len(buf):
            cuts.append(len(buf))
        return out + _pieces(buf, cuts)

    def _cdc_head(self) -> list[bytes]:
        """FastCDC chunks of the buffer, all but the last (the bytes after
        it may move its end); for text, up to the end of the over-long line."""
        if self.text:
            newline = self._buf.find(b"\n")
            if newline >= 0:
                out = self._end_long(newline + 1)
                return out + self.feed(b"")
        if len(self._buf) <= self._params.max_size:
            return []
        chunks = list(self._cdc.cut_buf(self._buf))[:-1]
        out = [self._buf[c.offset : c.offset + c.length] for c in chunks]
        self._buf = self._buf[sum(c.length for c in chunks) :]
        return out

    def _end_long(self, end: int) -> list[bytes]:
        """The over-long line ends at ``end``: its chunks, then text as at a file's start."""
        line, self._buf = self._buf[:end], self._buf[end:]
        self._long, self._last = False, 0
        return [line[c.offset : c.offset + c.length] for c in self._cdc.cut_buf(line)]


def _pieces(buf: bytes, ends: list[int]) -> list[bytes]:
    return [buf[s:e] for s, e in zip([0, *ends], ends, strict=False)]
