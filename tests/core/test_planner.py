"""The planner (``linesync.client.planner``), CanopyCheck style.

Random scenarios: a base tree, changed independently on disk and on the server,
synced by the in-memory model of ``tests/support/planner_sim.py`` (which
executes each op as ``Engine.execute`` does) round after round until the plan
is empty. Every scenario runs twice: ops in the planner's order, and shuffled
(the engine keeps its phases; within a phase it follows the order it is given).

Properties:

- termination: the plan is empty within ``MAX_ROUNDS`` rounds;
- convergence: then disk == server (paths, kinds, content, exec bit, file
  times), and the synced and remote views agree with both;
- no version lost: every file version either side created or edited is held
  by some file at the end (at its path, a move destination, a merge or a
  conflict copy); only a version one side deleted and the other did not edit
  may vanish (an edit beats a concurrent delete);
- tree validity: after every round, on disk and on the server, every live
  path's parent is a live folder;
- one-sided changes: changes made on one side only are applied to the other
  without conflicts, and a remote-only change never commits anything;
- moves: pure renames and folder moves travel as moves (MoveRemote, MoveLocal),
  never as an upload or download of content;
- read-only: no op writes to the server, and nothing is lost on disk;
- the mass-delete guard trips exactly when the local side deleted >= 10 files
  and more than half of them.

Then ``decide()`` case by case.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from linesync.client import planner as pl
from linesync.client.model import Local, Node, PathState, Stat, Version
from linesync.protocol.schemas import Kind
from tests.support.planner_sim import (
    DIR,
    MAX_ROUNDS,
    Crash,
    Fresh,
    MassDelete,
    Outcome,
    Sim,
    Tree,
    lost_versions,
    protected_versions,
    tree_errors,
    tree_nodes,
    view,
)

NAMES = ("a", "b", "c.txt")
MAX_DEPTH = 3
ALL_KINDS = (
    "create",
    "copy",
    "mkdir",
    "append",
    "rewrite",
    "same_edit",
    "delete",
    "move",
    "move",
    "file_to_dir",
    "dir_to_file",
    "exec",
    "touch",
)
MOVE_KINDS = ("move", "move", "mkdir")
SETTINGS = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- scenarios ---------------------------------------------------------------------


@dataclass
class Scenario:
    base: Tree
    local: Tree
    remote: Tree
    late: bool = False  # the remote commits land during the first round, after its plan

    def __repr__(self) -> str:
        return (
            f"Scenario(base={self.base!r}, local={self.local.log}, "
            f"remote={self.remote.log}, late={self.late})"
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # how Hypothesis prints it
        p.text(repr(self))

    def sim(self, **kw: bool) -> Sim:
        events = () if self.late else self.remote.events
        return Sim.scenario(self.base, self.local, events, **kw)

    def run(self, sim: Sim, rng: random.Random | None = None) -> Outcome:
        errors: list[str] = []

        def valid(s: Sim) -> None:
            errors.extend(tree_errors(s.server.live(), "server"))
            errors.extend(tree_errors(s.disk.nodes(), "disk"))

        try:
            out = sim.run(rng, late=self.remote.events if self.late else None, after_round=valid)
        except Crash as exc:
            raise AssertionError(f"the engine would crash: {exc}\n{sim.describe()}") from exc
        if currently_in_test_context():
            note(out.describe())
        assert not errors, "invalid tree:\n" + "\n".join(errors) + "\n" + out.describe()
        return out


def _pick(draw: st.DrawFn, options: list[str]) -> str | None:
    return draw(st.sampled_from(options)) if options else None


def _perturb(draw: st.DrawFn, tree: Tree, kind: str, avoid: frozenset[str] = frozenset()) -> None:
    files, dirs = tree.files(), tree.dirs()
    free = [p for p in tree.free_paths(NAMES, MAX_DEPTH) if p not in avoid]
    if kind == "mkdir" and (p := _pick(draw, free)):
        tree.mkdir(p)
    elif kind == "create" and (p := _pick(draw, free)):
        tree.create(p)
    elif kind == "copy" and files and (p := _pick(draw, free)):
        origin = draw(st.sampled_from(files))
        tree.create(p, _lines(tree, origin))
    elif kind in ("append", "rewrite", "same_edit", "exec", "touch") and (p := _pick(draw, files)):
        {
            "append": tree.append,
            "rewrite": tree.rewrite,
            "same_edit": tree.same_edit,
            "exec": tree.toggle_exec,
            "touch": tree.touch,
        }[kind](p)
    elif kind == "delete" and (p := _pick(draw, files + dirs)):
        tree.delete(p)
    elif kind == "move" and (src := _pick(draw, files + dirs)):
        h = tree.height(src)
        dsts = [d for d in free if not d.startswith(src + "/") and d.count("/") + h <= MAX_DEPTH]
        if dst := _pick(draw, dsts):
            tree.move(src, dst)
    elif kind == "file_to_dir" and (p := _pick(draw, files)):
        tree.file_to_dir(p)
    elif kind == "dir_to_file" and (p := _pick(draw, dirs)):
        tree.dir_to_file(p)


def _lines(tree: Tree, path: str) -> frozenset[bytes]:
    chash = tree.items[path].node.chash or b""
    return frozenset(x for x in chash.split(b"\n") if x)


@st.composite
def base_trees(draw: st.DrawFn, fresh: Fresh, max_items: int = 10) -> Tree:
    """Each name at each level is absent, a file or a folder (folders likelier
    near the top), up to ``max_items`` entries."""
    tree = Tree(fresh)
    kinds = {1: ("none", "file", "dir"), 2: ("none", "file", "dir", "none"), 3: ("none", "file")}

    def fill(prefix: str, depth: int) -> None:
        for name in NAMES:
            if len(tree.items) >= max_items:
                return
            path = f"{prefix}/{name}" if prefix else name
            kind = draw(st.sampled_from(kinds[depth]))
            if kind == "file":
                tree.create(path)
            elif kind == "dir":
                tree.mkdir(path)
                fill(path, depth + 1)

    fill("", 1)
    return tree


@st.composite
def changed(
    draw: st.DrawFn,
    base: Tree,
    kinds: tuple[str, ...] = ALL_KINDS,
    max_ops: int = 4,
    fresh_paths: bool = False,
) -> Tree:
    tree = base.copy()
    avoid = frozenset(base.items) if fresh_paths else frozenset()
    for _ in range(draw(st.integers(0, max_ops))):
        _perturb(draw, tree, draw(st.sampled_from(kinds)), avoid)
        if fresh_paths:
            avoid |= frozenset(tree.items)
    return tree


@st.composite
def scenarios(
    draw: st.DrawFn,
    local_kinds: tuple[str, ...] | None = ALL_KINDS,
    remote_kinds: tuple[str, ...] | None = ALL_KINDS,
    fresh_paths: bool = False,
    late: bool = True,
    max_ops: int = 4,
) -> Scenario:
    """None for a side's kinds: that side does not change."""
    fresh = Fresh()
    base = draw(base_trees(fresh))
    local = (
        draw(changed(base, local_kinds, max_ops, fresh_paths=fresh_paths))
        if local_kinds
        else base.copy()
    )
    remote = (
        draw(changed(base, remote_kinds, max_ops, fresh_paths=fresh_paths))
        if remote_kinds
        else base.copy()
    )
    return Scenario(base, local, remote, late and draw(st.booleans()))


def _check_converged(sc: Scenario, sim: Sim, out: Outcome) -> None:
    assert out.converged, f"no empty plan after {MAX_ROUNDS} rounds:\n{out.describe()}"
    server = sim.server.live()
    assert view(sim.disk.nodes()) == view(server), f"disk != server\n{out.describe()}"
    synced = {p: v.node for p, v in sim.synced.items() if v.node is not None}
    remote = {p: v.node for p, v in sim.remote.items() if v.node is not None}
    assert view(synced) == view(server), f"synced view != server\n{out.describe()}"
    assert view(remote) == view(server), f"remote view != server\n{out.describe()}"
    for p, v in sim.synced.items():
        row = sim.server.rows.get(p)
        if v.node is not None:
            assert row is not None and row.jid == v.jid, f"{p}: synced JID is not the server's"
    lost = lost_versions(protected_versions(sc.base, sc.local, sc.remote), server)
    assert not lost, "versions lost:\n" + "\n".join(lost) + "\n" + out.describe()


# -- the properties ----------------------------------------------------------------


@SETTINGS
@given(sc=scenarios(), seed=st.integers(0, 2**32 - 1))
def test_sync_converges_without_losing_a_version(sc: Scenario, seed: int) -> None:
    for rng in (None, random.Random(seed)):
        note(f"order: {'planner' if rng is None else f'shuffled (seed {seed})'}")
        sim = sc.sim()
        out = sc.run(sim, rng)
        _check_converged(sc, sim, out)


@SETTINGS
@given(sc=scenarios(), seed=st.integers(0, 2**32 - 1))
def test_overlapping_merges_become_conflict_copies(sc: Scenario, seed: int) -> None:
    """The same, with every merge overlapping (the engine's fallback path)."""
    sim = sc.sim(merges=False)
    out = sc.run(sim, random.Random(seed))
    _check_converged(sc, sim, out)


@SETTINGS
@given(sc=scenarios(remote_kinds=None, late=False))
def test_local_changes_alone_go_up_without_conflicts(sc: Scenario) -> None:
    sim = sc.sim()
    out = sc.run(sim)
    _check_converged(sc, sim, out)
    bad = [op for op in out.ops() if isinstance(op, (pl.Conflict, pl.Merge))]
    assert not bad, f"a conflict with no concurrent change: {bad}\n{out.describe()}"
    assert view(sim.server.live()) == view(tree_nodes(sc.local)), out.describe()


@SETTINGS
@given(sc=scenarios(local_kinds=None, late=False))
def test_remote_changes_alone_come_down_and_commit_nothing(sc: Scenario) -> None:
    sim = sc.sim()
    head = sim.server.head
    out = sc.run(sim)
    _check_converged(sc, sim, out)
    bad = [
        op
        for op in out.ops()
        if not isinstance(op, (pl.Download, pl.DeleteLocal, pl.MoveLocal, pl.Record))
    ]
    assert not bad, f"remote-only changes made these ops: {bad}\n{out.describe()}"
    assert sim.server.head == head, "the client committed something"
    assert view(sim.disk.nodes()) == view(tree_nodes(sc.remote)), out.describe()


def _content_travels(op: pl.Op) -> bool:
    if isinstance(op, pl.Upload):
        return op.node.kind is not Kind.DIRECTORY
    if isinstance(op, (pl.Download, pl.Merge)):
        return op.remote.node is not None and op.remote.node.kind is not Kind.DIRECTORY
    return isinstance(op, pl.Conflict)


@SETTINGS
@given(
    sc=scenarios(local_kinds=MOVE_KINDS, remote_kinds=None, fresh_paths=True, late=False, max_ops=2)
)
def test_local_moves_are_committed_as_moves(sc: Scenario) -> None:
    sim = sc.sim()
    out = sc.run(sim)
    _check_converged(sc, sim, out)
    sent = [op for op in out.ops() if _content_travels(op)]
    assert not sent, f"pure moves {sc.local.log} sent content: {sent}\n{out.describe()}"
    assert view(sim.server.live()) == view(tree_nodes(sc.local)), out.describe()


@SETTINGS
@given(sc=scenarios(local_kinds=MOVE_KINDS, remote_kinds=None, fresh_paths=True, late=False))
def test_long_chains_of_local_moves_converge_without_loss(sc: Scenario) -> None:
    """Up to four chained moves (folders into moved folders, files out of them):
    the result is always right and nothing is lost, but the planner does not yet
    recognise every such chain as moves, so a file may be uploaded again (known
    limitation: the strict no-content property above holds for two moves)."""
    sim = sc.sim()
    out = sc.run(sim)
    _check_converged(sc, sim, out)
    assert view(sim.server.live()) == view(tree_nodes(sc.local)), out.describe()


@SETTINGS
@given(sc=scenarios(local_kinds=None, remote_kinds=MOVE_KINDS, fresh_paths=True, late=False))
def test_remote_moves_are_renamed_locally(sc: Scenario) -> None:
    sim = sc.sim()
    out = sc.run(sim)
    _check_converged(sc, sim, out)
    sent = [op for op in out.ops() if _content_travels(op)]
    assert not sent, f"pure moves {sc.remote.log} fetched content: {sent}\n{out.describe()}"
    assert view(sim.disk.nodes()) == view(tree_nodes(sc.remote)), out.describe()


@SETTINGS
@given(sc=scenarios(), seed=st.integers(0, 2**32 - 1))
def test_read_only_never_writes_to_the_server_and_keeps_local_changes(
    sc: Scenario, seed: int
) -> None:
    sim = sc.sim(read_only=True)
    out = sc.run(sim, random.Random(seed))
    assert out.converged, f"no empty plan after {MAX_ROUNDS} rounds:\n{out.describe()}"
    writes = [op for op in out.ops() if isinstance(op, (pl.Upload, pl.DeleteRemote, pl.MoveRemote))]
    assert not writes, f"read-only plan writes: {writes}"
    others_only = Sim.scenario(sc.base, sc.base, sc.remote.events).server
    assert sim.server.rows == others_only.rows, (
        "the server holds more than the other device's commits"
    )
    lost = lost_versions(protected_versions(sc.base, sc.local, sc.remote), sim.disk.nodes())
    assert not lost, "versions lost on disk:\n" + "\n".join(lost) + "\n" + out.describe()


# -- the mass-delete guard -----------------------------------------------------------


def _flat_base(fresh: Fresh, n: int) -> Tree:
    """``n`` files spread over three folders."""
    tree = Tree(fresh)
    for d in ("p", "q", "r"):
        tree.mkdir(d)
    for i in range(n):
        tree.create(f"{'pqr'[i % 3]}/f{i}")
    return tree


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 24), data=st.data())
def test_mass_delete_guard_trips_when_most_files_go(n: int, data: st.DataObject) -> None:
    base = _flat_base(Fresh(), n)
    local = base.copy()
    gone = data.draw(st.sets(st.sampled_from(base.files())), label="deleted")
    for p in sorted(gone):
        local.delete(p)
    # Deleting a whole folder counts each file in it.
    for d in ("p", "q", "r"):
        if data.draw(st.booleans(), label=f"rm -r {d}") and d in local.items:
            gone |= {p for p in local.below(d)}
            local.delete(d)
    sim = Sim.scenario(base, local)
    plan = pl.plan(sim.states())
    k = len(gone)
    assert plan.remote_deletes == k
    assert plan.synced_files == n
    assert plan.mass_delete() == (k >= 10 and k > n / 2)
    sim = Sim.scenario(base, local, allow_mass_delete=False)
    if plan.mass_delete():
        with pytest.raises(MassDelete):
            sim.run()
    else:
        assert sim.run().converged


def test_mass_delete_guard_ignores_a_moved_folder() -> None:
    fresh = Fresh()
    base = Tree(fresh)
    base.mkdir("p")
    for i in range(20):
        base.create(f"p/f{i}")
    local = base.copy()
    local.move("p", "q")
    plan = pl.plan(Sim.scenario(base, local).states())
    assert not plan.mass_delete()
    assert [type(op) for op in plan.ops] == [pl.MoveRemote]


def test_a_folder_move_that_would_take_a_path_past_the_limit_is_not_paired() -> None:
    """A longer folder name can take a deep synced path past 4096 bytes: the
    server refuses such a folder move whole (paths.rebase, found by the commit
    fuzzer), so the planner must not pair the vanished folder with the new one
    (before, ``rebase`` raised out of the planner). Here the user moved
    ``p``'s files into a new folder and deleted ``p``."""

    def scenario(name: str) -> list[pl.Op]:
        fresh = Fresh()
        base = Tree(fresh)
        base.mkdir("p")
        for i in range(40):
            base.create(f"p/a{i}")
        for i in range(1, 17):
            base.mkdir("p/" + "/".join(["d" * 250] * i))  # 4,015 bytes under p/ at last
        base.create("p/" + "/".join(["d" * 250] * 16) + "/f")
        local = base.copy()
        local.mkdir(name)
        for i in range(40):
            local.move(f"p/a{i}", f"{name}/a{i}")
        local.delete("p")  # the deep file could not come along
        return pl.plan(Sim.scenario(base, local).states()).ops

    short = scenario("q")  # a folder move, as far as the planner can tell
    assert [op for op in short if isinstance(op, pl.MoveRemote) and op.src == "p"]
    long_name = scenario("q" * 250)  # p/... as q...q/... would be 4,270 bytes
    assert not [op for op in long_name if isinstance(op, pl.MoveRemote) and op.src == "p"]


# -- decide(), case by case -------------------------------------------------------------

F1 = Node(Kind.FILE, 3, 100, chash=b"one")
F1_TOUCHED = Node(Kind.FILE, 3, 200, chash=b"one")
F2 = Node(Kind.FILE, 3, 300, chash=b"two")
F3 = Node(Kind.FILE, 5, 400, chash=b"three")


def loc(node: Node) -> Local:
    return Local(node, Stat(node.size, node.mtime_ns, 0, 1))


def ps(remote: Version | None, synced: Version | None, local: Node | None) -> PathState:
    return PathState("f", remote, synced, loc(local) if local else None)


def test_decide_nothing_changed() -> None:
    assert pl.decide(ps(Version(5, F1), Version(5, F1), F1)) is None
    assert pl.decide(ps(None, None, None)) is None


def test_decide_only_local_changed() -> None:
    assert pl.decide(ps(Version(5, F1), Version(5, F1), F2)) == pl.Upload("f", F2, 5)
    assert pl.decide(ps(None, None, F2)) == pl.Upload("f", F2, 0)
    assert pl.decide(ps(Version(5, F1), Version(5, F1), None)) == pl.DeleteRemote("f", 5)
    assert pl.decide(ps(Version(5, F1), Version(5, F1), F1_TOUCHED)) == pl.Upload(
        "f", F1_TOUCHED, 5
    )


def test_decide_only_remote_changed() -> None:
    s = ps(Version(7, F2), Version(5, F1), F1)
    assert pl.decide(s) == pl.Download("f", Version(7, F2), s.local)
    s = ps(Version(7, None), Version(5, F1), F1)
    assert pl.decide(s) == pl.DeleteLocal("f", loc(F1), Version(7, None))
    s = ps(Version(7, F2), None, None)
    assert pl.decide(s) == pl.Download("f", Version(7, F2), None)
    # A tombstone we never saw live: nothing to do.
    assert pl.decide(ps(Version(7, None), None, None)) is None


def test_decide_both_changed_alike() -> None:
    assert pl.decide(ps(Version(7, None), Version(5, F1), None)) == pl.Record("f", Version(7, None))
    assert pl.decide(ps(Version(7, F2), Version(5, F1), F2)) == pl.Record("f", Version(7, F2))
    assert pl.decide(ps(Version(7, DIR), None, DIR)) == pl.Record("f", Version(7, DIR))
    # Same bytes, other time: adopt the remote time.
    s = ps(Version(7, F1_TOUCHED), Version(5, F1), replace_mtime(F1, 150))
    assert pl.decide(s) == pl.Download("f", Version(7, F1_TOUCHED), s.local)


def replace_mtime(node: Node, mtime: int) -> Node:
    return Node(node.kind, node.size, mtime, node.exec, node.target, node.chash)


def test_decide_edit_beats_delete_both_ways() -> None:
    # Deleted here, edited there: download it again.
    assert pl.decide(ps(Version(7, F2), Version(5, F1), None)) == pl.Download(
        "f", Version(7, F2), None
    )
    # Edited here, deleted there: upload it again (on the tombstone).
    assert pl.decide(ps(Version(7, None), Version(5, F1), F2)) == pl.Upload("f", F2, 7)


def test_decide_both_edited_merges_text() -> None:
    s = ps(Version(7, F2), Version(5, F1), F3)
    assert pl.decide(s) == pl.Merge("f", Version(7, F2), Version(5, F1), loc(F3))


def test_decide_both_created_differently_is_a_conflict() -> None:
    s = ps(Version(7, F2), None, F3)
    assert pl.decide(s) == pl.Conflict("f", Version(7, F2), loc(F3))
    # A file here, a folder there.
    s = ps(Version(7, DIR), None, F3)
    assert pl.decide(s) == pl.Conflict("f", Version(7, DIR), loc(F3))


def test_decide_both_made_a_folder() -> None:
    assert pl.decide(ps(Version(7, DIR), None, DIR)) == pl.Record("f", Version(7, DIR))


def _plan(states: list[PathState]) -> dict[str, pl.Op]:
    out = pl.plan({s.path: s for s in states})
    return {getattr(op, "path", getattr(op, "dst", "")): op for op in out.ops}


def test_plan_keeps_a_folder_deleted_there_that_gets_a_child_here() -> None:
    d = loc(DIR)
    ops = _plan(
        [
            PathState("d", Version(9, None), Version(1, DIR), d),
            PathState("d/old", Version(10, None), Version(2, F1), loc(F1)),
            PathState("d/new", None, None, loc(F2)),
        ]
    )
    assert ops["d"] == pl.Upload("d", DIR, 9)
    assert ops["d/new"] == pl.Upload("d/new", F2, 0)
    assert ops["d/old"] == pl.DeleteLocal("d/old", loc(F1), Version(10, None))


def test_plan_keeps_a_folder_deleted_here_that_gets_a_child_there() -> None:
    ops = _plan(
        [
            PathState("d", Version(1, DIR), Version(1, DIR), None),
            PathState("d/new", Version(9, F2), None, None),
        ]
    )
    assert ops["d"] == pl.Download("d", Version(1, DIR), None)
    assert ops["d/new"] == pl.Download("d/new", Version(9, F2), None)


def test_plan_sees_a_local_rename_as_a_move() -> None:
    ops = _plan(
        [
            PathState("x", Version(3, F1), Version(3, F1), None),
            PathState("y", None, None, loc(F1)),
        ]
    )
    assert ops == {"y": pl.MoveRemote("x", "y", F1, 3, 0)}


def test_plan_sees_a_remote_rename_as_a_move() -> None:
    moved = Version(8, F1, "x")
    ops = _plan(
        [
            PathState("x", Version(9, None), Version(3, F1), loc(F1)),
            PathState("y", moved, None, None),
        ]
    )
    assert ops == {"y": pl.MoveLocal("x", "y", moved, loc(F1), Version(9, None))}


# -- known cases ----------------------------------------------------------------------


def _scenario(
    base_ops: Sequence[tuple[str, ...]],
    local_ops: Sequence[tuple[str, ...]],
    remote_ops: Sequence[tuple[str, ...]],
) -> Scenario:
    """A scenario from Tree method calls: ("move", "d", "e"), ("append", "e/y")..."""
    fresh = Fresh()
    base = Tree(fresh)
    for op in base_ops:
        getattr(base, op[0])(*op[1:])
    local, remote = base.copy(), base.copy()
    for tree, ops in ((local, local_ops), (remote, remote_ops)):
        for op in ops:
            getattr(tree, op[0])(*op[1:])
    return Scenario(base, local, remote)


def _sync(sc: Scenario) -> tuple[Sim, Outcome]:
    sim = sc.sim()
    out = sc.run(sim)
    _check_converged(sc, sim, out)
    return sim, out


KIND_CHANGES = {
    "edit here, file->folder there": ([("append", "x")], [("file_to_dir", "x")]),
    "file->folder here, edit there": ([("file_to_dir", "x")], [("append", "x")]),
    "edit in a folder here, folder->file there": (
        [("append", "d/y")],
        [("dir_to_file", "d")],
    ),
    "folder->file here, new child there": ([("dir_to_file", "d")], [("create", "d/z")]),
    "new child here, folder->file there": ([("create", "d/z")], [("dir_to_file", "d")]),
}


@pytest.mark.parametrize("case", sorted(KIND_CHANGES))
def test_a_file_and_a_folder_at_one_path_both_survive(case: str) -> None:
    local, remote = KIND_CHANGES[case]
    sc = _scenario([("create", "x"), ("mkdir", "d"), ("create", "d/y")], local, remote)
    sim, out = _sync(sc)
    assert [p for p in sim.server.live() if "(conflict from " in p], out.describe()


@pytest.mark.parametrize("change", ["append", "touch", "toggle_exec"])
def test_a_folder_moved_here_takes_its_changed_children_along(change: str) -> None:
    """Rename folder d to e, then change e/y, between two syncs: no concurrent
    change, so no conflict copy, and the server ends with the changed e/y."""
    sc = _scenario([("mkdir", "d"), ("create", "d/y")], [("move", "d", "e"), (change, "e/y")], [])
    sim, out = _sync(sc)
    assert not [op for op in out.ops() if isinstance(op, (pl.Conflict, pl.Merge))], out.describe()
    assert view(sim.server.live()) == view(tree_nodes(sc.local)), out.describe()


def test_a_file_moved_here_into_a_moved_folder_is_moved_not_uploaded() -> None:
    sc = _scenario(
        [("mkdir", "d"), ("create", "d/y"), ("create", "x")],
        [("move", "d", "e"), ("move", "x", "e/x")],
        [],
    )
    sim, out = _sync(sc)
    assert not [op for op in out.ops() if _content_travels(op)], out.describe()
    assert view(sim.server.live()) == view(tree_nodes(sc.local))


@pytest.mark.parametrize("change", ["touch", "toggle_exec"])
def test_a_file_changed_and_renamed_there_is_renamed_here(change: str) -> None:
    """Remote: touch (or chmod) x, then rename it to y. Here: rename x to y and
    take the new time (or mode); commit nothing, fetch no content."""
    sc = _scenario([("create", "x")], [], [(change, "x"), ("move", "x", "y")])
    sim, out = _sync(sc)
    assert any(isinstance(op, pl.MoveLocal) for op in out.ops()), out.describe()
    assert not [op for op in out.ops() if isinstance(op, pl.Download) and op.local is None]
    assert not [op for op in out.ops() if isinstance(op, pl.Upload)], out.describe()
    assert view(sim.disk.nodes()) == view(tree_nodes(sc.remote)), out.describe()


def test_a_file_renamed_twice_there_is_renamed_here() -> None:
    """Remote: x -> y, synced, then y -> z. The journal says z came from y, a
    path this client never saw; it holds x unchanged, so it renames x to z."""
    sc = _scenario([("create", "x")], [], [("move", "x", "y"), ("move", "y", "z")])
    sim, out = _sync(sc)
    assert not [op for op in out.ops() if _content_travels(op)], out.describe()
    assert view(sim.disk.nodes()) == view(tree_nodes(sc.remote))
