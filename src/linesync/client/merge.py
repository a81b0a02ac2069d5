"""Three-way line merge of a text file against its common base.

``merge3(base, ours, theirs)`` combines two edits of one text file the way
``diff3`` / ``git merge-file`` does, without conflict markers: it returns the
merged bytes when the two edits do not overlap, and ``None`` when they do (the
caller then keeps a conflict copy, which never loses data).

Lines keep their ``\\n`` (so ``\\r\\n`` lines are lines too); the last line
may lack one. Each side is diffed against the base into *hunks*: a base range
``[start, end)`` replaced by some lines (an insertion is an empty range).
Hunks from the two sides conflict when they overlap *or touch*, that is when
no unchanged base line separates them, as in ``git merge-file``: two edits of
the same line, an edit and a delete of it, two insertions at the same place,
an insertion at the edge of the other side's edit, and also edits of two
adjacent lines. Identical hunks on both sides apply once.

Among repeated lines a hunk has several equivalent places (deleting one of
three equal lines); the diffs of the two sides may pick different ones. So
each hunk is first slid as far up as it goes (the same change on both sides
becomes the same hunk), and the whole range it could occupy must stay clear
of the other side's hunks. Without this, both sides deleting "one of three
blank lines" could merge into deleting two of them.

The diff is a patience-style diff: common prefix and suffix first, then lines
that occur exactly once on both sides as anchors, recursively, with
``difflib.SequenceMatcher`` for the small gaps that remain. Its cost grows
with the size of the changed regions, not the size of the file; a large
changed region without anchors is taken as one replaced block (a bigger hunk
only makes a conflict more likely, never a wrong merge).

Pure: no I/O.
"""

from __future__ import annotations

import difflib
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass

from linesync.core.chunking import is_text

__all__ = ["Hunk", "is_mergeable_text", "merge3", "split_lines"]

# A gap with more line pairs than this and no unique anchor is not diffed by
# SequenceMatcher (quadratic on repeated lines); it becomes one hunk.
_MAX_QUADRATIC_WORK = 4_000_000


def is_mergeable_text(data: bytes) -> bool:
    """True if ``data`` can be merged line by line: valid UTF-8, no NUL byte."""
    return is_text(data)


def split_lines(data: bytes) -> list[bytes]:
    """The lines of ``data``, each keeping its ``\\n``; the last may lack one."""
    if not data:
        return []
    parts = data.split(b"\n")
    last = parts.pop()
    lines = [part + b"\n" for part in parts]
    if last:
        lines.append(last)
    return lines


@dataclass(frozen=True, slots=True)
class Hunk:
    """Base lines ``[start, end)`` replaced by ``lines`` (insertion if empty range)."""

    start: int
    end: int
    lines: tuple[bytes, ...]


def merge3(base: bytes, ours: bytes, theirs: bytes) -> bytes | None:
    """Merge two edits of ``base``; ``None`` when they conflict.

    Identities first: equal sides give that side; a side equal to the base
    gives the other side (for any bytes). Otherwise all three must be
    mergeable text, else the result is a conflict.
    """
    if ours == theirs:
        return ours
    if ours == base:
        return theirs
    if theirs == base:
        return ours
    if not (is_mergeable_text(base) and is_mergeable_text(ours) and is_mergeable_text(theirs)):
        return None
    base_lines = split_lines(base)
    ours_hunks = diff_hunks(base_lines, split_lines(ours))
    theirs_hunks = diff_hunks(base_lines, split_lines(theirs))
    merged = _apply_both(base_lines, ours_hunks, theirs_hunks)
    if merged is None:
        return None
    # A line without its newline can only be the last one; anything else
    # would glue two lines together.
    for line in merged[:-1]:
        if not line.endswith(b"\n"):
            return None
    return b"".join(merged)


def diff_hunks(base: list[bytes], side: list[bytes]) -> list[Hunk]:
    """The hunks that turn ``base`` into ``side``, in base order, never touching."""
    hunks: list[Hunk] = []
    i = j = 0
    for bi, sj, size in _matching_blocks(base, side):
        if i < bi or j < sj:
            hunks.append(Hunk(i, bi, tuple(side[j:sj])))
        i, j = bi + size, sj + size
    if i < len(base) or j < len(side):
        hunks.append(Hunk(i, len(base), tuple(side[j:])))
    return hunks


def _slide(base: list[bytes], hunks: list[Hunk]) -> list[tuple[Hunk, int, int]]:
    """Each hunk in canonical form (slid up), with the base zone it could occupy.

    Among repeated lines a hunk has equivalent placements: deleting one of
    three equal lines, or inserting a line equal to its neighbour. Sliding
    every hunk as far up as it goes makes the same change on both sides the
    same hunk, and the zone ``[low, high]`` (from the topmost start to the
    bottommost end) is what the other side must stay clear of. A hunk never
    slides past a neighbouring hunk of its own side.
    """
    out: list[tuple[Hunk, int, int]] = []
    for k, hunk in enumerate(hunks):
        floor = hunks[k - 1].end if k else 0
        ceiling = hunks[k + 1].start if k + 1 < len(hunks) else len(base)
        s, e, rep = hunk.start, hunk.end, hunk.lines
        r = len(rep)
        # Down: the side reads rep + base[e:], the base reads base[s:]; the
        # hunk moves down by one while their next lines agree.
        down = 0
        while e + down < ceiling:
            side_line = rep[down] if down < r else base[e + down - r]
            if base[s + down] != side_line:
                break
            down += 1
        # Up: the side reads base[:s] + rep, the base reads base[:e], from the end.
        up = 0
        while s - up > floor:
            side_line = rep[r - 1 - up] if up < r else base[s - 1 - (up - r)]
            if base[e - 1 - up] != side_line:
                break
            up += 1
        if up:
            lines = (tuple(base[s - up : s]) + rep)[:r]
            hunk = Hunk(s - up, e - up, lines)
        out.append((hunk, s - up, e + down))
    return out


def _apply_both(base: list[bytes], ours: list[Hunk], theirs: list[Hunk]) -> list[bytes] | None:
    """Apply both sides' hunks, or None if any of them overlap or touch.

    Hunks are grouped into clusters whose zones overlap or touch (no
    unchanged base line between them). A cluster from one side applies as
    is; a cluster with hunks from both sides is a conflict unless both sides
    made exactly the same hunks there, which then apply once.
    """
    tagged = sorted(
        [(low, high, 0, hunk) for hunk, low, high in _slide(base, ours)]
        + [(low, high, 1, hunk) for hunk, low, high in _slide(base, theirs)],
        key=lambda item: (item[0], item[1], item[2]),
    )
    out: list[bytes] = []
    pos = 0  # base lines before pos are already in out
    k = 0
    while k < len(tagged):
        cluster = [tagged[k]]
        reach = tagged[k][1]
        k += 1
        while k < len(tagged) and tagged[k][0] <= reach:
            cluster.append(tagged[k])
            reach = max(reach, tagged[k][1])
            k += 1
        sides = [[hunk for _, _, side, hunk in cluster if side == which] for which in (0, 1)]
        if sides[0] and sides[1]:
            if sides[0] != sides[1]:
                return None
            hunks = sides[0]
        else:
            hunks = sides[0] or sides[1]
        for hunk in hunks:
            if hunk.start < pos:  # cannot happen with disjoint hunks; be safe
                return None
            out.extend(base[pos : hunk.start])
            out.extend(hunk.lines)
            pos = hunk.end
    out.extend(base[pos:])
    return out


def _matching_blocks(a: list[bytes], b: list[bytes]) -> list[tuple[int, int, int]]:
    """Blocks ``(i, j, n)`` with ``a[i:i+n] == b[j:j+n]``, increasing in i and j."""
    blocks: list[tuple[int, int, int]] = []
    stack = [(0, len(a), 0, len(b))]
    while stack:
        alo, ahi, blo, bhi = stack.pop()
        # Common prefix.
        start_a, start_b = alo, blo
        while alo < ahi and blo < bhi and a[alo] == b[blo]:
            alo += 1
            blo += 1
        if alo > start_a:
            blocks.append((start_a, start_b, alo - start_a))
        # Common suffix.
        end_a = ahi
        while alo < ahi and blo < bhi and a[ahi - 1] == b[bhi - 1]:
            ahi -= 1
            bhi -= 1
        if ahi < end_a:
            blocks.append((ahi, bhi, end_a - ahi))
        if alo == ahi or blo == bhi:
            continue
        anchors = _unique_anchors(a, b, alo, ahi, blo, bhi)
        if anchors:
            prev_a, prev_b = alo, blo
            for ai, bj in anchors:
                stack.append((prev_a, ai, prev_b, bj))
                blocks.append((ai, bj, 1))
                prev_a, prev_b = ai + 1, bj + 1
            stack.append((prev_a, ahi, prev_b, bhi))
        elif (ahi - alo) * (bhi - blo) <= _MAX_QUADRATIC_WORK:
            matcher = difflib.SequenceMatcher(None, a[alo:ahi], b[blo:bhi], autojunk=False)
            for ia, jb, size in matcher.get_matching_blocks():
                if size:
                    blocks.append((alo + ia, blo + jb, size))
        # else: no anchor in a huge gap: leave it as one replaced block.
    blocks.sort()
    return blocks


def _unique_anchors(
    a: list[bytes], b: list[bytes], alo: int, ahi: int, blo: int, bhi: int
) -> list[tuple[int, int]]:
    """Lines unique in both ranges, longest run in the same order (patience diff)."""
    count_a = Counter(a[alo:ahi])
    count_b = Counter(b[blo:bhi])
    pos_b: dict[bytes, int] = {}
    for j in range(blo, bhi):
        line = b[j]
        if count_b[line] == 1 and count_a.get(line) == 1:
            pos_b[line] = j
    if not pos_b:
        return []
    pairs = [(i, pos_b[a[i]]) for i in range(alo, ahi) if a[i] in pos_b]
    # Longest increasing subsequence of the b positions (patience sorting).
    tails: list[int] = []  # b position ending the best run of each length
    tail_idx: list[int] = []  # index in pairs of that end
    back: list[int] = [-1] * len(pairs)
    for k, (_, bj) in enumerate(pairs):
        n = bisect_left(tails, bj)
        if n == len(tails):
            tails.append(bj)
            tail_idx.append(k)
        else:
            tails[n] = bj
            tail_idx[n] = k
        back[k] = tail_idx[n - 1] if n else -1
    run: list[tuple[int, int]] = []
    k = tail_idx[-1]
    while k >= 0:
        run.append(pairs[k])
        k = back[k]
    run.reverse()
    return run
