"""``linesync exclude add/remove`` reaches a running ``sync --watch`` of the
same folder at once: the watcher wakes on the change of the folder's
settings file (or finds it by a stat at its next check), not at the next
periodic round nor at the next change of a file."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from linesync.cli.main import main as cli_main
from linesync.client.api import WATCH_RESCAN, WATCHER_CHECK, Client
from linesync.client.config import FolderConfig
from linesync.client.index import Index
from linesync.client.watcher import FolderWatcher
from tests.client.conftest import files
from tests.support.watch import interrupt

PROMPT = 5.0  # seconds an exclusion may take to reach a running watcher


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(args))
    return code, out.getvalue(), err.getvalue()


def _last_run(folder: Path) -> str | None:
    index = Index.open(folder / ".linesync" / "index.sqlite3")
    try:
        return index.get("last_run")
    finally:
        index.close()


def test_the_settings_file_is_found_changed_by_a_stat(pair: tuple[Client, Client]) -> None:
    """(The fallback for a missed event.) One answer per change, none without."""
    _, b = pair
    w = FolderWatcher(b.folder, asyncio.Event())
    assert not w.settings_changed()
    cfg = FolderConfig.load(b.folder)
    for excluded in [("big",), ("big", "other"), ("other",), ()]:
        dataclasses.replace(cfg, excluded=excluded).save(b.folder)
        assert w.settings_changed(), excluded
        assert not w.settings_changed()
    w.note_settings()  # (an event named it: nothing left for the stat to find)
    assert w.dirty.is_set() and not w.settings_changed()


def test_an_exclusion_reaches_a_running_watch_promptly(
    pair: tuple[Client, Client], tmp_path: Path
) -> None:
    a, b = pair
    (a.folder / "big").mkdir()
    for i in range(5):
        (a.folder / "big" / f"{i}.txt").write_text(f"big {i}\n")
    (a.folder / "keep.txt").write_text("keep\n")
    assert a.sync_once().converged and b.sync_once().converged
    before = _last_run(b.folder)
    log_path = tmp_path / "watch.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "linesync", "sync", "--watch", str(b.folder)],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )  # fmt: skip

    def until(check: Callable[[], bool], what: str, seconds: float) -> float:
        """Seconds until ``check`` holds (polled every 20 ms, bounded)."""
        start = time.monotonic()
        for _ in range(int(seconds / 0.02) + 1):
            if check():
                return time.monotonic() - start
            assert proc.poll() is None, log_path.read_text()
            if time.monotonic() - start > seconds:
                break
            time.sleep(0.02)
        raise AssertionError(f"{what} not within {seconds} s: {log_path.read_text()}")

    try:
        until(lambda: _last_run(b.folder) != before, "the watch's first round", 60.0)
        time.sleep(0.5)  # idle now: waiting on its long-poll and on file events
        assert _cli("exclude", "add", "big", "--folder", str(b.folder))[0] == 0
        took_add = until(lambda: not (b.folder / "big").exists(), "big/ left out", PROMPT)
        # Taken back in: downloaded again, without a change anywhere to wake it.
        time.sleep(0.5)
        assert _cli("exclude", "remove", "big", "--folder", str(b.folder))[0] == 0
        took_remove = until(lambda: files(b.folder) == files(a.folder), "big/ back", PROMPT)
        print(
            f"exclusion applied in {took_add:.2f} s, taken back in {took_remove:.2f} s "
            f"(periodic round: {WATCH_RESCAN:.0f} s, stat check: {WATCHER_CHECK:.0f} s)"
        )
    finally:
        try:
            interrupt(proc)
        finally:
            log.close()
    assert proc.returncode == 0, log_path.read_text()
    assert a.sync_once().converged and files(a.folder) == files(b.folder)
