"""Selective sync in the planner (``plan(excluded=...)``), pure: tables, and
Hypothesis over random three-view states of a small tree, for the promises:

(a) no plan deletes (or moves away) on the server anything at or below an
    excluded folder, nor a folder above one that still holds something there,
    nor uploads anything there;
(b) nothing at or below an excluded folder is downloaded, merged or made a
    conflict, and what is removed here was unchanged since it was synced;
(c) everything else syncs as before: with nothing at or below the excluded
    folders the plan is the same, and the other paths' effects are the same as
    in a plan without the excluded paths at all.
"""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linesync.client import planner as pl
from linesync.client.model import Local, Node, PathState, Stat, Version
from linesync.core import paths
from linesync.protocol.schemas import Kind
from tests.core.test_planner import Scenario, scenarios
from tests.support.planner_sim import Sim, lost_versions, protected_versions, tree_nodes, view

DIRS = ("a", "big", "big/sub", "c")
FILES = ("a/x", "a/y", "big/p", "big/q", "big/sub/r", "c/z", "top.txt")
EXCLUDED = frozenset({"big"})
ST = Stat(1, 1, 1, 1)

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _file(c: int, mtime: int = 1) -> Node:
    return Node(Kind.FILE, 10 * c, mtime, chash=bytes([c]) * 4)


DIR = Node(Kind.DIRECTORY)


@st.composite
def views(draw: st.DrawFn, path: str) -> PathState:
    folder = path in DIRS
    node = st.just(DIR) if folder else st.builds(_file, st.integers(1, 3), st.integers(1, 2))
    synced_node = draw(st.one_of(st.none(), node))
    synced = None
    if synced_node is not None or draw(st.booleans()):
        synced = Version(draw(st.integers(1, 5)), synced_node)
    kind = draw(st.sampled_from(["same", "changed", "none"]))
    if kind == "same" and synced is not None:
        remote: Version | None = synced
    elif kind == "none":
        remote = None if synced is None else Version(synced.jid + 1, None)
    else:
        remote = Version(draw(st.integers(6, 9)), draw(st.one_of(st.none(), node)))
        moved = draw(st.sampled_from([None, *FILES]))
        if moved is not None and remote.node is not None and not folder:
            remote = Version(remote.jid, remote.node, moved)
    local_kind = draw(st.sampled_from(["same", "other", "none"]))
    if local_kind == "same" and synced_node is not None:
        local: Local | None = Local(synced_node, ST)
    elif local_kind == "none":
        local = None
    else:
        got = draw(st.one_of(st.none(), node))
        local = Local(got, ST) if got is not None else None
    return PathState(path, remote, synced, local)


@st.composite
def trees(draw: st.DrawFn) -> dict[str, PathState]:
    chosen = draw(st.sets(st.sampled_from(DIRS + FILES), min_size=1))
    out = {}
    for p in sorted(chosen):
        s = draw(views(p))
        if s.remote or s.synced or s.local:
            out[p] = s
    return out


def _under(path: str, excluded: frozenset[str] = EXCLUDED) -> bool:
    return pl.is_excluded(path, excluded)


def _holds_remote(states: dict[str, PathState], folder: str, excluded: frozenset[str]) -> bool:
    """Does the server hold something at or below an excluded folder under ``folder``?"""
    return any(
        s.remote_node is not None
        and _under(p, excluded)
        and (p == folder or paths.is_under(p, folder))
        for p, s in states.items()
    )


def check_promises(
    states: dict[str, PathState], plan: pl.Plan, excluded: frozenset[str] = EXCLUDED
) -> None:
    def _under(path: str) -> bool:
        return pl.is_excluded(path, excluded)

    for op in plan.ops:
        where = op.dst if isinstance(op, (pl.MoveLocal, pl.MoveRemote)) else op.path
        # (a) the server keeps what is left out
        if isinstance(op, pl.DeleteRemote):
            assert not _under(op.path), op
            assert not _holds_remote(states, op.path, excluded), op
        if isinstance(op, pl.MoveRemote):
            assert not _under(op.src) and not _under(op.dst), op
            assert not _holds_remote(states, op.src, excluded), op
        if isinstance(op, pl.Upload):
            assert not _under(op.path), op
        # (b) nothing left out comes here; only what is as synced goes
        if isinstance(op, (pl.Download, pl.Merge, pl.Conflict, pl.MoveLocal)):
            assert not _under(where), op
        if isinstance(op, pl.DeleteLocal) and _under(op.path):
            assert isinstance(op, pl.Exclude) and op.remote is None, op
            s = states[op.path]
            assert s.synced_node is not None and op.local.node.same(s.synced_node), op
        if isinstance(op, pl.MoveLocal) and _under(op.src):
            s = states[op.src]
            assert s.synced_node is not None and op.local.node.same(s.synced_node), op
        if isinstance(op, pl.Record) and _under(op.path):
            assert op.remote is None and states[op.path].local is None, op


@SETTINGS
@given(trees())
def test_promises_hold_for_any_views(states: dict[str, PathState]) -> None:
    check_promises(states, pl.plan(states, excluded=EXCLUDED))
    # Read-only folders too, and a folder left out deeper down.
    check_promises(states, pl.plan(states, excluded=EXCLUDED, read_only=True))
    for deep in (frozenset({"big/sub"}), frozenset({"big/sub", "a/x", "c"})):
        check_promises(states, pl.plan(states, excluded=deep), deep)


def _effects(plan: pl.Plan) -> dict[str, str]:
    """What each op does to each path, moves spelled out (a move and a delete
    plus a download end the same way for the paths they touch)."""
    out: dict[str, str] = {}
    for op in plan.ops:
        if isinstance(op, pl.MoveLocal):
            out[op.dst], out[op.src] = "get", "gone here"
        elif isinstance(op, pl.MoveRemote):
            out[op.dst], out[op.src] = "put", "gone there"
        elif isinstance(op, pl.Download):
            out[op.path] = "get"
        elif isinstance(op, pl.Upload):
            out[op.path] = "put"
        elif isinstance(op, pl.DeleteLocal):
            out[op.path] = "gone here"
        elif isinstance(op, pl.DeleteRemote):
            out[op.path] = "gone there"
        else:
            out[op.path] = type(op).__name__
    return out


@SETTINGS
@given(trees())
def test_everything_else_syncs_as_before(states: dict[str, PathState]) -> None:
    outside = {p: s for p, s in states.items() if not _under(p)}
    # Nothing left out here: the same plan.
    assert pl.plan(outside, excluded=EXCLUDED) == pl.plan(outside)
    # The rest: the same effects as if the left-out paths did not exist at all.
    # (A move from a left-out folder may stand for a download: the same effect.)
    with_ex = {p: e for p, e in _effects(pl.plan(states, excluded=EXCLUDED)).items()
               if not _under(p)}  # fmt: skip
    without = _effects(pl.plan(outside))
    assert with_ex == without


# -- tables ------------------------------------------------------------------------------------


def ps(path: str, remote: Version | None, synced: Version | None, local: Node | None) -> PathState:
    return PathState(path, remote, synced, Local(local, ST) if local else None)


def _ops(states: list[PathState], excluded: frozenset[str] = EXCLUDED) -> dict[str, pl.Op]:
    return {
        (op.dst if isinstance(op, pl.MoveLocal | pl.MoveRemote) else op.path): op
        for op in pl.plan({s.path: s for s in states}, excluded=excluded).ops
    }


F1, F2 = _file(1), _file(2)
V1 = Version(1, F1)
D = Version(3, DIR)


def test_table() -> None:
    cases: list[tuple[str, PathState, type[pl.Op] | None]] = [
        # On the server only: never downloaded.
        ("new there", ps("big/p", V1, None, None), None),
        ("changed there, gone here", ps("big/p", Version(2, F2), None, None), None),
        # Here as synced: removed here, forgotten as synced.
        ("in sync", ps("big/p", V1, V1, F1), pl.Exclude),
        ("in sync, changed there", ps("big/p", Version(2, F2), V1, F1), pl.Exclude),
        ("in sync, deleted there", ps("big/p", Version(2, None), V1, F1), pl.Exclude),
        # Deleted here: never deleted there, forgotten as synced.
        ("deleted here", ps("big/p", V1, V1, None), pl.Record),
        # Made or changed here: kept, not uploaded.
        ("edited here", ps("big/p", V1, V1, F2), None),
        ("touched here", ps("big/p", V1, V1, _file(1, mtime=2)), None),
        ("made here", ps("big/p", None, None, F1), None),
        ("edited both", ps("big/p", Version(2, F2), V1, _file(3)), None),
        # The folder itself.
        ("folder in sync", ps("big", D, D, DIR), pl.Exclude),
        ("folder deleted here", ps("big", D, D, None), pl.Record),
    ]
    for name, state, want in cases:
        got = _ops([state]).get(state.path)
        assert (type(got) if got else None) is want, (name, got)
        if isinstance(got, pl.Exclude | pl.Record):
            assert got.remote is None, name
    # The same states outside the excluded folder sync as usual.
    assert isinstance(_ops([ps("a/x", V1, None, None)])["a/x"], pl.Download)
    assert isinstance(_ops([ps("a/x", V1, V1, None)])["a/x"], pl.DeleteRemote)


def test_a_folder_above_one_left_out_is_not_deleted_on_the_server() -> None:
    # "a" deleted here with everything in it; "a/big" is left out and lives there.
    ex = frozenset({"a/big"})
    av = Version(1, DIR)
    states = [
        ps("a", av, av, None),
        ps("a/x", V1, V1, None),
        ps("a/big", Version(2, DIR), Version(2, DIR), None),
        ps("a/big/p", Version(4, F2), Version(4, F2), None),
    ]
    ops = _ops(states, ex)
    assert isinstance(ops["a/x"], pl.DeleteRemote)  # the rest goes as usual
    assert isinstance(ops["a"], pl.Download)  # kept, as a folder, here too
    assert not isinstance(ops.get("a/big"), pl.DeleteRemote)
    assert not isinstance(ops.get("a/big/p"), pl.DeleteRemote)


def test_a_folder_holding_one_left_out_is_not_moved_whole() -> None:
    ex = frozenset({"a/big"})
    av = Version(1, DIR)
    states = [
        ps("a", av, av, None),
        ps("a/x", V1, V1, None),
        ps("a/big", Version(2, DIR), Version(2, DIR), None),
        ps("b", None, None, DIR),
        ps("b/x", None, None, F1),
    ]
    ops = _ops(states, ex)
    assert not any(isinstance(op, pl.MoveRemote) and op.src == "a" for op in ops.values())
    assert isinstance(ops["b/x"], pl.MoveRemote) and ops["b/x"].src == "a/x"  # the file moves


def test_a_remote_move_out_of_a_folder_left_out_renames_the_copy_here() -> None:
    states = [
        ps("big/p", Version(5, None), V1, F1),
        ps("a/x", Version(6, F1, moved_from="big/p"), None, None),
    ]
    ops = _ops(states)
    assert isinstance(ops["a/x"], pl.MoveLocal) and ops["a/x"].src == "big/p"


# -- whole syncs, round after round (the planner simulation) ------------------------------------


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), left_out=st.sampled_from(["a", "b", "a/b", "b/a", "c.txt"]))
def test_syncs_with_a_folder_left_out_converge_and_keep_their_promises(
    sc: Scenario, left_out: str
) -> None:
    """Random changes on both sides (tests/core/test_planner.py's scenarios),
    synced with one folder left out: the plan empties; this device wrote
    nothing at or below the folder on the server (the server holds there
    exactly what the other device made it); nothing came down there; every
    version either side made is still on the server or on the disk; and
    everything else ends equal on both sides."""
    excluded = frozenset({left_out})
    inside = functools.partial(pl.is_excluded, excluded=excluded)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pl, "plan", functools.partial(pl.plan, excluded=excluded))
        sim = sc.sim()
        out = sc.run(sim)
    assert out.converged, out.describe()
    others_only = Sim.scenario(sc.base, sc.base, sc.remote.events).server
    for p in set(sim.server.rows) | set(others_only.rows):
        if inside(p):
            assert sim.server.rows.get(p) == others_only.rows.get(p), (p, out.describe())
    local_nodes = tree_nodes(sc.local)
    for p, n in sim.disk.nodes().items():
        if inside(p) and n.kind is Kind.FILE:  # here only if it was made or changed here
            assert p in local_nodes and local_nodes[p].same(n), (p, out.describe())
    final = {f"server:{p}": n for p, n in sim.server.live().items()}
    final.update({f"disk:{p}": n for p, n in sim.disk.nodes().items()})
    lost = lost_versions(protected_versions(sc.base, sc.local, sc.remote), final)
    assert not lost, "versions lost:\n" + "\n".join(lost) + "\n" + out.describe()
    outside_server = {p: n for p, n in sim.server.live().items() if not inside(p)}
    outside_disk = {p: n for p, n in sim.disk.nodes().items() if not inside(p)}
    assert view(outside_disk) == view(outside_server), out.describe()
    # Included again: it comes back whole, and its absence here deleted nothing
    # (what the server had there stays, unless it was changed here: an edit, a
    # move, made while it was left out or before, goes up like any other).
    again = sim.run()
    assert again.converged, again.describe()
    assert view(sim.disk.nodes()) == view(sim.server.live()), again.describe()
    base_nodes, live = tree_nodes(sc.base), sim.server.live()
    for p in others_only.live():
        untouched = p not in local_nodes or (p in base_nodes and local_nodes[p].same(base_nodes[p]))
        if inside(p) and untouched:
            assert p in live, f"{p}\n{out.describe()}\n{again.describe()}"
    final = {f"server:{p}": n for p, n in sim.server.live().items()}
    lost = lost_versions(protected_versions(sc.base, sc.local, sc.remote), final)
    assert not lost, "versions lost:\n" + "\n".join(lost) + "\n" + again.describe()
