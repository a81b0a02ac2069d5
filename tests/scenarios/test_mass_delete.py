"""Scenario: mass delete (most of the tree vanishes at once) is not propagated
without explicit confirmation, also when watchers see it arrive over several
scans; everything else keeps syncing meanwhile (finding 9 of the audit).

Two real watchers (`Client.watch`) on a real server: `rm -rf` of a 2,000-file
folder (of 2,140) done in steps, each seen by A's watcher. B is never left
half-deleted, A's later edits still reach B, `linesync status` tells what is
held, and `linesync sync --confirm-deletes` sends all of it in one go.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
from pathlib import Path

from linesync.cli.main import main as cli_main
from linesync.client.api import Client
from linesync.client.engine import MassDelete
from linesync.client.remote import Remote
from linesync.protocol.schemas import Kind
from tests.scenarios.helpers import World, assert_same_trees, files, settle, tree, write
from tests.support.watch import WatchThread, wait_until, watching

SETTLE = 4.0  # seconds without a new deletion before the watcher judges them


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(list(args))
    return rc, out.getvalue(), err.getvalue()


def _cli_retrying_busy(*args: str) -> tuple[int, str, str]:
    """A one-shot command while a watcher runs: it may find the folder busy for
    a moment (exit 4), as a user would; try again, a bounded number of times."""
    for _ in range(50):
        rc, out, err = _cli(*args)
        if rc != 4:
            return rc, out, err
        wait_until(lambda: False, 0.2)
    raise AssertionError(f"the folder stayed busy: {err}")


def _server_files(world: World, client: Client) -> dict[str, Kind]:
    """The server's current entries (tombstones included), path -> kind."""

    async def go() -> dict[str, Kind]:
        out: dict[str, Kind] = {}
        async with Remote(world.srv.url, client.config.token) as r:
            cursor: str | None = None
            for _ in range(1000):
                resp = await r.list_changes(client.config.namespace, cursor)
                for e in resp.entries:
                    out[e.path] = e.kind
                cursor = resp.cursor
                if not resp.more:
                    break
        return out

    return asyncio.run(go())


def _live_under(view: dict[str, Kind], folder: str) -> int:
    return sum(1 for p, k in view.items() if p.startswith(folder + "/") and k is not Kind.TOMBSTONE)


def _fill(root: Path, big: int, other: int) -> None:
    for i in range(big):
        write(root / f"big/f{i:04}.md", f"bulk file {i}\n")
    for i in range(other):
        write(root / f"keep/k{i:03}.md", f"kept file {i}\n")


def _watchers(a: Client, b: Client) -> tuple[Client, Client, list[str]]:
    reports: list[str] = []
    return Client(a.folder, report=reports.append), Client(b.folder), reports


def _rm_rf_in_steps(watch: WatchThread, folder: Path, steps: int) -> list[int]:
    """Delete ``folder``'s files a slice at a time; after each slice wait until
    the watcher has scanned it (it holds exactly what is deleted so far). The
    held counts it reported, in order."""
    names = sorted(folder.iterdir())
    size = -(-len(names) // steps)
    seen: list[int] = []
    for i in range(0, len(names), size):
        for p in names[i : i + size]:
            p.unlink()
        gone = min(i + size, len(names))

        def scanned(gone: int = gone) -> bool:
            return any(r.held is not None and r.held.count == gone for r in watch.snapshot())

        assert wait_until(scanned, 60), (gone, watch.snapshot()[-3:])
        seen.append(gone)
    folder.rmdir()
    return seen


def _refused(watch: WatchThread, count: int) -> bool:
    return any(
        r.held is not None and r.held.refused and r.held.count == count for r in watch.snapshot()
    )


def test_mass_delete_seen_over_several_watcher_scans_is_held_whole_and_sent_on_confirm(
    world: World,
) -> None:
    a0, b0 = world.pair()
    _fill(a0.folder, 2000, 140)
    settle(a0, b0)
    assert len(files(tree(b0.folder))) == 2140
    a, b, reports = _watchers(a0, b0)
    with watching(a, b, settle=SETTLE) as (wa, wb):
        assert wait_until(lambda: bool(wa.snapshot()) and bool(wb.snapshot()), 30)
        seen = _rm_rf_in_steps(wa, a.folder / "big", steps=5)
        assert seen == [400, 800, 1200, 1600, 2000]  # five scans, each of a part

        # Judged whole once it stopped growing: refused, and nothing sent.
        assert wait_until(lambda: _refused(wa, 2000), 4 * SETTLE), wa.snapshot()[-3:]
        assert wa.alive() and wb.alive()
        told = [m for m in reports if "holding the deletion of 2000 of 2140 files" in m]
        assert len(told) == 1, reports
        view = _server_files(world, a)
        assert _live_under(view, "big") == 2000  # not one deletion reached the server
        assert sum(r.deleted_remote for r in wa.snapshot()) == 0
        assert len(files(tree(b.folder))) == 2140  # B was never left half-deleted
        assert sum(r.deleted_local for r in wb.snapshot()) == 0
        assert not (a.folder / "big").exists()  # nor did A put the files back itself

        # `linesync status` tells what is held: how many, of how many, since when.
        rc, out, _ = _cli("status", str(a.folder))
        assert rc == 0
        assert "held back: the deletion of 2000 of 2140 files on the server, since " in out
        assert "--confirm-deletes" in out

        # Everything else keeps syncing, both ways.
        write(a.folder / "keep/k000.md", "edited on A while the deletion is held\n")
        write(a.folder / "new-on-a.md", "new on A\n")
        write(b.folder / "keep/k001.md", "edited on B\n")
        edit = "edited on A while the deletion is held\n"
        assert wait_until(
            lambda: (
                (b.folder / "new-on-a.md").exists()
                and (b.folder / "keep/k000.md").read_text() == edit
                and (a.folder / "keep/k001.md").read_text() == "edited on B\n"
            ),
            30,
        ), (wa.snapshot()[-2:], wb.snapshot()[-2:])
        assert len(files(tree(b.folder))) == 2141  # still every file of big/
        assert _live_under(_server_files(world, a), "big") == 2000

        # The user confirms: all 2,000 go at once.
        rc, out, err = _cli_retrying_busy("sync", str(a.folder), "--confirm-deletes")
        assert rc == 0, (out, err)
        assert "2000 deleted on the server" in out, out
        assert _live_under(_server_files(world, a), "big") == 0
        assert wait_until(lambda: sum(r.deleted_local for r in wb.snapshot()) == 2000, 30), (
            wb.snapshot()[-2:]
        )
        assert not (b.folder / "big").exists()
        assert wait_until(lambda: any("no deletions are held back" in m for m in reports), 30)

        # And the watcher goes on as before.
        write(a.folder / "after.md", "after the confirmation\n")
        assert wait_until(lambda: (b.folder / "after.md").exists(), 30)
        rc, out, _ = _cli("status", str(a.folder))
        assert "held back" not in out
    assert_same_trees(a, b)
    assert len(files(tree(a.folder))) == 142


def test_a_smaller_mass_delete_73_of_117_is_held_until_the_user_puts_the_files_back(
    world: World,
) -> None:
    a0, b0 = world.pair()
    _fill(a0.folder, 73, 44)
    settle(a0, b0)
    a, b, reports = _watchers(a0, b0)
    saved = {p: (a.folder / p).read_bytes() for p in files(tree(a.folder))}
    with watching(a, b, settle=SETTLE) as (wa, wb):
        assert wait_until(lambda: bool(wa.snapshot()) and bool(wb.snapshot()), 30)
        _rm_rf_in_steps(wa, a.folder / "big", steps=3)
        assert wait_until(lambda: _refused(wa, 73), 4 * SETTLE), wa.snapshot()[-3:]
        assert any("holding the deletion of 73 of 117 files" in m for m in reports), reports
        assert len(files(tree(b.folder))) == 117
        # A new file meanwhile still goes.
        write(a.folder / "keep/new.md", "new while held\n")
        assert wait_until(lambda: (b.folder / "keep/new.md").exists(), 30)
        # The user undoes it (restores from their backup): nothing is held any more.
        for p, data in saved.items():
            if p.startswith("big/"):
                write(a.folder / p, data)
        assert wait_until(lambda: any("no deletions are held back" in m for m in reports), 30)
        assert wait_until(lambda: wa.snapshot()[-1].converged, 30)
    assert sum(r.deleted_remote for r in wa.results) == 0
    assert sum(r.deleted_local for r in wb.results) == 0
    assert_same_trees(a, b)
    assert len(files(tree(b.folder))) == 118


def test_a_one_shot_sync_refuses_the_mass_delete_with_exit_3_but_syncs_the_rest(
    world: World,
) -> None:
    a, b = world.pair()
    _fill(a.folder, 73, 44)
    settle(a, b)
    shutil.rmtree(a.folder / "big")
    write(a.folder / "keep/k000.md", "edited in the same sync\n")
    write(a.folder / "fresh.md", "new in the same sync\n")
    rc, out, err = _cli("sync", str(a.folder))
    assert rc == 3, (out, err)
    assert "refusing to delete 73 of 117 files on the server" in err
    assert "--confirm-deletes" in err
    assert "2 uploaded" in out  # the edit and the new file went anyway
    b.sync_once()
    got = files(tree(b.folder))
    assert len([p for p in got if p.startswith("big/")]) == 73
    assert got["keep/k000.md"] == b"edited in the same sync\n"
    assert got["fresh.md"] == b"new in the same sync\n"
    # The library says the same: MassDelete, with what was done.
    try:
        a.sync_once()
        raise AssertionError("the mass delete went through")
    except MassDelete as exc:
        assert (exc.count, exc.total) == (73, 117)
        assert exc.result is not None and exc.result.deleted_remote == 0
    # The old option name still confirms.
    rc, out, err = _cli("sync", str(a.folder), "--allow-mass-delete")
    assert rc == 0, (out, err)
    assert "73 deleted on the server" in out
    settle(a, b)
    assert_same_trees(a, b)
    assert not (b.folder / "big").exists()
