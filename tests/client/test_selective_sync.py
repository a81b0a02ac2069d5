"""Selective sync end to end, two devices on a real server: B leaves ``big/``
out; A keeps adding there and elsewhere; B gets only the rest, the server and
A keep all of ``big/``; B's own edits are never lost; B includes ``big/``
again and gets it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path
from typing import Any

from linesync.cli.main import main as cli_main
from linesync.client import selective
from linesync.client.api import Client
from linesync.client.config import FolderConfig
from linesync.client.remote import Remote
from linesync.protocol.schemas import Kind
from tests.client.conftest import files
from tests.support.server import ServerProc
from tests.support.watch import interrupt


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(args))
    return code, out.getvalue(), err.getvalue()


def _server_files(server: ServerProc, token: str) -> set[str]:
    async def go() -> set[str]:
        live: dict[str, Kind] = {}
        async with Remote(server.url, token) as r:
            cursor = None
            for _ in range(100):
                resp = await r.list_changes(1, cursor)
                live.update((e.path, e.kind) for e in resp.entries)
                cursor = resp.cursor
                if not resp.more:
                    break
        return {p for p, k in live.items() if k is Kind.FILE}

    return asyncio.run(go())


def _status(folder: Path) -> dict[str, Any]:
    code, out, _ = _cli("status", str(folder), "--json")
    assert code == 0
    return json.loads(out)  # type: ignore[no-any-return]


def test_a_device_leaves_a_folder_out_and_takes_it_back(
    pair: tuple[Client, Client], server: ServerProc
) -> None:
    a, b = pair
    (a.folder / "big").mkdir()
    (a.folder / "big" / "old.bin").write_bytes(b"\x00old" * 1000)
    (a.folder / "big" / "edit.txt").write_text("line 1\n")
    (a.folder / "notes").mkdir()
    (a.folder / "notes" / "n.txt").write_text("note\n")
    assert a.sync_once().converged and b.sync_once().converged
    assert files(b.folder) == files(a.folder)

    # An edit here not synced yet: leaving the folder out is refused, naming it.
    (b.folder / "big" / "edit.txt").write_text("line 1\nedited on B\n")
    _status(b.folder)  # (a look at the folder: the edit is in the index now)
    code, _, err = _cli("exclude", "add", "big", "--folder", str(b.folder))
    assert code == 1 and "big/edit.txt" in err and "linesync sync" in err
    assert FolderConfig.load(b.folder).excluded == ()
    assert b.sync_once().converged  # the edit goes up first
    code, out, _ = _cli("exclude", "add", "big/", "--folder", str(b.folder))
    assert code == 0 and "left out here: big/" in out, out
    assert _cli("exclude", "list", "--folder", str(b.folder))[1].strip() == "big/"

    # The next sync removes what B has as the server has it, and nothing else.
    r = b.sync_once()
    assert r.converged and r.deleted_remote == 0 and r.deleted_local == 0, r
    assert not (b.folder / "big").exists()
    assert {"big/old.bin", "big/edit.txt"} <= _server_files(server, server.token)
    st = _status(b.folder)
    assert st["excluded"] == ["big"] and st["pending"]["download_files"] == 0

    # A file made on B under the left-out folder stays there and is not uploaded.
    (b.folder / "big").mkdir()
    (b.folder / "big" / "mine.txt").write_text("made on B\n")
    # A adds under big/ and elsewhere.
    (a.folder / "big" / "sub").mkdir()
    (a.folder / "big" / "sub" / "new.txt").write_text("new on A\n")
    (a.folder / "big" / "new.bin").write_bytes(b"\x01" * 5000)
    (a.folder / "notes" / "other.txt").write_text("elsewhere\n")
    assert a.sync_once().converged
    r = b.sync_once()
    assert r.converged and r.deleted_remote == 0 and r.uploaded == 0, r
    got = files(b.folder)
    assert got["notes/other.txt"] == b"elsewhere\n"
    assert sorted(p for p in got if p.startswith("big/")) == ["big/mine.txt"]
    assert (b.folder / "big" / "mine.txt").read_text() == "made on B\n"
    on_server = _server_files(server, server.token)
    assert {"big/old.bin", "big/edit.txt", "big/sub/new.txt", "big/new.bin"} <= on_server
    assert "big/mine.txt" not in on_server
    st = _status(b.folder)
    assert st["excluded_unsynced"] == ["big/mine.txt"]
    code, text, _ = _cli("status", str(b.folder))
    assert "left out on this device: big/" in text and "big/mine.txt" in text
    # A loses nothing of big/ after B's syncs.
    assert a.sync_once().converged
    assert (a.folder / "big" / "old.bin").exists() and (a.folder / "big" / "new.bin").exists()
    assert "big/mine.txt" not in files(a.folder)

    # B takes big/ back: it is downloaded, and B's own file goes up.
    code, out, _ = _cli("exclude", "remove", "big", "--folder", str(b.folder))
    assert code == 0 and "included again: big/" in out
    r = b.sync_once()
    assert r.converged and r.deleted_remote == 0, r
    assert a.sync_once().converged and b.sync_once().converged
    assert files(b.folder) == files(a.folder)
    assert files(a.folder)["big/mine.txt"] == b"made on B\n"
    assert files(a.folder)["big/edit.txt"] == b"line 1\nedited on B\n"


def test_a_file_edited_after_its_folder_is_left_out_stays_and_goes_up_later(
    pair: tuple[Client, Client],
) -> None:
    a, b = pair
    (a.folder / "big").mkdir()
    (a.folder / "big" / "doc.txt").write_text("v1\n")
    assert a.sync_once().converged and b.sync_once().converged
    assert _cli("exclude", "add", "big", "--folder", str(b.folder))[0] == 0
    # Edited before the sync that would remove it: never removed, never uploaded.
    (b.folder / "big" / "doc.txt").write_text("v1\nB's edit\n")
    r = b.sync_once()
    assert r.converged and r.uploaded == 0 and r.deleted_remote == 0, r
    assert (b.folder / "big" / "doc.txt").read_text() == "v1\nB's edit\n"
    assert a.sync_once().converged
    assert (a.folder / "big" / "doc.txt").read_text() == "v1\n"
    assert _cli("exclude", "remove", "big", "--folder", str(b.folder))[0] == 0
    assert b.sync_once().converged and a.sync_once().converged
    assert (a.folder / "big" / "doc.txt").read_text() == "v1\nB's edit\n"


def test_exclude_paths_are_checked(pair: tuple[Client, Client], tmp_path: Path) -> None:
    _, b = pair
    root = b.folder
    assert selective.folder_path(root, "big/", cwd=tmp_path) == "big"
    assert selective.folder_path(root, str(root / "a" / "b"), cwd=tmp_path) == "a/b"
    assert selective.folder_path(root, "b", cwd=root / "a") == "a/b"  # from inside it
    for bad in ("", ".", "..", "../x", str(tmp_path / "elsewhere"), ".linesync", ".linesync/x"):
        code, _, err = _cli("exclude", "add", bad, "--folder", str(root))
        assert code == 2 and err.startswith("linesync: "), (bad, err)
    assert FolderConfig.load(root).excluded == ()
    code, out, _ = _cli("exclude", "remove", "nothere", "--folder", str(root))
    assert code == 0 and "was not left out" in out
    assert _cli("exclude", "list", "--folder", str(root))[1].startswith("nothing is left out")


def test_a_running_watch_takes_an_exclusion(pair: tuple[Client, Client], tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    a, b = pair
    (a.folder / "big").mkdir()
    for i in range(3):
        (a.folder / "big" / f"{i}.txt").write_text(f"big {i}\n")
    assert a.sync_once().converged and b.sync_once().converged
    log = (tmp_path / "watch.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "linesync", "sync", "--watch", str(b.folder)],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )  # fmt: skip

    def until(check: object, what: str, seconds: float = 60.0) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if check():  # type: ignore[operator]
                return
            assert proc.poll() is None, (tmp_path / "watch.log").read_text()
            time.sleep(0.2)
        raise AssertionError(f"{what}: {(tmp_path / 'watch.log').read_text()}")

    def nudge(name: str) -> None:  # a change elsewhere wakes the watcher's long-poll
        (a.folder / f"{name}.txt").write_text(name)
        assert a.sync_once().converged

    try:
        until(lambda: "watching" in (tmp_path / "watch.log").read_text(), "the watch to start")
        assert _cli("exclude", "add", "big", "--folder", str(b.folder))[0] == 0
        nudge("one")
        until(lambda: (b.folder / "one.txt").exists() and not (b.folder / "big").exists(),
              "big/ removed at the next round")  # fmt: skip
        (a.folder / "big" / "new.txt").write_text("made on A\n")
        nudge("two")
        until(lambda: (b.folder / "two.txt").exists(), "the next change")
        time.sleep(0.5)
        assert not (b.folder / "big").exists()
        assert _cli("exclude", "remove", "big", "--folder", str(b.folder))[0] == 0
        nudge("three")
        until(lambda: files(b.folder) == files(a.folder), "big/ back")
    finally:
        try:
            interrupt(proc)
        finally:
            log.close()
    assert proc.returncode == 0
    assert a.sync_once().converged and files(a.folder)["big/new.txt"] == b"made on A\n"


def test_a_damaged_index_is_a_message_not_a_traceback(pair: tuple[Client, Client]) -> None:
    _, b = pair
    (b.folder / ".linesync" / "index.sqlite3").write_bytes(b"not a database" * 100)
    code, out, err = _cli("exclude", "add", "big", "--folder", str(b.folder))
    assert code == 1 and err.startswith("linesync: ") and "unreadable" in err, err
    assert "Traceback" not in out + err
    assert FolderConfig.load(b.folder).excluded == ()
