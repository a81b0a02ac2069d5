"""The streaming chunker cuts exactly where the whole-buffer chunker cuts,
however the file is split into blocks."""

from __future__ import annotations

import random
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from linesync.core.chunking import BINARY, TEXT, Chunker, TextSniffer, chunk, is_text

# Pieces a file is built from: each a kind and a size; built with a seeded
# generator so that a few hundred KiB cost Hypothesis little.
PIECES = st.lists(
    st.tuples(
        st.sampled_from(["lines", "blank", "long", "short", "utf8", "binary", "nul"]),
        st.integers(1, 3 * TEXT.max_size),
    ),
    max_size=12,
)


def build(pieces: list[tuple[str, int]], seed: int) -> bytes:
    rnd = random.Random(seed)
    out = bytearray()
    for kind, size in pieces:
        if kind == "lines":  # ordinary lines of 0-120 characters
            while size > 0:
                n = rnd.randrange(0, 120)
                out += bytes(rnd.choices(b"abcdefgh ,.", k=n)) + b"\n"
                size -= n + 1
        elif kind == "blank":  # never candidates: every cut is forced
            out += b"\n" * size
        elif kind == "long":  # one line past max_size: FastCDC inside it
            out += bytes(rnd.choices(range(32, 127), k=TEXT.max_size + size)) + b"\n"
        elif kind == "short":
            out += b"ab\n" * (size // 3)
        elif kind == "utf8":
            out += ("é€😀\n" * (size // 10)).encode()
        elif kind == "binary":
            out += rnd.randbytes(size)
        else:
            out += b"\0" * (size % 64 + 1)
    return bytes(out)


def stream(data: bytes, blocks: list[int]) -> tuple[bool, list[bytes]]:
    sniff = TextSniffer()
    pos = 0
    sizes = iter(blocks)
    while pos < len(data):
        step = next(sizes, 65536)
        sniff.feed(data[pos : pos + step], pos + step >= len(data))
        pos += step
    if not data:
        sniff.feed(b"", True)
    c = Chunker(sniff.text)
    out: list[bytes] = []
    pos = 0
    sizes = iter(blocks)
    while pos < len(data):
        step = next(sizes, 65536)
        out += c.feed(data[pos : pos + step])
        pos += step
    return sniff.text, out + c.finish()


@settings(max_examples=150, deadline=None)
@given(PIECES, st.integers(0, 2**32), st.lists(st.integers(1, 5 * TEXT.max_size), max_size=40))
def test_stream_cuts_where_the_whole_buffer_cuts(
    pieces: list[tuple[str, int]], seed: int, blocks: list[int]
) -> None:
    data = build(pieces, seed)
    text, got = stream(data, blocks)
    assert text == is_text(data)
    assert got == [data[o : o + n] for o, n in chunk(data)]


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(1, 700), max_size=20))
def test_stream_small_inputs(data: bytes, blocks: list[int]) -> None:
    text, got = stream(data, blocks)
    assert text == is_text(data)
    assert got == [data[o : o + n] for o, n in chunk(data)]


def test_multibyte_character_split_between_blocks_is_text() -> None:
    data = "😀".encode() * 10
    for at in range(1, 4):
        sniff = TextSniffer()
        sniff.feed(data[:at])
        assert sniff.feed(data[at:], True)
    cut = TextSniffer()
    assert not cut.feed(data[:-1], True)  # a character cut off at the end


def test_a_long_stream_holds_about_one_block() -> None:
    """Whatever the content, the chunker carries at most a block and a chunk."""
    rnd = random.Random(7)
    for text, make in (
        (True, lambda: b"\n" * 300_000),  # forced cuts only
        (True, lambda: bytes(rnd.choices(range(32, 127), k=300_000))),
        (False, lambda: rnd.randbytes(300_000)),
    ):
        c = Chunker(text)
        for _ in range(20):
            c.feed(make())
            assert len(c._buf) <= 300_000 + max(TEXT.max_size, BINARY.max_size)


def test_forced_cuts_then_a_candidate_just_after_a_block_end() -> None:
    """A block that ends in a run of blank lines leaves forced cuts behind it;
    the candidate line after them still cuts as in the whole file."""
    rnd = random.Random(3)
    lines = b"".join(bytes(rnd.choices(b"abcdef", k=rnd.randrange(40, 90))) + b"\n"
                     for _ in range(400))  # fmt: skip
    # A short line that is a candidate: the cut after it depends on where
    # the last candidate was, long before the forced cut.
    short = next(
        w for i in range(10**6) if zlib.crc32(w := b"line %d" % i) < len(w) * (2**32 // 2048)
    )
    for blank in range(TEXT.max_size + 1, TEXT.max_size + 1400, 97):
        data = b"\n" * blank + short + b"\n" + lines
        want = [data[o : o + n] for o, n in chunk(data)]
        for first in (blank - 300, blank - 10, blank):
            assert stream(data, [first, 1 << 20])[1] == want, (blank, first)
