"""Three-way line merge: table tests and properties."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linesync.client.merge import diff_hunks, is_mergeable_text, merge3, split_lines


def L(*lines: str) -> bytes:
    """Join lines, each ended by a newline."""
    return "".join(line + "\n" for line in lines).encode()


BASE = L("a", "b", "c", "d", "e", "f", "g")


# ---------------------------------------------------------------- identities


@pytest.mark.parametrize(
    ("base", "ours", "theirs", "expected"),
    [
        (BASE, BASE, BASE, BASE),
        (BASE, L("x"), L("x"), L("x")),  # same result on both sides
        (BASE, BASE, L("t"), L("t")),  # ours unchanged -> theirs
        (BASE, L("o"), BASE, L("o")),  # theirs unchanged -> ours
        (b"", b"", b"new\n", b"new\n"),
        (BASE, b"", BASE, b""),  # emptied on one side only
        (b"\x00bin", b"\x00bin", b"\xffother", b"\xffother"),  # identities hold for binary
    ],
)
def test_identities(base: bytes, ours: bytes, theirs: bytes, expected: bytes) -> None:
    assert merge3(base, ours, theirs) == expected


# ---------------------------------------------------------------- merges


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        # top and bottom
        (
            L("A", "b", "c", "d", "e", "f", "g"),
            L("a", "b", "c", "d", "e", "f", "G"),
            L("A", "b", "c", "d", "e", "f", "G"),
        ),
        # top and middle
        (
            L("A", "b", "c", "d", "e", "f", "g"),
            L("a", "b", "c", "D", "e", "f", "g"),
            L("A", "b", "c", "D", "e", "f", "g"),
        ),
        # middle and bottom, with an insertion and a deletion
        (
            L("a", "b", "c", "d", "new", "e", "f", "g"),
            L("a", "b", "c", "d", "e", "f"),
            L("a", "b", "c", "d", "new", "e", "f"),
        ),
        # insertion at the top and append at the end
        (
            L("top", "a", "b", "c", "d", "e", "f", "g"),
            L("a", "b", "c", "d", "e", "f", "g", "end"),
            L("top", "a", "b", "c", "d", "e", "f", "g", "end"),
        ),
        # both make the same change, plus one each elsewhere: the shared change once
        (
            L("A", "b", "c", "D", "e", "f", "g"),
            L("a", "b", "c", "D", "e", "f", "G"),
            L("A", "b", "c", "D", "e", "f", "G"),
        ),
        # both delete the same line, one also edits elsewhere
        (
            L("a", "b", "d", "e", "f", "g"),
            L("a", "b", "d", "e", "f", "G"),
            L("a", "b", "d", "e", "f", "G"),
        ),
        # both insert the same line at the same place
        (
            L("a", "b", "c", "same", "d", "e", "f", "g"),
            L("A", "b", "c", "same", "d", "e", "f", "g"),
            L("A", "b", "c", "same", "d", "e", "f", "g"),
        ),
    ],
)
def test_disjoint_edits_merge(ours: bytes, theirs: bytes, expected: bytes) -> None:
    assert merge3(BASE, ours, theirs) == expected
    assert merge3(BASE, theirs, ours) == expected


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        # same line, different edits
        (L("a", "b", "c", "X", "e", "f", "g"), L("a", "b", "c", "Y", "e", "f", "g")),
        # edit vs delete of the same line
        (L("a", "b", "c", "X", "e", "f", "g"), L("a", "b", "c", "e", "f", "g")),
        # both append different lines at the end (same base position)
        (L("a", "b", "c", "d", "e", "f", "g", "o"), L("a", "b", "c", "d", "e", "f", "g", "t")),
        # both insert different lines at the same position in the middle
        (L("a", "b", "o", "c", "d", "e", "f", "g"), L("a", "b", "t", "c", "d", "e", "f", "g")),
        # overlapping ranges
        (L("a", "X", "Y", "d", "e", "f", "g"), L("a", "b", "Z", "W", "e", "f", "g")),
        # an insertion at the edge of the other side's replaced range
        (L("a", "b", "new", "c", "d", "e", "f", "g"), L("a", "b", "C", "d", "e", "f", "g")),
        (L("a", "b", "c", "new", "d", "e", "f", "g"), L("a", "b", "C", "d", "e", "f", "g")),
        # an insertion inside the other side's deleted range
        (L("a", "b", "c", "new", "d", "e", "f", "g"), L("a", "b", "e", "f", "g")),
        # adjacent lines: no unchanged line between the edits (as git)
        (
            L("a", "B", "c", "d", "e", "f", "g"),
            L("a", "b", "C", "d", "e", "f", "g"),
        ),
        # one side emptied the file, the other edited it
        (b"", L("a", "b", "C", "d", "e", "f", "g")),
    ],
)
def test_overlapping_edits_conflict(ours: bytes, theirs: bytes) -> None:
    assert merge3(BASE, ours, theirs) is None
    assert merge3(BASE, theirs, ours) is None


def test_no_trailing_newline() -> None:
    base = b"a\nb\nc\nd"
    assert merge3(base, b"A\nb\nc\nd", b"a\nb\nc\nD") == b"A\nb\nc\nD"
    # One side adds the missing newline, the other edits the top.
    assert merge3(base, b"a\nb\nc\nd\n", b"A\nb\nc\nd") == b"A\nb\nc\nd\n"
    # One side appends (which changes the last line), the other changes the last line too.
    assert merge3(base, b"a\nb\nc\nd\ne", b"a\nb\nc\nD") is None


def test_empty_base() -> None:
    assert merge3(b"", b"o\n", b"t\n") is None  # both create, different content
    assert merge3(b"", b"same\n", b"same\n") == b"same\n"
    assert merge3(b"", b"o\n", b"") == b"o\n"


def test_crlf_lines() -> None:
    base = b"a\r\nb\r\nc\r\nd\r\ne\r\n"
    ours = b"A\r\nb\r\nc\r\nd\r\ne\r\n"
    theirs = b"a\r\nb\r\nc\r\nd\r\nE\r\n"
    assert merge3(base, ours, theirs) == b"A\r\nb\r\nc\r\nd\r\nE\r\n"
    # A line ending change is a change of that line.
    assert merge3(base, b"a\nb\r\nc\r\nd\r\ne\r\n", ours) is None


def test_lone_cr_is_not_a_line_break() -> None:
    assert split_lines(b"a\rb\nc") == [b"a\rb\n", b"c"]


def test_non_text_conflicts() -> None:
    base = L("a", "b", "c", "d")
    assert merge3(base, L("A", "b", "c", "d") + b"\x00", L("a", "b", "c", "D")) is None
    assert merge3(base + b"\xff", L("A", "b", "c", "d"), L("a", "b", "c", "D")) is None


def test_unicode_lines() -> None:
    base = L("crème", "brûlée", "🍮", "sucre")
    assert merge3(
        base, L("CRÈME", "brûlée", "🍮", "sucre"), L("crème", "brûlée", "🍮", "SUCRE")
    ) == (L("CRÈME", "brûlée", "🍮", "SUCRE"))


def test_is_mergeable_text() -> None:
    assert is_mergeable_text(b"")
    assert is_mergeable_text("héllo\n".encode())
    assert not is_mergeable_text(b"a\x00b")
    assert not is_mergeable_text(b"\xff\xfe")


def test_repeated_lines_are_aligned_by_their_neighbours() -> None:
    base = L("}", "x", "}", "y", "}", "z", "}")
    ours = L("}", "X", "}", "y", "}", "z", "}")
    theirs = L("}", "x", "}", "y", "}", "Z", "}")
    assert merge3(base, ours, theirs) == L("}", "X", "}", "y", "}", "Z", "}")


def test_same_change_among_repeated_lines_applies_once() -> None:
    # Both sides delete one of the two "b" lines; their diffs pick different ones.
    base = b"\na\nb\nb\nd\nd\nc\n"
    ours = b"Y\n\na\nb\nd\nd\nc\n"
    theirs = b"\na\nb\nd\nd\nc\nX\n"
    assert merge3(base, ours, theirs) == b"Y\n\na\nb\nd\nd\nc\nX\n"
    # Both delete one of three blank lines, each also editing far away.
    base = L("top", "x", "y", "", "", "", "z", "w", "bottom")
    ours = L("TOP", "x", "y", "", "", "z", "w", "bottom")
    theirs = L("top", "x", "y", "", "", "z", "w", "BOTTOM")
    assert merge3(base, ours, theirs) == L("TOP", "x", "y", "", "", "z", "w", "BOTTOM")


def test_change_next_to_repeated_lines_is_not_guessed() -> None:
    # Ours deletes one of the "b" lines (which one is ambiguous); theirs edits
    # the line just before the run: no unchanged line separates every reading.
    base = L("x", "b", "b", "b", "q", "r")
    ours = L("x", "b", "b", "q", "r")
    theirs = L("X", "b", "b", "b", "q", "r")
    assert merge3(base, ours, theirs) is None


# ---------------------------------------------------------------- performance


def _big_file(rng: random.Random, n_lines: int) -> list[bytes]:
    words = ["the", "salt", "pepper", "- item", "## Heading", "onion", "garlic", "stir", "bake"]
    return [
        (" ".join(rng.choice(words) for _ in range(rng.randint(0, 22))) + "\n").encode()
        for _ in range(n_lines)
    ]


def test_large_file_one_line_each_side_is_fast() -> None:
    rng = random.Random(7)
    lines = _big_file(rng, 64_085)
    base = b"".join(lines)
    assert len(base) > 3_500_000
    ours, theirs = list(lines), list(lines)
    ours[1_000] = b"ours\n"
    theirs[50_000] = b"theirs\n"
    start = time.perf_counter()
    merged = merge3(base, b"".join(ours), b"".join(theirs))
    elapsed = time.perf_counter() - start
    expected = list(lines)
    expected[1_000] = b"ours\n"
    expected[50_000] = b"theirs\n"
    assert merged == b"".join(expected)
    assert elapsed < 1.0, elapsed


def test_large_file_same_line_conflicts_fast() -> None:
    rng = random.Random(8)
    lines = _big_file(rng, 64_085)
    ours, theirs = list(lines), list(lines)
    ours[30_000] = b"ours\n"
    theirs[30_000] = b"theirs\n"
    start = time.perf_counter()
    assert merge3(b"".join(lines), b"".join(ours), b"".join(theirs)) is None
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------- properties


@st.composite
def disjoint_edits(draw: st.DrawFn) -> tuple[bytes, bytes, bytes, bytes]:
    """A base of unique lines, and ours/theirs editing regions kept apart.

    Every base line is unique and every new line is fresh, so the diff is
    unambiguous; each region is separated from the other side's regions by
    at least one unchanged line, so the edits cannot conflict.
    """
    n = draw(st.integers(min_value=0, max_value=30))
    base = [f"base {i}\n".encode() for i in range(n)]
    fresh = iter(range(10**6))
    # Regions: (start, end, side) over base positions, in order, with gaps.
    regions: list[tuple[int, int, str]] = []
    pos = 0
    last_side = ""
    while pos <= n:
        skip = draw(st.integers(min_value=0, max_value=4))
        start = pos + skip
        if start > n:
            break
        side = draw(st.sampled_from(["ours", "theirs", "both"]))
        if regions and side != last_side and start == regions[-1][1]:
            start += 1  # keep one unchanged line between the two sides' edits
            if start > n:
                break
        end = draw(st.integers(min_value=start, max_value=min(n, start + 3)))
        regions.append((start, end, side))
        last_side = side
        pos = end + 1  # hunks of one side stay apart too
    ours, theirs, expected = [], [], []
    cursor = 0
    for start, end, side in regions:
        ours += base[cursor:start]
        theirs += base[cursor:start]
        expected += base[cursor:start]
        count = draw(st.integers(min_value=0 if end > start else 1, max_value=3))
        new = [f"{side} {next(fresh)}\n".encode() for _ in range(count)]
        if side == "both":
            ours += new
            theirs += new
        elif side == "ours":
            ours += new
            theirs += base[start:end]
        else:
            ours += base[start:end]
            theirs += new
        expected += new
        cursor = end
    ours += base[cursor:]
    theirs += base[cursor:]
    expected += base[cursor:]
    # Without a final newline the last line is special; strip it only when
    # no region touches the end of the file.
    strip = draw(st.booleans()) and not any(end == n for _, end, _ in regions)

    def join(lines: list[bytes]) -> bytes:
        data = b"".join(lines)
        return data[:-1] if strip and data.endswith(b"\n") else data

    return join(base), join(ours), join(theirs), join(expected)


@settings(max_examples=400, deadline=None)
@given(disjoint_edits())
def test_disjoint_random_edits_merge_exactly(case: tuple[bytes, bytes, bytes, bytes]) -> None:
    base, ours, theirs, expected = case
    assert merge3(base, ours, theirs) == expected
    assert merge3(base, theirs, ours) == expected


small_text = st.lists(st.sampled_from(["a\n", "b\n", "c\n", "\n", "a", "b\r\n"]), max_size=12).map(
    lambda parts: "".join(parts).encode()
)


@settings(max_examples=400, deadline=None)
@given(small_text, small_text, small_text)
def test_merge_properties_on_repetitive_text(base: bytes, ours: bytes, theirs: bytes) -> None:
    result = merge3(base, ours, theirs)
    assert merge3(base, theirs, ours) == result  # symmetric
    if ours == base:
        assert result == theirs
    if theirs == base:
        assert result == ours
    if result is not None and ours != theirs:
        # A merged result with a line lacking its newline has it only at the end.
        assert all(line.endswith(b"\n") for line in split_lines(result)[:-1])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=64), st.binary(max_size=64))
def test_merge_never_raises(base: bytes, ours: bytes, theirs: bytes) -> None:
    result = merge3(base, ours, theirs)
    assert result is None or isinstance(result, bytes)
    if ours == base:
        assert result == theirs
    if theirs == base:
        assert result == ours


@settings(max_examples=300, deadline=None)
@given(small_text, small_text)
def test_hunks_rebuild_the_side(base: bytes, side: bytes) -> None:
    base_lines = split_lines(base)
    rebuilt: list[bytes] = []
    pos = 0
    for hunk in diff_hunks(base_lines, split_lines(side)):
        assert pos <= hunk.start <= hunk.end
        rebuilt += base_lines[pos : hunk.start]
        rebuilt += hunk.lines
        pos = hunk.end
    rebuilt += base_lines[pos:]
    assert b"".join(rebuilt) == side
