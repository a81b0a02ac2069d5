"""`sync --watch`: a saved edit reaches the other folder without anyone
running sync, and the command stops cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from linesync.client.api import Client
from tests.support.server import ServerProc


def _watch(folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "linesync", "sync", str(folder), "--watch", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(path: Path, content: bytes, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if path.read_bytes() == content:
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    return False


def test_watch_carries_edits_both_ways_and_stops_cleanly(
    pair: tuple[Client, Client], server: ServerProc
) -> None:
    a, b = pair
    (a.folder / "notes.md").write_text("first\n")
    a.sync_once()
    b.sync_once()
    wa, wb = _watch(a.folder), _watch(b.folder)
    try:
        time.sleep(1.0)  # both are watching and long-polling
        for i in range(3):
            content = f"edit {i} from A\n".encode()
            (a.folder / "notes.md").write_bytes(content)
            assert _wait_for(b.folder / "notes.md", content, timeout=15), f"edit {i} never arrived"
        (b.folder / "reply.md").write_text("from B\n")
        assert _wait_for(a.folder / "reply.md", b"from B\n", timeout=15)
    finally:
        outs = []
        for proc, sig in ((wa, signal.SIGINT), (wb, signal.SIGTERM)):
            proc.send_signal(sig)
            out, _ = proc.communicate(timeout=20)
            outs.append((proc.returncode, out))
    for code, out in outs:
        assert code == 0, out
        assert "stopped" in out
