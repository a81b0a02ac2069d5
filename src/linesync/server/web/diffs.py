"""Line diffs between two versions of a text file, bounded: pure, no I/O."""

from __future__ import annotations

import bisect
import difflib
from dataclasses import dataclass
from typing import Literal

# Each side is diffed only up to so many bytes and lines; past them the page
# says so instead (difflib's work grows faster than the input).
MAX_DIFF_BYTES = 2**20
MAX_DIFF_LINES = 20_000
CONTEXT = 3


@dataclass(frozen=True, slots=True)
class Line:
    kind: str  # "add", "del", "same", "hunk"
    text: str
    old: int | None = None  # line numbers, 1-based
    new: int | None = None


@dataclass(frozen=True, slots=True)
class Diff:
    lines: list[Line]
    refused: str | None = None  # why there is no diff

    @property
    def added(self) -> int:
        return sum(1 for line in self.lines if line.kind == "add")

    @property
    def removed(self) -> int:
        return sum(1 for line in self.lines if line.kind == "del")


def as_text(data: bytes) -> str | None:
    """``data`` as text (UTF-8 without NUL), else None."""
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def too_big(old_size: int, new_size: int) -> str | None:
    """Why two versions of these sizes are not diffed, or None."""
    if max(old_size, new_size) > MAX_DIFF_BYTES:
        return f"one of the versions is larger than {MAX_DIFF_BYTES // 2**20} MiB: not diffed"
    return None


def line_diff(old: bytes, new: bytes) -> Diff:
    """A unified line diff of two versions (context lines around each change)."""
    refused = too_big(len(old), len(new))
    if refused:
        return Diff([], refused)
    a, b = as_text(old), as_text(new)
    if a is None or b is None:
        return Diff([], "binary content: not diffed")
    la, lb = a.splitlines(), b.splitlines()
    if max(len(la), len(lb)) > MAX_DIFF_LINES:
        return Diff([], f"more than {MAX_DIFF_LINES} lines: not diffed")
    out: list[Line] = []
    for group in _Grouper(opcodes(la, lb)).get_grouped_opcodes(CONTEXT):
        first, last = group[0], group[-1]
        out.append(
            Line(
                "hunk",
                f"@@ -{first[1] + 1},{last[2] - first[1]} +{first[3] + 1},{last[4] - first[3]} @@",
            )  # fmt: skip
        )
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out.extend(Line("same", la[i], i + 1, j1 + i - i1 + 1) for i in range(i1, i2))
                continue
            if tag in ("replace", "delete"):
                out.extend(Line("del", la[i], i + 1, None) for i in range(i1, i2))
            if tag in ("replace", "insert"):
                out.extend(Line("add", lb[j], None, j + 1) for j in range(j1, j2))
    return Diff(out)


# -- a bounded diff ---------------------------------------------------------------
#
# difflib alone takes minutes on some inputs of a few thousand lines (lines
# that repeat with a period just under its junk threshold). Here, as in
# "patience diff": lines unique in both sides are matched first (their longest
# increasing run), and the gaps between them are diffed the same way; only
# small gaps go to difflib, and a gap left when the work budget is spent is
# shown as replaced whole. Always a correct diff; minimal on ordinary text.

Tag = Literal["replace", "delete", "insert", "equal"]
Op = tuple[Tag, int, int, int, int]
SMALL_GAP = 100  # lines a side that difflib may take
WORK = 2_000_000  # line visits and difflib cells one diff may cost


class _Grouper(difflib.SequenceMatcher):  # type: ignore[type-arg]
    """difflib's grouping (context around changes) over opcodes made here."""

    def __init__(self, ops: list[Op]) -> None:
        super().__init__(None, [], [])
        self._ops = ops

    def get_opcodes(self) -> list[Op]:
        return self._ops


def opcodes(a: list[str], b: list[str]) -> list[Op]:
    """difflib-style opcodes turning ``a`` into ``b``, at bounded cost."""
    ops: list[Op] = []
    budget = [WORK]
    _diff(a, b, 0, len(a), 0, len(b), ops, budget)
    return _merge(ops)


def _diff(
    a: list[str], b: list[str], i1: int, i2: int, j1: int, j2: int, ops: list[Op],
    budget: list[int],
) -> None:  # fmt: skip
    while i1 < i2 and j1 < j2 and a[i1] == b[j1]:  # common head
        ops.append(("equal", i1, i1 + 1, j1, j1 + 1))
        i1, j1 = i1 + 1, j1 + 1
    tail: list[Op] = []
    while i1 < i2 and j1 < j2 and a[i2 - 1] == b[j2 - 1]:  # common tail
        tail.append(("equal", i2 - 1, i2, j2 - 1, j2))
        i2, j2 = i2 - 1, j2 - 1
    n, m = i2 - i1, j2 - j1
    budget[0] -= n + m
    if n == 0 or m == 0:
        if n or m:
            ops.append(("delete" if n else "insert", i1, i2, j1, j2))
    elif n <= SMALL_GAP and m <= SMALL_GAP and budget[0] >= n * m:
        budget[0] -= n * m
        sm = difflib.SequenceMatcher(None, a[i1:i2], b[j1:j2], autojunk=False)
        for tag, x1, x2, y1, y2 in sm.get_opcodes():
            ops.append((tag, i1 + x1, i1 + x2, j1 + y1, j1 + y2))
    else:
        anchors = _anchors(a, b, i1, i2, j1, j2) if budget[0] > 0 else []
        if not anchors:
            ops.append(("replace", i1, i2, j1, j2))
        else:
            pi, pj = i1, j1
            for ai, bj in anchors:
                _diff(a, b, pi, ai, pj, bj, ops, budget)
                ops.append(("equal", ai, ai + 1, bj, bj + 1))
                pi, pj = ai + 1, bj + 1
            _diff(a, b, pi, i2, pj, j2, ops, budget)
    ops.extend(reversed(tail))


def _anchors(
    a: list[str], b: list[str], i1: int, i2: int, j1: int, j2: int
) -> list[tuple[int, int]]:
    """Lines that occur once in each side, matched in order (the longest run of
    them whose positions increase on both sides)."""
    in_a: dict[str, int] = {}  # line -> its index, -1 when it repeats
    for i in range(i1, i2):
        in_a[a[i]] = -1 if a[i] in in_a else i
    in_b: dict[str, int] = {}
    for j in range(j1, j2):
        if in_a.get(b[j], -1) >= 0:
            in_b[b[j]] = -1 if b[j] in in_b else j
    pairs = sorted((in_a[line], j) for line, j in in_b.items() if j >= 0)
    return _longest_increasing(pairs)


def _longest_increasing(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest subsequence of ``pairs`` (sorted by their first) whose seconds
    increase (patience sorting, O(n log n))."""
    tops: list[int] = []  # the second of the last pair of each pile
    top_idx: list[int] = []  # which pair that is
    back: list[int] = []  # for each pair, the pair before it in its run
    for k, (_, j) in enumerate(pairs):
        pile = bisect.bisect_left(tops, j)
        back.append(top_idx[pile - 1] if pile else -1)
        if pile == len(tops):
            tops.append(j)
            top_idx.append(k)
        else:
            tops[pile], top_idx[pile] = j, k
    out: list[tuple[int, int]] = []
    k = top_idx[-1] if top_idx else -1
    while k >= 0:
        out.append(pairs[k])
        k = back[k]
    return out[::-1]


def _merge(ops: list[Op]) -> list[Op]:
    """Adjacent ops of the same kind as one (difflib's grouping needs that)."""
    out: list[Op] = []
    for op in ops:
        if op[1] == op[2] and op[3] == op[4]:
            continue
        if out and out[-1][0] == op[0] and out[-1][2] == op[1] and out[-1][4] == op[3]:
            prev = out[-1]
            out[-1] = (prev[0], prev[1], op[2], prev[3], op[4])
        else:
            out.append(op)
    return out
