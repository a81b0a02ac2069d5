"""Hypothesis strategies for chunk upload bodies (``application/x-linesync-chunks``).

``bodies(...)`` draws well-formed bodies (raw, zstd and zstd-dict frames whose
ids are the BLAKE3 of their bytes, the dictionary bases either held by the
namespace or not) and malformed ones: each a well-formed body with one defect
that the protocol names (docs/PROTOCOL.md §4.11, §5), or plain random bytes.
``Defect`` says which, so a test can tell what answer a body must get.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import zstandard
from hypothesis import strategies as st

from linesync.core.ids import ID_SIZE, chunk_id
from linesync.protocol.codec import Codec
from linesync.protocol.framing import END, MAGIC, Frame, encode_frame

_LEN = struct.Struct(">I")


class Defect(enum.Enum):
    NONE = "none"
    RANDOM = "random bytes"
    BAD_MAGIC = "bad magic"
    TRUNCATED = "truncated"
    TRAILING = "bytes after the end marker"
    BAD_TAG = "unknown frame tag"
    BAD_CODEC = "unknown codec"
    NO_BASES = "zstd-dict frame with 0 bases"
    ZERO_ID = "all-zero id"
    WRONG_ID = "id of other bytes"
    HUGE_LENGTH = "payload length over the frame limit"
    NOT_ZSTD = "payload that does not decompress"
    CUT_ZSTD = "zstd payload cut short (its checksum, or more)"
    BOMB = "payload that decompresses past the chunk limit"
    UNKNOWN_BASE = "a base the namespace does not hold"
    TOO_MANY = "more frames than allowed"
    TOO_BIG = "body over the upload limit"
    TOO_MUCH_DECODED = "frames that decode past the request limit"


@dataclass(frozen=True)
class Limits:
    """The server's limits a body can run into (from its ServerConfig)."""

    max_chunk: int
    max_upload_body: int
    max_ids_per_request: int
    max_request_decoded: int


@dataclass(frozen=True)
class Body:
    data: bytes
    defect: Defect

    def __repr__(self) -> str:
        return f"Body({self.defect.value}, {len(self.data)} bytes)"


def _zstd(data: bytes, base: bytes | None = None) -> bytes:
    if base is None:
        return zstandard.ZstdCompressor(level=1).compress(data)
    d = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdCompressor(level=1, dict_data=d).compress(data)


_content = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode()),
    st.integers(1, 40).map(lambda n: b"line of text\n" * n),
)


@st.composite
def frames(draw: st.DrawFn, held: dict[bytes, bytes], unknown_base: bool = False) -> Frame:
    """One well-formed frame; zstd-dict bases from ``held`` (id → bytes), or
    with ``unknown_base`` one base the namespace cannot hold."""
    data = draw(_content)
    cid = chunk_id(data)
    codec = draw(st.sampled_from([Codec.RAW, Codec.ZSTD, Codec.ZSTD_DICT]))
    if unknown_base:
        codec = Codec.ZSTD_DICT
    if codec == Codec.RAW:
        return Frame(cid, codec, None, data)
    if codec == Codec.ZSTD:
        return Frame(cid, codec, None, _zstd(data))
    bases = draw(st.lists(st.sampled_from(sorted(held)), min_size=1, max_size=3))
    if unknown_base:
        bases.append(chunk_id(b"never uploaded " + cid))
    dictionary = b"".join(held.get(b, b"") for b in bases)
    return Frame(cid, codec, tuple(bases), _zstd(data, dictionary or None))


def _encode(fs: list[Frame]) -> bytes:
    return MAGIC + b"".join(encode_frame(f) for f in fs) + END


@st.composite
def bodies(draw: st.DrawFn, held: dict[bytes, bytes], limits: Limits) -> Body:
    defect = draw(st.sampled_from(list(Defect)))
    if defect is Defect.RANDOM:
        return Body(draw(st.binary(max_size=200)), defect)
    fs = draw(st.lists(frames(held), min_size=0, max_size=4))
    if defect is Defect.NONE:
        return Body(_encode(fs), defect)
    if defect is Defect.UNKNOWN_BASE:
        fs.append(draw(frames(held, unknown_base=True)))
        return Body(_encode(fs), defect)
    if defect is Defect.TOO_MANY:
        one = Frame(chunk_id(b"x"), Codec.RAW, None, b"x")
        return Body(_encode([one] * (limits.max_ids_per_request + 1)), defect)
    if defect in (Defect.TOO_BIG, Defect.TOO_MUCH_DECODED):
        # Frames as big as allowed, until the body (or what it decodes to) is over.
        total = limits.max_upload_body if defect is Defect.TOO_BIG else limits.max_request_decoded
        big = draw(st.binary(min_size=16, max_size=16)) * (limits.max_chunk // 16)
        codec = Codec.RAW if defect is Defect.TOO_BIG else Codec.ZSTD
        one = Frame(chunk_id(big), codec, None, big if codec == Codec.RAW else _zstd(big))
        return Body(_encode([one] * (total // len(big) + 1)), defect)
    if defect is Defect.BOMB:
        big = b"\0" * (limits.max_chunk + 1)
        fs.append(Frame(chunk_id(big), Codec.ZSTD, None, _zstd(big)))
        return Body(_encode(fs), defect)
    if not fs:
        fs = [draw(frames(held))]
    i = draw(st.integers(0, len(fs) - 1))
    f = fs[i]
    raw = _encode(fs)
    start = len(MAGIC) + sum(len(encode_frame(g)) for g in fs[:i])  # the defect's frame
    if defect is Defect.BAD_MAGIC:
        n = draw(st.integers(0, len(MAGIC) - 1))
        bad = bytes([MAGIC[n] ^ draw(st.integers(1, 255))])
        return Body(raw[:n] + bad + raw[n + 1 :], defect)
    if defect is Defect.TRUNCATED:
        return Body(raw[: draw(st.integers(0, len(raw) - 1))], defect)
    if defect is Defect.TRAILING:
        return Body(raw + draw(st.binary(min_size=1, max_size=40)), defect)
    if defect is Defect.BAD_TAG:
        tag = draw(st.integers(2, 255))
        return Body(raw[:start] + bytes([tag]) + raw[start + 1 :], defect)
    if defect is Defect.BAD_CODEC:
        at = start + 1 + ID_SIZE
        return Body(raw[:at] + bytes([draw(st.integers(3, 255))]) + raw[at + 1 :], defect)
    if defect is Defect.NO_BASES:
        head = bytes([1]) + f.chunk_id + bytes([Codec.ZSTD_DICT, 0]) + _LEN.pack(len(f.payload))
        fs_raw = head + f.payload
        return Body(raw[:start] + fs_raw + raw[start + len(encode_frame(f)) :], defect)
    if defect is Defect.ZERO_ID:
        fs[i] = f._replace(chunk_id=bytes(ID_SIZE))
        return Body(_encode(fs), defect)
    if defect is Defect.WRONG_ID:
        fs[i] = f._replace(chunk_id=chunk_id(b"other " + f.chunk_id))
        return Body(_encode(fs), defect)
    if defect is Defect.HUGE_LENGTH:
        length = draw(st.integers(limits.max_chunk + 1, 2**32 - 1))
        at = start + len(encode_frame(f)) - len(f.payload) - 4
        return Body(raw[:at] + _LEN.pack(length) + raw[at + 4 :], defect)
    if defect is Defect.CUT_ZSTD:
        data = draw(st.binary(min_size=1, max_size=300))
        whole = _zstd(data)
        cut = whole[: draw(st.integers(1, len(whole) - 1))]
        fs[i] = Frame(chunk_id(data), Codec.ZSTD, None, cut)
        return Body(_encode(fs), defect)
    assert defect is Defect.NOT_ZSTD
    # The zstd magic, then a frame header with its reserved bit set, then anything.
    junk = draw(st.binary(min_size=1, max_size=50))
    fs[i] = Frame(f.chunk_id, Codec.ZSTD, None, b"\x28\xb5\x2f\xfd\x08" + junk)
    return Body(_encode(fs), defect)


# The answers each kind of body may get from a read-write token on its own
# namespace (status, error code); a well-formed body gets 200. Random bytes may
# get any answer the document lists.
EXPECTED: dict[Defect, set[tuple[int, str]]] = {
    Defect.NONE: {(200, "")},
    Defect.BAD_MAGIC: {(400, "bad_framing")},
    Defect.TRUNCATED: {(400, "bad_framing")},
    Defect.TRAILING: {(400, "bad_framing")},
    Defect.BAD_TAG: {(400, "bad_framing")},
    Defect.BAD_CODEC: {(400, "bad_framing")},
    Defect.NO_BASES: {(400, "bad_framing")},
    Defect.ZERO_ID: {(400, "bad_framing")},
    Defect.WRONG_ID: {(422, "chunk_mismatch")},
    Defect.HUGE_LENGTH: {(413, "payload_too_large")},
    Defect.NOT_ZSTD: {(400, "bad_request")},
    # Cut in a block, the bytes it still yields are another chunk's.
    Defect.CUT_ZSTD: {(400, "bad_request"), (422, "chunk_mismatch")},
    Defect.BOMB: {(413, "payload_too_large")},
    Defect.UNKNOWN_BASE: {(422, "chunk_unavailable")},
    Defect.TOO_MANY: {(413, "batch_too_large")},
    Defect.TOO_BIG: {(413, "payload_too_large")},
    Defect.TOO_MUCH_DECODED: {(413, "payload_too_large")},
}
