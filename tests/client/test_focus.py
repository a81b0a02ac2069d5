"""A sync told which paths changed (a watcher's events) looks at those paths
alone, and still ends where a whole-folder sync would: every kind of change
goes up, nothing else on disk is read, and a later full scan finds nothing
left to do."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from linesync.client.api import Client
from linesync.client.engine import Engine, SyncResult
from linesync.client.ignore import IgnoreRules
from linesync.client.index import Index
from linesync.client.localfs import LocalFS, Walk
from linesync.client.remote import Remote
from tests.client.conftest import files


class CountingFS(LocalFS):
    """LocalFS that counts the entries its walks look at."""

    visited = 0

    def _visit(self, prefix: str, disk_prefix: str, item: os.DirEntry[str],
               ignore: IgnoreRules, out: Walk, taken: set[str]) -> None:  # fmt: skip
        self.visited += 1
        super()._visit(prefix, disk_prefix, item, ignore, out, taken)


def _sync(client: Client, touched: set[str] | None, fs: LocalFS | None = None) -> SyncResult:
    async def go() -> SyncResult:
        index = Index.open(client.folder / ".linesync" / "index.sqlite3")
        try:
            async with Remote(client.config.server, client.config.token) as remote:
                engine = Engine(client.folder, client.config, remote, index, fs=fs)
                return await engine.sync_once(touched)
        finally:
            index.close()

    return asyncio.run(go())


def _tree(folder: Path) -> None:
    for d in range(10):
        (folder / f"d{d}").mkdir()
        for i in range(20):
            (folder / f"d{d}/n{i:02d}.md").write_text(f"note {d}/{i}\nline two\n")
    (folder / "box").mkdir()
    for i in range(5):
        (folder / f"box/b{i}.txt").write_text(f"box {i}\n")


def _edit(f: Path) -> set[str]:
    (f / "d1/n01.md").write_text("note 1/1\nedited\n")
    return {"d1/n01.md"}


def _create_deep(f: Path) -> set[str]:
    (f / "new/deeper").mkdir(parents=True)
    (f / "new/deeper/x.md").write_text("x\n")
    return {"new"}  # the folder's event alone: what is below is found by walking it


def _delete_file(f: Path) -> set[str]:
    (f / "d2/n02.md").unlink()
    return {"d2/n02.md"}


def _delete_folder(f: Path) -> set[str]:
    for p in (f / "box").iterdir():
        p.unlink()
    (f / "box").rmdir()
    return {"box"}


def _move_file(f: Path) -> set[str]:
    (f / "d3/n03.md").rename(f / "d4/moved.md")
    return {"d3/n03.md", "d4/moved.md"}


def _move_folder(f: Path) -> set[str]:
    (f / "box").rename(f / "d5/box")
    return {"box", "d5/box"}


def _symlink_and_exec(f: Path) -> set[str]:
    os.symlink("n00.md", f / "d6/link")
    (f / "d6/n01.md").chmod(0o755)
    return {"d6/link", "d6/n01.md"}


def _emptied_folder_replaced_by_file(f: Path) -> set[str]:
    for p in (f / "d7").iterdir():
        p.unlink()
    (f / "d7").rmdir()
    (f / "d7").write_text("now a file\n")
    return {"d7"}


CHANGES: list[tuple[str, Callable[[Path], set[str]]]] = [
    ("edit", _edit),
    ("new folders", _create_deep),
    ("delete a file", _delete_file),
    ("delete a folder", _delete_folder),
    ("move a file", _move_file),
    ("move a folder", _move_folder),
    ("symlink and exec bit", _symlink_and_exec),
    ("folder becomes a file", _emptied_folder_replaced_by_file),
]


@pytest.mark.parametrize("change", [c for _, c in CHANGES], ids=[n for n, _ in CHANGES])
def test_a_focused_sync_sends_the_change_and_leaves_nothing_for_a_full_one(
    pair: tuple[Client, Client], change: Callable[[Path], set[str]]
) -> None:
    a, b = pair
    _tree(a.folder)
    assert a.sync_once().converged and b.sync_once().converged
    touched = change(a.folder)
    fs = CountingFS(a.folder)
    r = _sync(a, touched, fs)
    assert r.converged, r
    assert fs.visited < 30, f"looked at {fs.visited} entries for {touched}"
    full = _sync(a, None)  # the whole folder: nothing left that the focused one missed
    assert full.converged and (full.uploaded, full.deleted_remote, full.moved) == (0, 0, 0), full
    assert b.sync_once().converged
    assert files(b.folder) == files(a.folder)
    if change is _symlink_and_exec:
        assert os.readlink(b.folder / "d6/link") == "n00.md"
        assert os.access(b.folder / "d6/n01.md", os.X_OK)


def test_moves_stay_moves_when_focused(pair: tuple[Client, Client]) -> None:
    """A moved folder is one move on the server, not its files sent again."""
    a, b = pair
    _tree(a.folder)
    assert a.sync_once().converged and b.sync_once().converged
    touched = _move_folder(a.folder) | _move_file(a.folder)
    r = _sync(a, touched)
    assert r.converged and r.uploaded == 0 and r.moved >= 2, r
    rb = b.sync_once()
    assert rb.downloaded == 0 and files(b.folder) == files(a.folder), rb


def test_server_news_is_taken_with_nothing_touched(pair: tuple[Client, Client]) -> None:
    """A wake-up from the server (no local event): its changes come down, and
    the local files they touch are checked first."""
    a, b = pair
    _tree(a.folder)
    assert a.sync_once().converged and b.sync_once().converged
    (a.folder / "d0/n00.md").write_text("from A\n")
    (a.folder / "d9/n09.md").unlink()
    assert a.sync_once().converged
    fs = CountingFS(b.folder)
    r = _sync(b, set(), fs)
    assert r.converged and r.downloaded == 1 and r.deleted_local == 1, r
    assert fs.visited < 10
    assert files(b.folder) == files(a.folder)


def test_a_change_not_named_waits_for_the_full_scan(pair: tuple[Client, Client]) -> None:
    """The focus is a promise that nothing else changed: an edit no event named
    is not seen by a focused round (which never reads it as deleted either),
    and the next full scan sends it."""
    a, b = pair
    _tree(a.folder)
    assert a.sync_once().converged and b.sync_once().converged
    (a.folder / "d8/n08.md").write_text("unnoticed\n")
    (a.folder / "d8/n07.md").unlink()
    r = _sync(a, {"d1/n01.md"})  # named, but unchanged
    assert r.converged and r.uploaded == 0 and r.deleted_remote == 0, r
    r = _sync(a, None)
    assert r.uploaded == 1 and r.deleted_remote == 1, r
    assert b.sync_once().converged and files(b.folder) == files(a.folder)


def test_a_focused_round_counts_the_whole_folder_for_the_mass_delete_rail(
    pair: tuple[Client, Client],
) -> None:
    """Deleting 5 of 205 files is no mass deletion, though the focused plan
    sees only those 5."""
    a, b = pair
    _tree(a.folder)
    assert a.sync_once().converged and b.sync_once().converged
    touched = set()
    for i in range(5):
        (a.folder / f"d{i}/n10.md").unlink()
        touched.add(f"d{i}/n10.md")
    r = _sync(a, touched)
    assert r.converged and r.deleted_remote == 5 and r.held is None, r
