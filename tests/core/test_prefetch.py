"""The prefetching planner plans exactly what ``plan_commit`` plans on the
whole namespace, and its prefetch foresees every read (no miss)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linesync.protocol.errors import LinesyncError
from linesync.protocol.schemas import CommitOp, Kind
from linesync.server.commit import Limits, Plan, plan_commit
from linesync.server.prefetch import Loads, Miss, Snapshot, plan_prefetched
from tests.core.test_commit_rules import HELD, SIZE, C, _Gen, edit, file, mkdir, move, namespace
from tests.support.memview import MemReader, MemView


def both(view: MemView, ops: Sequence[CommitOp]) -> tuple[Plan | str, Plan | str, Snapshot | None]:
    """The plan (or the refusal's code) on the whole view and through the prefetch."""
    try:
        want: Plan | str = plan_commit(view, ops, "dev", view.head, Limits())
    except LinesyncError as exc:
        want = exc.code.value
    try:
        got, snap = asyncio.run(plan_prefetched(MemReader(view), ops, "dev", view.head, Limits()))
        return want, got, snap
    except LinesyncError as exc:
        return want, exc.code.value, None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_prefetched_plans_equal_plans_on_the_whole_namespace(data: st.DataObject) -> None:
    view = MemView(HELD)
    gen = _Gen(view, data)
    for _ in range(data.draw(st.integers(1, 8))):
        ops = [op for op in (gen.op() for _ in range(data.draw(st.integers(1, 4)))) if op]
        want, got, snap = both(view, ops)
        assert got == want
        if snap is not None:
            assert not snap.missed, f"the prefetch did not foresee {snap.missed} for {ops}"
        if isinstance(want, Plan):
            view.apply(want)


def tree() -> MemView:
    return namespace(
        [mkdir("d"), mkdir("d/e"), file("d/x", C[:2]), file("d/e/y", C[2:3]), mkdir("z")],
    )


def test_a_folder_move_is_planned_from_three_fetch_rounds() -> None:
    view = tree()
    reader = MemReader(view)
    ops = [move("d", "z/d", view.rows["d"].jid, kind=Kind.DIRECTORY)]
    plan, snap = asyncio.run(plan_prefetched(reader, ops, "dev", view.head, Limits()))
    assert plan.writes == plan_commit(view, ops, "dev", view.head, Limits()).writes
    assert not snap.missed
    # round 1: paths, folds, chunks; round 2: subtrees and blocklists; round 3:
    # the moved children's destinations and blocklists
    assert reader.calls <= 9


def test_an_edit_by_delta_fetches_its_removed_chunks_up_front() -> None:
    view = namespace([file("f", C[:4])])
    row = view.rows["f"]
    new = [C[0], C[5], C[2], C[3]]
    op = edit("f", row.jid, [(1, 1, [C[5]])], sum(SIZE[c] for c in new))
    view.hold({C[5]: SIZE[C[5]]})
    want, got, snap = both(view, [op])
    assert got == want and isinstance(got, Plan) and got.results[0].status == "ok"
    assert snap is not None and not snap.missed
    assert C[1] in snap.known_chunks  # removed: its size is part of the check


def test_an_unforeseen_read_is_fetched_and_the_plan_runs_again() -> None:
    view = tree()
    snap = Snapshot()
    try:
        snap.current("d/x")
    except Miss as miss:
        assert miss.loads == Loads(paths={"d/x"})
    asyncio.run(snap.load(MemReader(view), Loads(paths={"d/x"})))
    assert snap.current("d/x") == view.rows["d/x"]
    # a subtree fetched whole answers for every folder inside it
    asyncio.run(snap.load(MemReader(view), Loads(subtrees={"d": None})))
    assert snap.live_under("d/e", None) == [view.rows["d/e/y"]]
    # one fetched with a limit answers only up to it
    asyncio.run(snap.load(MemReader(view), Loads(subtrees={"z": 1})))
    assert snap.live_under("z", 1) == []
    try:
        snap.live_under("d/e/y", 1)
    except Miss:
        raise AssertionError("a file inside a complete subtree has no children") from None


def test_an_edit_on_an_older_version_is_a_conflict_not_a_lost_update() -> None:
    """The base version is read by JID; it must not pass for the path's current
    entry (the server would accept the stale edit over the newer one)."""
    view = namespace([file("f", C[:1])], [file("f", C[1:2], base=1)])
    stale = file("f", C[2:3], base=1)
    want, got, snap = both(view, [stale])
    assert got == want and isinstance(got, Plan)
    (r,) = got.results
    assert (r.status, r.reason) == ("conflict", "changed")
    assert r.current is not None and r.current.jid == 2
