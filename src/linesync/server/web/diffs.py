"""Line diffs between two versions of a text file, bounded: pure, no I/O."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

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
    matcher = difflib.SequenceMatcher(None, la, lb, autojunk=False)
    for group in matcher.get_grouped_opcodes(CONTEXT):
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
