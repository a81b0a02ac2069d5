"""Chunking: pinned cut points (known answers), tiling properties, locality."""

from __future__ import annotations

import random
import zlib

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyfastcdc import FastCDC

from linesync.core import chunking
from linesync.core.chunking import (
    BINARY,
    FORMAT_VERSION,
    TEXT,
    Chunk,
    ChunkParams,
    chunk,
    chunk_binary,
    chunk_ids,
    chunk_text,
    is_text,
)
from linesync.core.ids import chunk_id

# Small sizes so that generated inputs of a few KiB exercise every rule.
SMALL = ChunkParams(min_size=64, avg_size=256, max_size=1024)

# --------------------------------------------------------------------------- helpers


def reference_text_ends(data: bytes, p: ChunkParams) -> list[int]:
    """The text rule as docs/FORMAT.md states it, one line at a time."""
    n = len(data)
    per_byte = (1 << 32) // p.avg_size
    cuts: list[int] = []
    start = last = pos = 0
    for line in data.split(b"\n"):
        begin, end = pos, min(pos + len(line) + 1, n)
        pos = end
        if begin >= n:
            break
        if end - begin > p.max_size:  # over-long line: FastCDC inside it
            if begin > start:
                cuts.append(begin)
            cdc = FastCDC(p.avg_size, min_size=p.min_size, max_size=p.max_size)
            cuts += [begin + c.offset + c.length for c in cdc.cut_buf(data[begin:end])]
            start = last = end
            continue
        if end - start > p.max_size:  # the line does not fit: cut before it
            cuts.append(begin)
            start = begin
        if zlib.crc32(line) < len(line) * per_byte:  # a candidate
            if end - last >= p.min_size:
                cuts.append(end)
                start = end
            last = end
    if start < n:
        cuts.append(n)
    return cuts


def ends_of(chunks: list[Chunk]) -> list[int]:
    return [c.offset + c.length for c in chunks]


def assert_tiles(data: bytes, chunks: list[Chunk], max_size: int) -> None:
    if not data:
        assert chunks == []
        return
    pos = 0
    for c in chunks:
        assert c.offset == pos
        assert 0 < c.length <= max_size
        pos += c.length
    assert pos == len(data)


def assert_line_cuts(data: bytes, chunks: list[Chunk], max_size: int) -> None:
    """Every cut is at a line end, except inside a line longer than max_size."""
    for c in chunks[:-1]:
        end = c.offset + c.length
        if data[end - 1 : end] == b"\n":
            continue
        begin = data.rfind(b"\n", 0, end) + 1
        stop = data.find(b"\n", end)
        stop = len(data) if stop < 0 else stop + 1
        assert stop - begin > max_size, f"cut at {end} inside a short line"


def digest_of_ids(ids: list[bytes]) -> str:
    return blake3.blake3(b"".join(ids)).hexdigest()


def ids_of(data: bytes, chunks: list[Chunk]) -> list[bytes]:
    return [chunk_id(data[o : o + n]) for o, n in chunks]


_WORD_TEXT = (
    "the of and to in is that for it as was with be by on not this are or from at which "
    "but have an they you one all we can has there been if more when will would who so "
    "recipe note sync file line edit change folder server client chunk version data list"
)
WORDS = _WORD_TEXT.split(" ")


def markdown_like(rng: random.Random, lines: int) -> bytes:
    """Markdown-ish lines from ``rng.random()`` only (stable across Python versions)."""

    def pick(seq: list[str]) -> str:
        return seq[int(rng.random() * len(seq))]

    def words(k: int) -> str:
        return " ".join(pick(WORDS) for _ in range(k))

    out: list[str] = []
    while len(out) < lines:
        r = rng.random()
        if r < 0.1:
            out += ["#" * (1 + int(rng.random() * 3)) + " " + words(3).title(), ""]
        elif r < 0.6:
            out += [words(8 + int(rng.random() * 8)) for _ in range(1 + int(rng.random() * 6))]
            out.append("")
        elif r < 0.8:
            out += [
                "- " + words(3 + int(rng.random() * 12)) for _ in range(2 + int(rng.random() * 5))
            ]
            out.append("")
        elif r < 0.95:
            out.append("```python")
            for _ in range(2 + int(rng.random() * 10)):
                indent = "    " * int(rng.random() * 3)
                out.append(f"{indent}{pick(WORDS)}_{pick(WORDS)} = {int(rng.random() * 1000)}")
            out += ["```", ""]
        else:  # a soft-wrapped paragraph: one long line
            out += [words(40 + int(rng.random() * 200)), ""]
    return "\n".join(out[:lines]).encode() + b"\n"


# --------------------------------------------------------------------------- known answers
# Computed once from the implementation of FORMAT_VERSION 1 and pinned: a change
# here moves cut points, which re-chunks every stored file. Bump FORMAT_VERSION.


def test_format_version_and_parameters_are_pinned() -> None:
    assert FORMAT_VERSION == 1
    assert (TEXT.min_size, TEXT.avg_size, TEXT.max_size) == (512, 2048, 32768)
    assert (BINARY.min_size, BINARY.avg_size, BINARY.max_size) == (8192, 32768, 131072)


def kat_text() -> bytes:
    rng = random.Random(1234)
    body = markdown_like(rng, 2500)
    # one over-long line (FastCDC inside it) in the middle
    long_line = b" ".join(WORDS[int(rng.random() * len(WORDS))].encode() for _ in range(9000))
    half = body.find(b"\n", len(body) // 2) + 1
    return body[:half] + long_line + b"\n" + body[half:]


KAT_TEXT_INPUT = "5fd8e85cb2c049f41904ef4331998bfcee2ddd75301f0d928d5c7d1d12b852ec"
KAT_TEXT_CHUNKS: list[tuple[int, int]] = [
    (0, 3487),
    (3487, 4156),
    (7643, 2011),
    (9654, 1116),
    (10770, 4197),
    (14967, 580),
    (15547, 1904),
    (17451, 5741),
    (23192, 6286),
    (29478, 2010),
    (31488, 3034),
    (34522, 3971),
    (38493, 3110),
    (41603, 2861),
    (44464, 917),
    (45381, 3010),
    (48391, 1378),
    (49769, 2075),
    (51844, 2070),
    (53914, 2229),
    (56143, 3130),
    (59273, 2148),
    (61421, 562),
    (61983, 1716),
    (63699, 536),
    (64235, 604),
    (64839, 2130),
    (66969, 2180),
    (69149, 2246),
    (71395, 2123),
    (73518, 2337),
    (75855, 2718),
    (78573, 2711),
    (81284, 6289),
    (87573, 1224),
    (88797, 192),
    (88989, 2004),
    (90993, 4292),
    (95285, 5449),
    (100734, 10942),
    (111676, 3931),
    (115607, 2617),
    (118224, 1080),
    (119304, 572),
    (119876, 1514),
    (121390, 2757),
    (124147, 4234),
    (128381, 1749),
    (130130, 643),
    (130773, 4341),
    (135114, 824),
    (135938, 1420),
]
KAT_TEXT_IDS = "1cd27dbd1351802e1ec49b216e2a81cf50db2610832748e886079e9552631704"


def test_known_answer_text() -> None:
    data = kat_text()
    assert blake3.blake3(data).hexdigest() == KAT_TEXT_INPUT, "the KAT input generator changed"
    chunks = chunk(data)
    assert [tuple(c) for c in chunks] == KAT_TEXT_CHUNKS
    assert digest_of_ids(chunk_ids(data)) == KAT_TEXT_IDS


def kat_binary() -> bytes:
    return blake3.blake3(b"linesync chunking KAT v1").digest(length=1 << 20)


KAT_BINARY_INPUT = "9f72a5afd29e826f7d56cfd401540a0fc7a9ffb1cd2ca537fdf2d86fe3207447"
KAT_BINARY_CHUNKS: list[tuple[int, int]] = [
    (0, 40085),
    (40085, 48011),
    (88096, 37348),
    (125444, 91351),
    (216795, 35505),
    (252300, 51615),
    (303915, 15582),
    (319497, 38142),
    (357639, 43293),
    (400932, 43829),
    (444761, 19291),
    (464052, 54943),
    (518995, 25577),
    (544572, 9385),
    (553957, 48981),
    (602938, 58979),
    (661917, 9013),
    (670930, 13999),
    (684929, 37015),
    (721944, 33066),
    (755010, 9557),
    (764567, 39078),
    (803645, 35378),
    (839023, 47035),
    (886058, 41236),
    (927294, 11869),
    (939163, 75968),
    (1015131, 20248),
    (1035379, 13197),
]
KAT_BINARY_IDS = "6fbe3ef900001a6956fb8c0498e7cce4c73a96901b41caef2f139d7436b5e1a6"


def test_known_answer_binary() -> None:
    data = kat_binary()
    assert blake3.blake3(data).hexdigest() == KAT_BINARY_INPUT
    assert not is_text(data)
    assert [tuple(c) for c in chunk(data)] == KAT_BINARY_CHUNKS
    assert digest_of_ids(chunk_ids(data)) == KAT_BINARY_IDS


def short_text() -> bytes:
    lines = [
        f"{i:04d} step: stir the {WORDS[i % len(WORDS)]} for {i % 7} minutes" for i in range(600)
    ]
    return ("\n".join(lines) + "\n").encode()


SHORT_TEXT_IDS: list[str] = [
    "1c759e42707eca64ecfba4decbd14468f6cbb3c88cb8ff914ab44c44fd8779bb",
    "6132ff90118c62af3fa302246e5b80df2ac1708840b3a9e735d3748c02471b85",
    "09c2b304d0f65cd1cfc4d92a620854dcdee8a865a38a7bfe390755be998a3231",
    "eba72e3efc6062dec7b60e60c4d0b787c9cdda72606110d14741d2f77a3a5a30",
    "aae1e94901e0e52ef6c1a8f43e11b3eaf7423d6cc9ed81de1dfa4aef4222830d",
]


def test_known_answer_short_text_ids_in_full() -> None:
    assert [cid.hex() for cid in chunk_ids(short_text())] == SHORT_TEXT_IDS


def test_known_answer_tiny_inputs() -> None:
    assert chunk(b"") == []
    assert chunk_ids(b"") == []
    assert chunk(b"hello\nworld\n") == [Chunk(0, 12)]
    assert chunk_ids(b"hello\nworld\n") == [blake3.blake3(b"hello\nworld\n").digest()]
    assert chunk(b"\x00") == [Chunk(0, 1)]


# --------------------------------------------------------------------------- is_text


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", True),
        (b"plain ascii\n", True),
        ("caf\u00e9 \u20ac \U0001f600 \u65e5\u672c\n".encode(), True),
        (b"\xef\xbb\xbfwith a BOM\n", True),
        (b"crlf\r\nlines\r\n", True),
        (b"\xff\xfe", False),  # invalid start bytes
        (b"caf\xc3", False),  # truncated sequence at the end
        (b"\xc3\x28", False),  # bad continuation
        (b"\xc0\xaf", False),  # overlong encoding
        (b"\xed\xa0\x80", False),  # encoded surrogate
        (b"ascii\x00nul", False),
        ("caf\u00e9\x00".encode(), False),
        (b"\x00", False),
    ],
)
def test_is_text(data: bytes, expected: bool) -> None:
    assert is_text(data) is expected
    assert is_text(memoryview(data)) is expected
    assert is_text(bytearray(data)) is expected


def test_is_text_multibyte_across_decode_blocks() -> None:
    block = 1 << 20
    for pad in range(block - 4, block + 1):
        assert is_text(b"a" * pad + "\U0001f600".encode() * 2)
        assert not is_text(b"a" * pad + b"\xf0\x9f\x98")


@given(st.text())
def test_is_text_accepts_any_utf8_without_nul(text: str) -> None:
    assert is_text(text.encode()) is ("\x00" not in text)


# --------------------------------------------------------------------------- properties

line = st.one_of(
    st.sampled_from(["", "}", "    return x", "- item", "# Title", "same line again"]),
    st.text(st.characters(exclude_characters="\n\x00", exclude_categories=("Cs",)), max_size=120),
    st.text("ab ", min_size=900, max_size=3000),  # over-long for SMALL
)
texts = st.builds(
    lambda lines, tail: ("\n".join(lines) + tail).encode(),
    st.lists(line, max_size=80),
    st.sampled_from(["", "\n", "\n\n"]),
)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_text_rule_tiles_and_cuts_at_line_ends(data: bytes) -> None:
    chunks = chunk_text(data, SMALL)
    assert_tiles(data, chunks, SMALL.max_size)
    assert_line_cuts(data, chunks, SMALL.max_size)
    assert ends_of(chunks) == reference_text_ends(data, SMALL)


@settings(max_examples=50, deadline=None)
@given(texts)
def test_text_rule_with_real_parameters_matches_reference(data: bytes) -> None:
    data = data * 8
    chunks = chunk_text(data)
    assert_tiles(data, chunks, TEXT.max_size)
    assert ends_of(chunks) == reference_text_ends(data, TEXT)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=20_000))
def test_binary_rule_tiles(data: bytes) -> None:
    chunks = chunk_binary(data, SMALL)
    assert_tiles(data, chunks, SMALL.max_size)
    assert_tiles(data, chunk_binary(data), BINARY.max_size)


@settings(max_examples=200, deadline=None)
@given(st.one_of(texts, st.binary(max_size=5000)))
def test_chunk_is_deterministic_and_takes_any_buffer(data: bytes) -> None:
    chunks = chunk(data)
    assert_tiles(data, chunks, max(TEXT.max_size, BINARY.max_size))
    assert chunk(bytes(data)) == chunks
    assert chunk(memoryview(data)) == chunks
    assert chunk(bytearray(data)) == chunks
    assert chunk_ids(memoryview(data)) == ids_of(data, chunks)
    assert chunking.blocklist(data) == chunk_ids(data)
    expected = chunk_text(data) if is_text(data) else chunk_binary(data)
    assert chunks == expected
    # What a scan records (in a worker process): the same ids, and each one's size.
    assert chunking.cut(data) == (chunk_ids(data), [c.length for c in chunks])
    assert chunking.cut_all([data, b"", data]) == [chunking.cut(data), ([], []),
                                                   chunking.cut(data)]  # fmt: skip


def test_text_chunks_end_with_newline_except_the_last() -> None:
    data = markdown_like(random.Random(5), 20_000)
    chunks = chunk(data)
    assert len(chunks) > 100
    assert all(data[c.offset + c.length - 1] == ord("\n") for c in chunks)
    unterminated = data + b"last line without newline"
    chunks = chunk(unterminated)
    assert all(unterminated[c.offset + c.length - 1] == ord("\n") for c in chunks[:-1])
    assert_tiles(unterminated, chunks, TEXT.max_size)


def test_realistic_chunk_sizes() -> None:
    data = markdown_like(random.Random(6), 40_000)
    sizes = [c.length for c in chunk(data)]
    assert min(sizes[:-1]) >= TEXT.min_size
    assert 1500 <= len(data) / len(sizes) <= 4000


def test_blank_and_repeated_lines_never_make_tiny_chunks() -> None:
    data = b"\n" * 100_000 + b"}\n" * 50_000
    chunks = chunk(data)
    assert_tiles(data, chunks, TEXT.max_size)
    assert all(c.length == TEXT.max_size for c in chunks[:-1])


def test_ten_megabyte_single_line() -> None:
    letters = bytes(range(97, 123)) * 9 + b"  "  # 236 symbols
    table = (letters * 2)[:256]
    data = blake3.blake3(b"one line").digest(length=10_000_000).translate(table)
    assert is_text(data)
    chunks = chunk(data)
    assert_tiles(data, chunks, TEXT.max_size)
    assert 1500 <= len(data) / len(chunks) <= 16_000
    with_newline = data + b"\n"
    assert chunk(with_newline)[:-1] == chunks[:-1]


def test_over_long_line_is_cut_on_its_own() -> None:
    rng = random.Random(9)
    before = markdown_like(rng, 300)
    long_line = bytes(97 + int(rng.random() * 26) for _ in range(100_000)) + b"\n"
    after = markdown_like(rng, 300)
    data = before + long_line + after
    ends = ends_of(chunk(data))
    assert len(before) in ends
    assert len(before) + len(long_line) in ends
    assert_line_cuts(data, chunk(data), TEXT.max_size)


# --------------------------------------------------------------------------- locality


def new_ids(old: bytes, new: bytes) -> int:
    before = set(chunk_ids(old))
    return sum(1 for cid in chunk_ids(new) if cid not in before)


@pytest.fixture(scope="module")
def big_markdown() -> bytes:
    return markdown_like(random.Random(42), 27_500)  # about 1 MB


def test_editing_one_line_changes_at_most_two_chunks(big_markdown: bytes) -> None:
    lines = big_markdown.split(b"\n")
    rng = random.Random(7)
    for _ in range(60):
        i = int(rng.random() * (len(lines) - 1))
        edited = list(lines)
        edited[i] = lines[i][: len(lines[i]) // 2] + b"EDIT" + lines[i][len(lines[i]) // 2 + 2 :]
        assert new_ids(big_markdown, b"\n".join(edited)) <= 2, f"line {i}"


def test_inserting_or_deleting_one_line_changes_at_most_two_chunks(big_markdown: bytes) -> None:
    lines = big_markdown.split(b"\n")
    rng = random.Random(8)
    for _ in range(30):
        i = int(rng.random() * (len(lines) - 1))
        inserted = lines[:i] + [b"a new line of about the usual length, typed in"] + lines[i:]
        assert new_ids(big_markdown, b"\n".join(inserted)) <= 2, f"insert at {i}"
        deleted = lines[:i] + lines[i + 1 :]
        assert new_ids(big_markdown, b"\n".join(deleted)) <= 2, f"delete {i}"
    assert new_ids(big_markdown, b"# New title\n" + big_markdown) <= 2
    assert new_ids(big_markdown, big_markdown + b"one more line\n") <= 2


def test_binary_overwrite_is_local() -> None:
    data = kat_binary()
    mid = len(data) // 2
    edited = data[:mid] + bytes(4096) + data[mid + 4096 :]
    assert new_ids(data, edited) <= 3
    assert new_ids(data, b"x" + data) <= 2


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("min_size", "avg_size", "max_size"),
    [(32, 256, 1024), (64, 300, 1024), (64, 256, 512), (512, 256, 1024), (64, 2048, 1024)],
)
def test_bad_parameters_are_refused(min_size: int, avg_size: int, max_size: int) -> None:
    with pytest.raises(ValueError):
        ChunkParams(min_size, avg_size, max_size)
