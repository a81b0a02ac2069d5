"""Binary framing for chunk upload and download bodies.

Media type ``application/x-linesync-chunks``::

    body   := MAGIC frame* END
    MAGIC  := b"LSCF1\\n"
    frame  := 0x01 id[32] codec[u8] bases? length[u32 big-endian] payload[length]
    bases  := count[u8] id[32]*count
    END    := 0x00

``bases`` is present only when codec is zstd-dict (2): 1 to 255 chunk ids
whose concatenated bytes are the dictionary. A body that stops before END is
truncated and is rejected whole.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import NamedTuple

from linesync.core.ids import ID_SIZE
from linesync.protocol.codec import Codec
from linesync.protocol.errors import Code, LinesyncError

MEDIA_TYPE = "application/x-linesync-chunks"
MAGIC = b"LSCF1\n"
_CHUNK = 0x01
_END = 0x00
END = bytes([_END])
_LEN = struct.Struct(">I")


class Frame(NamedTuple):
    chunk_id: bytes
    codec: int
    base: tuple[bytes, ...] | None
    payload: bytes


def _frame_head(frame: Frame) -> bytes:
    head = bytes([_CHUNK]) + frame.chunk_id + bytes([frame.codec])
    if frame.codec == Codec.ZSTD_DICT:
        assert frame.base is not None and 0 < len(frame.base) < 256
        head += bytes([len(frame.base)]) + b"".join(frame.base)
    return head + _LEN.pack(len(frame.payload))


def encode_frame(frame: Frame) -> bytes:
    return _frame_head(frame) + frame.payload


def encode_frames(frames: Iterable[Frame]) -> bytes:
    """A whole body: the magic, the frames, the end marker."""
    return b"".join(frame_pieces(frames))


def frame_pieces(frames: Iterable[Frame]) -> list[bytes]:
    """A body's pieces, each payload as it is (sent without joining them)."""
    parts = [MAGIC]
    for f in frames:
        parts += (_frame_head(f), f.payload)
    parts.append(END)
    return parts


class FrameReader:
    """Incremental parser: ``feed`` bytes as they arrive, ``close`` at EOF.

    ``max_payload`` bounds one frame's payload so a hostile length field never
    makes the reader buffer more than that.
    """

    def __init__(self, max_payload: int) -> None:
        self._buf = bytearray()
        self._max_payload = max_payload
        self._magic_seen = False
        self.done = False

    def feed(self, data: bytes) -> list[Frame]:
        if self.done and data:
            raise LinesyncError(Code.BAD_FRAMING, "data after the end of the chunk stream")
        self._buf += data
        frames: list[Frame] = []
        while True:
            frame = self._next()
            if frame is None:
                return frames
            frames.append(frame)

    def close(self) -> None:
        if not self.done:
            raise LinesyncError(Code.BAD_FRAMING, "chunk stream is truncated")

    def _next(self) -> Frame | None:
        buf = self._buf
        if not self._magic_seen:
            if len(buf) < len(MAGIC):
                if not MAGIC.startswith(bytes(buf)):
                    raise LinesyncError(Code.BAD_FRAMING, "chunk stream has a bad header")
                return None
            if bytes(buf[: len(MAGIC)]) != MAGIC:
                raise LinesyncError(Code.BAD_FRAMING, "chunk stream has a bad header")
            del buf[: len(MAGIC)]
            self._magic_seen = True
        if self.done or not buf:
            return None
        tag = buf[0]
        if tag == _END:
            del buf[:1]
            self.done = True
            if buf:
                raise LinesyncError(Code.BAD_FRAMING, "data after the end of the chunk stream")
            return None
        if tag != _CHUNK:
            raise LinesyncError(Code.BAD_FRAMING, f"unknown frame tag {tag}")
        head = 1 + ID_SIZE + 1
        if len(buf) < head:
            return None
        codec = buf[1 + ID_SIZE]
        if codec not in (Codec.RAW, Codec.ZSTD, Codec.ZSTD_DICT):
            raise LinesyncError(Code.BAD_FRAMING, f"unknown chunk codec {codec}")
        base_len = 0
        if codec == Codec.ZSTD_DICT:
            if len(buf) < head + 1:
                return None
            count = buf[head]
            if count == 0:
                raise LinesyncError(Code.BAD_FRAMING, "zstd-dict frame without a base")
            base_len = 1 + ID_SIZE * count
        if len(buf) < head + base_len + 4:
            return None
        (length,) = _LEN.unpack_from(buf, head + base_len)
        if length > self._max_payload:
            raise LinesyncError(Code.PAYLOAD_TOO_LARGE, "chunk frame is larger than the limit")
        total = head + base_len + 4 + length
        if len(buf) < total:
            return None
        start = head + base_len + 4
        frame = Frame(
            chunk_id=bytes(buf[1 : 1 + ID_SIZE]),
            codec=codec,
            base=tuple(
                bytes(buf[i : i + ID_SIZE]) for i in range(head + 1, head + base_len, ID_SIZE)
            )
            if base_len
            else None,
            payload=bytes(buf[start:total]),
        )
        del buf[:total]
        return frame
