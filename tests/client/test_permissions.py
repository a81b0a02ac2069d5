"""Synced files honour the user's umask (the executable bit is what syncs), and
the client's own state is readable by its user only (finding 5 of the audit:
a secret.txt became world-readable under umask 077)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from linesync.client.api import Client
from linesync.client.index import Index
from linesync.client.localfs import file_mode
from tests.support.server import ServerProc


@pytest.mark.parametrize(
    ("umask", "exec_", "mode"),
    [
        (0o022, False, 0o644),
        (0o022, True, 0o755),
        (0o077, False, 0o600),
        (0o077, True, 0o700),
        (0o027, False, 0o640),
        (0o027, True, 0o750),
        (0o002, True, 0o775),
        (0o000, False, 0o666),
        (0o777, False, 0o600),  # the owner always keeps what it takes to sync
        (0o177, True, 0o700),  # ...the exec bit included, since it is synced
    ],
)
def test_the_mode_of_a_written_file(umask: int, exec_: bool, mode: int) -> None:
    assert file_mode(exec_, umask) == mode


def _cli(umask: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linesync", *args],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(umask),  # noqa: PLW1509 (no threads run here)
    )


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_downloads_honour_the_umask_and_the_state_is_private(
    server: ServerProc, tmp_path: Path
) -> None:
    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "a"))
    (a.folder / "secret.txt").write_text("the password\n")
    (a.folder / "secret.txt").chmod(0o644)
    (a.folder / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (a.folder / "run.sh").chmod(0o755)
    assert a.sync_once().converged

    expect = {0o077: (0o600, 0o700), 0o022: (0o644, 0o755), 0o027: (0o640, 0o750)}
    for umask, (plain, exe) in expect.items():
        folder = tmp_path / f"umask{umask:03o}"
        token = server.new_token("admin", f"u{umask:03o}")
        init = _cli(umask, "init", str(folder), "--server", server.url, "--token", token)
        assert init.returncode == 0, init
        done = _cli(umask, "sync", str(folder))
        assert done.returncode == 0, done
        assert _mode(folder / "secret.txt") == plain, umask
        assert _mode(folder / "run.sh") == exe, umask
        state = folder / ".linesync"
        assert _mode(state) == 0o700
        # (The index's -wal and -shm exist while it is open: open it.)
        index = Index.open(state / "index.sqlite3")
        try:
            with index.transaction():
                index.set("probe", "1")
            names = {p.name for p in state.iterdir()}
            assert {"config.json", "index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm",
                    "lock"} <= names, names  # fmt: skip
            for p in state.iterdir():
                assert _mode(p) == 0o600, (umask, p.name, oct(_mode(p)))
        finally:
            index.close()

    # The exec bit changes on A: under umask 077 it becomes 0700, and back.
    folder = tmp_path / "umask077"
    (a.folder / "secret.txt").chmod(0o755)
    assert a.sync_once().converged
    assert _cli(0o077, "sync", str(folder)).returncode == 0
    assert _mode(folder / "secret.txt") == 0o700
    (a.folder / "secret.txt").chmod(0o644)
    assert a.sync_once().converged
    assert _cli(0o077, "sync", str(folder)).returncode == 0
    assert _mode(folder / "secret.txt") == 0o600


def test_state_left_loose_by_an_older_client_is_tightened(
    server: ServerProc, tmp_path: Path
) -> None:
    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "a"))
    assert a.sync_once().converged
    state = a.folder / ".linesync"
    state.chmod(0o755)
    for p in state.iterdir():
        p.chmod(0o644)
    assert a.sync_once().converged
    assert _mode(state) == 0o700
    assert all(_mode(p) == 0o600 for p in state.iterdir()), [
        (p.name, oct(_mode(p))) for p in state.iterdir()
    ]
