"""Folded folder moves (PROTOCOL §4.16), pure: the server's check of a move's
entries (``server.folds.fold_of``) against what the commit rules really write
(``plan_commit`` on an in-memory namespace), and the client's unfolding
(``protocol.folding.unfold``) of them from the state before the move."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linesync.core.ids import chunk_id, pack_ids
from linesync.protocol import folding
from linesync.protocol.schemas import CommitOp, Content, Kind
from linesync.server.folds import fold_of
from linesync.server.model import Row
from tests.support.memview import MemView

CHUNK = chunk_id(b"one chunk")
SIZES = {CHUNK: 9}
Node = tuple[Kind, int, str | None]


def _node(r: Row) -> Node:
    return (r.kind, r.size, r.target)


def _op(path: str, kind: Kind) -> CommitOp:
    if kind is Kind.FILE:
        return CommitOp(path=path, kind=kind, size=9, content=Content(ids=pack_ids([CHUNK])))
    if kind is Kind.SYMLINK:
        return CommitOp(path=path, kind=kind, target="../x")
    return CommitOp(path=path, kind=kind)


def _build(tree: list[tuple[str, Kind]]) -> MemView:
    """A namespace holding ``src`` and ``other``, and ``tree`` below ``src``
    (folders made first); a few things deleted again, so tombstones lie there."""
    view = MemView(SIZES)
    view.commit([_op("src", Kind.DIRECTORY), _op("other", Kind.DIRECTORY)])
    for path, kind in tree:
        parts = path.split("/")
        for i in range(2, len(parts)):
            folder = "/".join(parts[:i])
            if view.current(folder) is None:
                view.commit([_op(folder, Kind.DIRECTORY)])
        if view.current(path) is None:
            view.commit([_op(path, kind)])
    gone = view.current("src/gone")
    if gone is not None and gone.live:
        view.commit([CommitOp(path="src/gone", kind=Kind.TOMBSTONE, base_jid=gone.jid)])
    return view


def _move(view: MemView, also: bool) -> tuple[Row, list[Row]]:
    """Move ``src`` to ``other/dst`` (with ``also``, a file written in the same
    batch after it); the move's entry and every entry after it."""
    src = view.current("src")
    assert src is not None
    ops = [CommitOp(path="other/dst", kind=Kind.DIRECTORY, move_from="src", move_base=src.jid)]
    if also:
        ops.append(_op("other/after.md", Kind.FILE))
    first = view.head + 1
    plan = view.commit(ops)
    assert plan.results[0].status == "ok", plan.results
    return view.entries[first], [view.entries[j] for j in range(first + 1, view.head + 1)]


def _held(view: MemView) -> tuple[int, list[tuple[str, int, Node]]]:
    """What a client whose view is the namespace's holds: the source folder's
    JID, and every live thing below it, in path order."""
    src = view.current("src")
    assert src is not None
    below = view.live_under("src", None)
    return src.jid, [(r.path, r.jid, _node(r)) for r in below]


NAMES = st.sampled_from(["a", "b", "b c", "é", "z", "Ω", "a0", "gone"])
KINDS = st.sampled_from([Kind.FILE, Kind.FILE, Kind.DIRECTORY, Kind.SYMLINK])
TREES = st.lists(
    st.tuples(st.lists(NAMES, min_size=1, max_size=3).map(lambda p: "src/" + "/".join(p)), KINDS),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(tree=TREES, also=st.booleans())
def test_a_folded_move_unfolds_to_the_entries_the_server_wrote(
    tree: list[tuple[str, Kind]], also: bool
) -> None:
    view = _build(tree)
    src_jid, held = _held(view)
    move, after = _move(view, also)
    f = fold_of(move, after)
    assert f is not None
    n = len(held)
    assert f.implied == 2 * n + 1 and f.end == move.jid + 2 * n + 1
    got = folding.unfold(move.jid, "src", "other/dst", f.implied, f.digest, src_jid, held)
    assert got is not None
    wrote = after[: 2 * n + 1]
    assert [(i.jid, i.path, i.node, i.moved_from) for i in got] == [
        (r.jid, r.path, _node(r) if r.live else None, r.moved_from) for r in wrote
    ]
    if also:  # the batch's next op is not part of the move
        assert after[-1].path == "other/after.md" and after[-1].jid == f.end + 1


@settings(max_examples=100, deadline=None)
@given(tree=TREES.filter(lambda t: len(t) > 0), pick=st.integers(0, 100), how=st.integers(0, 3))
def test_a_view_that_differs_from_what_was_moved_does_not_unfold(
    tree: list[tuple[str, Kind]], pick: int, how: int
) -> None:
    view = _build(tree)
    src_jid, held = _held(view)
    move, after = _move(view, False)
    f = fold_of(move, after)
    assert f is not None
    if not held:
        held_wrong = [("src/extra", 1, (Kind.FILE, 1, None))]
        assert (
            folding.unfold(move.jid, "src", "other/dst", f.implied, f.digest, src_jid, held_wrong)
            is None
        )
        return
    k = pick % len(held)
    path, jid, node = held[k]
    wrong = list(held)
    src = src_jid
    if how == 0:  # an older version of one thing
        wrong[k] = (path, jid - 1, node)
    elif how == 1:  # one thing missing
        del wrong[k]
    elif how == 2:  # one thing too many
        wrong.insert(k, (path + "~", jid, node))
    else:  # the source folder itself at another version
        src = src_jid + 1
    assert folding.unfold(move.jid, "src", "other/dst", f.implied, f.digest, src, wrong) is None


def test_rows_that_are_not_a_moves_own_do_not_fold() -> None:
    view = _build([("src/a", Kind.FILE), ("src/b", Kind.FILE), ("src/d/c", Kind.FILE)])
    move, after = _move(view, True)
    assert fold_of(move, after) is not None
    n = 4  # a, b, d, d/c
    spoiled: dict[str, list[Row]] = {
        "the last tombstone missing": after[: 2 * n],
        "a tombstone out of order": [*after[:n], after[n + 1], after[n], *after[n + 2 :]],
        "a carried entry at another path": [replace(after[0], path="other/dst/zz"), *after[1:]],
        "a gap in the JIDs": [*after[:2], *(replace(r, jid=r.jid + 1) for r in after[2:])],
        "the source folder written over": [*after[: 2 * n], replace(after[2 * n], path="src2")],
        "a live entry where a tombstone goes": [
            *after[:n],
            replace(after[n], kind=Kind.FILE),
            *after[n + 1 :],
        ],
    }
    for why, rows in spoiled.items():
        assert fold_of(move, rows) is None, why
    # Not a folder move at all.
    assert fold_of(replace(move, moved_from=None), after) is None
    assert fold_of(replace(move, kind=Kind.FILE), after) is None


@pytest.mark.parametrize(
    ("moved", "other"),
    [
        ([("a", 5)], [("a", 6)]),
        ([("a", 5), ("b", 6)], [("b", 6), ("a", 5)]),
        ([("a\x00b", 5)], [("a", 5), ("b", 5)]),
        ([], [("", 0)]),
    ],
)
def test_digests_tell_apart_what_was_moved(
    moved: list[tuple[str, int]], other: list[tuple[str, int]]
) -> None:
    assert folding.digest(7, moved) != folding.digest(7, other)
    assert folding.digest(7, moved) != folding.digest(8, moved)
    assert len(folding.digest(7, moved)) == 16
