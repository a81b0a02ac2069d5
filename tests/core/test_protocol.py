from __future__ import annotations

import os

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from linesync.core.ids import chunk_id, from_hex, to_hex
from linesync.protocol import codec, cursor
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.framing import MAGIC, Frame, FrameReader, encode_frames


def test_every_code_has_a_status() -> None:
    for code in Code:
        assert 400 <= code.status < 600
    assert Code.CURSOR_INVALID.status == 410
    assert LinesyncError(Code.NOT_FOUND, "x").body() == {
        "error": {"code": "not_found", "message": "x"}
    }


frames_st = st.lists(
    st.builds(
        lambda data, dict_base: Frame(
            chunk_id(data),
            codec.Codec.ZSTD_DICT if dict_base else codec.Codec.RAW,
            (chunk_id(b"base"), chunk_id(b"b2")) if dict_base else None,
            data,
        ),
        st.binary(max_size=300),
        st.booleans(),
    ),
    max_size=8,
)


@given(frames_st, st.integers(min_value=1, max_value=64))
def test_frames_round_trip_in_any_piece_size(frames: list[Frame], step: int) -> None:
    body = encode_frames(frames)
    reader = FrameReader(max_payload=1000)
    got: list[Frame] = []
    for i in range(0, len(body), step):
        got.extend(reader.feed(body[i : i + step]))
    reader.close()
    assert got == frames


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"NOTMAGIC", Code.BAD_FRAMING),
        (MAGIC + b"\x07", Code.BAD_FRAMING),
        (MAGIC + b"\x01" + bytes(32) + b"\x09", Code.BAD_FRAMING),
        (MAGIC + b"\x01" + bytes(32) + b"\x00" + b"\xff\xff\xff\xff", Code.PAYLOAD_TOO_LARGE),
        (MAGIC + b"\x00" + b"extra", Code.BAD_FRAMING),
    ],
)
def test_bad_framing_is_refused(body: bytes, code: Code) -> None:
    reader = FrameReader(max_payload=1000)
    with pytest.raises(LinesyncError) as err:
        reader.feed(body)
        reader.close()
    assert err.value.code is code


def test_truncated_stream_is_refused_at_close() -> None:
    body = encode_frames([Frame(chunk_id(b"x"), 0, None, b"x")])
    reader = FrameReader(max_payload=1000)
    reader.feed(body[:-1])
    with pytest.raises(LinesyncError) as err:
        reader.close()
    assert err.value.code is Code.BAD_FRAMING


@given(st.binary(max_size=5000), st.binary(max_size=5000))
def test_codec_round_trip(data: bytes, base: bytes) -> None:
    kind, payload = codec.encode(data, base or None)
    assert codec.decode(kind, payload, base or None, len(data)) == data
    assert len(payload) <= len(data)


def test_dict_codec_sends_about_what_changed() -> None:
    old = os.urandom(8000)
    new = old[:4000] + b"one changed line\n" + old[4000:]
    kind, payload = codec.encode(new, old)
    assert kind is codec.Codec.ZSTD_DICT
    assert len(payload) < 100


def test_decompression_bomb_is_bounded() -> None:
    bomb = zstandard.ZstdCompressor().compress(bytes(50 * 2**20))
    assert len(bomb) < 10_000
    with pytest.raises(LinesyncError) as err:
        codec.decode(codec.Codec.ZSTD, bomb, None, 2**20)
    assert err.value.code is Code.PAYLOAD_TOO_LARGE


def test_garbage_does_not_decompress() -> None:
    with pytest.raises(LinesyncError) as err:
        codec.decode(codec.Codec.ZSTD, b"not zstd at all", None, 2**20)
    assert err.value.code is Code.BAD_REQUEST


def test_cursor_round_trip_and_refusals() -> None:
    c = cursor.Cursor("0123456789abcdef", 42, "fedcba98")
    assert cursor.parse(str(c)) == c
    assert cursor.parse(str(cursor.start("0123456789abcdef"))).jid == 0
    for bad in ["", "x", "0123456789abcdef.01.0", "0123456789abcdef.-1.0", "ABCDEF0123456789.1.0"]:
        with pytest.raises(LinesyncError) as err:
            cursor.parse(bad)
        assert err.value.code is Code.BAD_CURSOR


def test_hex_ids() -> None:
    cid = chunk_id(b"x")
    assert from_hex(to_hex(cid)) == cid
    for bad in ["", "ab", to_hex(cid).upper(), "zz" * 32]:
        with pytest.raises(ValueError):
            from_hex(bad)
