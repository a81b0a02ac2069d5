"""Which folder moves a list page can fold (PROTOCOL §4.16): the journal rows
after a folder move's entry, checked against the order a move writes them in
(``protocol.folding``). Pure: the route reads the rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from linesync.core import paths
from linesync.protocol import folding
from linesync.protocol.schemas import Kind
from linesync.server.model import Row


@dataclass(frozen=True, slots=True)
class Fold:
    end: int  # the JID of the move's last entry (the source's tombstone)
    implied: int
    digest: str | None  # (a file's move needs none: it implies only its source's tombstone)


def is_folder_move(row: Row) -> bool:
    return row.kind is Kind.DIRECTORY and row.moved_from is not None


def fold_of(move: Row, after: Sequence[Row]) -> Fold | None:
    """The fold of a folder move's entry, from the journal rows right after it
    (JID order): None unless they are the entries the move wrote."""
    src, dst = move.moved_from, move.path
    if not is_folder_move(move) or src is None:
        return None
    n = 0  # the things moved: live entries at the new paths, contiguous
    for r in after:
        if not (
            r.jid == move.jid + 1 + n
            and r.live
            and r.moved_from is not None
            and paths.is_under(r.moved_from, src)
            and r.path == dst + r.moved_from[len(src) :]
        ):
            break
        n += 1
    tail = after[n : 2 * n + 1]
    if len(tail) != n + 1:
        return None
    olds = [r.moved_from for r in after[:n]]
    for k, r in enumerate(tail):
        want = olds[n - 1 - k] if k < n else src
        if r.jid != move.jid + 1 + n + k or r.live or r.path != want:
            return None
    # A tombstone's base is the entry it ended: the thing's JID before the move.
    moved = [
        (str(o)[len(src) + 1 :], r.base_jid) for o, r in zip(olds, reversed(tail[:n]), strict=True)
    ]
    return Fold(tail[-1].jid, folding.implied_count(n), folding.digest(tail[-1].base_jid, moved))
