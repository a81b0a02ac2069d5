"""Blocklists and blocklist deltas.

A file version's content is its blocklist: the ordered list of its chunk ids.
A version is stored and sent as a *delta* against a base version whenever it
has one, so a one-line edit never costs a whole blocklist.

A delta is a list of edits ``(start, delete, insert)`` against the base, sorted
by ``start`` and non-overlapping: replace ``base[start:start + delete]`` with
``insert``. Indices refer to the base list, not to the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import NamedTuple

import blake3

from linesync.core.ids import ChunkId


class Edit(NamedTuple):
    start: int
    delete: int
    insert: tuple[ChunkId, ...]


Delta = list[Edit]


class DeltaError(ValueError):
    """A delta that does not apply to its base."""


def diff(base: Sequence[ChunkId], new: Sequence[ChunkId]) -> Delta:
    """Edits that turn ``base`` into ``new``; small when few chunks changed."""
    n, m = len(base), len(new)
    prefix = 0
    while prefix < min(n, m) and base[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(n, m) - prefix and base[n - 1 - suffix] == new[m - 1 - suffix]:
        suffix += 1
    old_mid = base[prefix : n - suffix]
    new_mid = new[prefix : m - suffix]
    if not old_mid and not new_mid:
        return []
    if not old_mid or not new_mid or len(old_mid) * len(new_mid) <= 64:
        return [Edit(prefix, len(old_mid), tuple(new_mid))]
    edits: Delta = []
    matcher = SequenceMatcher(None, list(old_mid), list(new_mid), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            edits.append(Edit(prefix + i1, i2 - i1, tuple(new_mid[j1:j2])))
    return edits


def apply(base: Sequence[ChunkId], delta: Sequence[Edit]) -> list[ChunkId]:
    """Apply ``delta`` to ``base``; DeltaError if it does not fit."""
    out: list[ChunkId] = []
    pos = 0
    for edit in delta:
        if edit.start < pos or edit.delete < 0 or edit.start + edit.delete > len(base):
            raise DeltaError("delta edits overlap, are unsorted or run past the base")
        out.extend(base[pos : edit.start])
        out.extend(edit.insert)
        pos = edit.start + edit.delete
    out.extend(base[pos:])
    return out


def inserted(delta: Sequence[Edit]) -> list[ChunkId]:
    return [cid for edit in delta for cid in edit.insert]


def removed(base: Sequence[ChunkId], delta: Sequence[Edit]) -> list[ChunkId]:
    return [cid for edit in delta for cid in base[edit.start : edit.start + edit.delete]]


def delta_size(delta: Sequence[Edit]) -> int:
    """Number of ids a delta carries (its cost on the wire, roughly)."""
    return sum(len(edit.insert) + 1 for edit in delta)


def content_hash(ids: Sequence[ChunkId]) -> bytes:
    """Identity of a file version's content: BLAKE3 over its blocklist."""
    return blake3.blake3(b"".join(ids)).digest()


_EDIT_HEAD = 12  # start, delete, count: three big-endian u32


def encode_delta(delta: Sequence[Edit]) -> bytes:
    """Compact binary form of a delta, for storage."""
    out = bytearray()
    for edit in delta:
        out += edit.start.to_bytes(4, "big") + edit.delete.to_bytes(4, "big")
        out += len(edit.insert).to_bytes(4, "big") + b"".join(edit.insert)
    return bytes(out)


def decode_delta(raw: bytes) -> Delta:
    edits: Delta = []
    pos = 0
    while pos < len(raw):
        if pos + _EDIT_HEAD > len(raw):
            raise DeltaError("stored delta is truncated")
        start = int.from_bytes(raw[pos : pos + 4], "big")
        delete = int.from_bytes(raw[pos + 4 : pos + 8], "big")
        count = int.from_bytes(raw[pos + 8 : pos + 12], "big")
        pos += _EDIT_HEAD
        end = pos + 32 * count
        if end > len(raw):
            raise DeltaError("stored delta is truncated")
        edits.append(Edit(start, delete, tuple(raw[i : i + 32] for i in range(pos, end, 32))))
        pos = end
    return edits
