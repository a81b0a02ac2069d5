"""Selective sync and the index's dirty set: what the server changes below a
folder left out here is not looked at round after round, and nothing made
or changed there is lost when the folder is taken back in.

``Index.dirty(excluded)`` against a model (Hypothesis over random three-view
rows), then end to end with two devices on a real server.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linesync.cli.main import main as cli_main
from linesync.client.api import Client
from linesync.client.index import Index
from linesync.client.model import Local, Node, Stat, Version
from linesync.core import paths
from linesync.protocol.schemas import Kind
from tests.client.conftest import files

PATHS = ("a", "a.txt", "a/x", "a/y", "a/b", "a/b/z", "a0", "ab", "big", "big/p", "big/q/r",
         "c", "c/d", "top.txt", "é", "é/ü")  # fmt: skip
FOLDERS = ("a", "a/b", "big", "big/q", "c", "é")


def _node(c: int) -> Node:
    return Node(Kind.FILE, c, c, chash=bytes([c]) * 4)


@st.composite
def rows(draw: st.DrawFn) -> dict[str, tuple[Version | None, Version | None, Node | None]]:
    out = {}
    for p in PATHS:
        if not draw(st.booleans()):
            continue
        node = st.one_of(st.none(), st.builds(_node, st.integers(1, 2)))
        remote = draw(st.one_of(st.none(), st.builds(Version, st.integers(1, 2), node)))
        synced = draw(st.one_of(st.none(), st.builds(Version, st.integers(1, 2), node)))
        local = draw(node)
        out[p] = (remote, synced, local)
    return out


@contextlib.contextmanager
def _index() -> Iterator[Index]:
    with tempfile.TemporaryDirectory() as d:
        index = Index.open(Path(d) / "index.sqlite3")
        try:
            yield index
        finally:
            index.close()


def test_dirty_leaves_out_what_lies_below_an_excluded_folder_without_a_synced_view() -> None:
    with _index() as index:
        index.db.execute("PRAGMA synchronous=OFF")  # (a scratch index: no fsync per example)

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(rows(), st.frozensets(st.sampled_from([*FOLDERS, "nothere", "a/b/z"]), max_size=3))
        def check(
            table: dict[str, tuple[Version | None, Version | None, Node | None]],
            excluded: frozenset[str],
        ) -> None:
            with index.transaction():
                index.db.execute("DELETE FROM paths")
                for p, (remote, synced, local) in table.items():
                    index.set_remote(p, remote)
                    index.set_synced(p, synced)
                    index.set_local(p, Local(local, Stat(1, 1, 1, 1)) if local else None)
            everything = index.dirty()
            assert len(everything) == len(set(everything))
            got = index.dirty(excluded)
            assert len(got) == len(set(got))

            def below(p: str) -> bool:
                return any(a in excluded for a in paths.ancestors(p))

            want = {p for p in everything if not below(p) or index.state(p).synced is not None}
            assert set(got) == want
            # Taking every folder back in lists every disagreeing path again.
            assert set(index.dirty(())) == set(everything)

        check()


def test_dirty_below_an_excluded_folder_uses_the_partial_indexes() -> None:
    with _index() as index:
        with index.transaction():
            for i in range(2000):
                index.set_remote(f"big/{i:05}", Version(i + 1, _node(1)))
            index.set_remote("big", Version(5000, Node(Kind.DIRECTORY)))
            index.set_local("notes", Local(_node(2), Stat(1, 1, 1, 1)))
        assert len(index.dirty()) == 2002
        assert sorted(index.dirty({"big"})) == ["big", "notes"]
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        index.db.set_progress_handler(count, 100)  # a callback every 100 VM steps
        try:
            index.dirty({"big"})
        finally:
            index.db.set_progress_handler(None, 0)
        assert steps < 20, steps  # (reading the 2000 rows takes hundreds)


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(args))
    return code, out.getvalue(), err.getvalue()


def _dirty(folder: Path, excluded: tuple[str, ...]) -> list[str]:
    index = Index.open(folder / ".linesync" / "index.sqlite3")
    try:
        return index.dirty(excluded)
    finally:
        index.close()


def _meta(folder: Path, key: str) -> str | None:
    index = Index.open(folder / ".linesync" / "index.sqlite3")
    try:
        return index.get(key)
    finally:
        index.close()


def test_left_out_paths_leave_the_dirty_set_and_nothing_is_lost_taking_them_back(
    pair: tuple[Client, Client],
) -> None:
    a, b = pair
    (a.folder / "big").mkdir()
    for i in range(20):
        (a.folder / "big" / f"{i}.txt").write_text(f"big {i}\n")
    (a.folder / "big" / "kept.txt").write_text("v1\n")
    (a.folder / "big" / "gone.txt").write_text("v1\n")
    assert a.sync_once().converged and b.sync_once().converged
    assert _cli("exclude", "add", "big", "--folder", str(b.folder))[0] == 0
    # Edited here before the exclusion is applied: kept, not uploaded.
    (b.folder / "big" / "kept.txt").write_text("v1\nB's edit\n")
    (b.folder / "big" / "gone.txt").write_text("v1\nB's edit\n")
    r = b.sync_once()
    assert r.converged and r.uploaded == 0 and r.deleted_remote == 0, r
    assert sorted(p for p in files(b.folder)) == ["big/gone.txt", "big/kept.txt"]

    # A changes much below big/: B's dirty set holds none of it.
    for i in range(20):
        (a.folder / "big" / f"{i}.txt").write_text(f"big {i}, again\n")
    (a.folder / "big" / "new").mkdir()
    (a.folder / "big" / "new" / "n.txt").write_text("new on A\n")
    (a.folder / "top.txt").write_text("top\n")
    assert a.sync_once().converged
    # B makes a file there (a pending upload) and deletes one of its kept edits.
    (b.folder / "big" / "mine.txt").write_text("made on B\n")
    (b.folder / "big" / "gone.txt").unlink()
    for _ in range(2):
        r = b.sync_once()
        assert r.converged and r.uploaded == 0 and r.deleted_remote == 0, r
    assert (b.folder / "top.txt").read_text() == "top\n"
    assert _meta(b.folder, "excluded_done") == '["big"]'
    left = [p for p in _dirty(b.folder, ("big",)) if p.startswith("big/")]
    assert left == ["big/kept.txt"], left  # (a kept edit: it still has a synced view)
    assert len([p for p in _dirty(b.folder, ()) if p.startswith("big/")]) >= 23

    # Taken back: everything below big/ syncs both ways; the file deleted here
    # while left out is not deleted on the server.
    assert _cli("exclude", "remove", "big", "--folder", str(b.folder))[0] == 0
    r = b.sync_once()
    assert r.converged and r.deleted_remote == 0, r
    assert a.sync_once().converged and b.sync_once().converged
    assert files(a.folder) == files(b.folder)
    got = files(a.folder)
    assert got["big/mine.txt"] == b"made on B\n"
    assert got["big/kept.txt"] == b"v1\nB's edit\n"
    assert got["big/gone.txt"] == b"v1\n"
    assert got["big/new/n.txt"] == b"new on A\n"
    assert got["big/3.txt"] == b"big 3, again\n"
    assert _dirty(b.folder, ()) == []
    assert _meta(b.folder, "excluded_done") is None  # (left out again: planned whole)

    # Left out again: applied again from scratch (what is here as synced goes).
    assert _cli("exclude", "add", "big", "--folder", str(b.folder))[0] == 0
    r = b.sync_once()
    assert r.converged and r.deleted_remote == 0, r
    assert not (b.folder / "big").exists()
    assert a.sync_once().converged and len([p for p in files(a.folder) if "big/" in p]) == 24
