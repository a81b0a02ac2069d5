"""Helpers for crash-consistency tests: kill a server process hard, inspect its
data directory while it is down or running (read-only), and run `linesync check`."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.server import ServerProc

CHECK_TIMEOUT = 120.0


def hard_kill(srv: ServerProc, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the server and reap it; let the log-draining thread reach
    EOF before `ServerProc.kill` closes the pipe under it (no thread exceptions)."""
    proc = srv.proc
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    for t in threading.enumerate():
        if t.name.endswith("(drain)") and t is not threading.current_thread():
            t.join(timeout=5)
    srv.kill()


@dataclass(frozen=True)
class CheckResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.stdout.strip().splitlines()[-1:] == ["ok"]

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def run_check(data: Path) -> CheckResult:
    """`linesync check --data DIR`: exit 0 and "ok" when the data is consistent."""
    out = subprocess.run(
        [sys.executable, "-m", "linesync", "check", "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT,
    )
    return CheckResult(out.returncode, out.stdout, out.stderr)


@contextlib.contextmanager
def read_meta(data: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the server's metadata database."""
    db = sqlite3.connect(f"file:{data / 'meta.sqlite3'}?mode=ro", uri=True, timeout=30)
    try:
        yield db
    finally:
        db.close()


def journal(data: Path, ns: int) -> tuple[int, list[int]]:
    """(head, every jid of the namespace in order), read straight from SQLite."""
    with read_meta(data) as db:
        db.execute("BEGIN")
        (head,) = db.execute("SELECT head FROM namespaces WHERE id=?", (ns,)).fetchone()
        jids = [
            r[0] for r in db.execute("SELECT jid FROM entries WHERE ns_id=? ORDER BY jid", (ns,))
        ]
        db.execute("COMMIT")
    return head, jids


def chunk_packs(data: Path, ids: list[bytes]) -> dict[bytes, str]:
    """The pack each of these chunks is indexed in (chunks not indexed are left out)."""
    out: dict[bytes, str] = {}
    with read_meta(data) as db:
        for i in range(0, len(ids), 500):
            batch = ids[i : i + 500]
            q = f"SELECT id, pack FROM chunks WHERE id IN ({','.join('?' * len(batch))})"
            out.update((bytes(r[0]), str(r[1])) for r in db.execute(q, batch))
    return out


def pack_files(data: Path) -> dict[str, Path]:
    """Pack name -> file, for every pack on disk."""
    root = data / "packs"
    if not root.is_dir():
        return {}
    return {p.name.removesuffix(".pack"): p for p in sorted(root.glob("*/*.pack"))}


def pack_seq(name: str) -> int:
    return int(name.split("-")[1], 16)


def last_pack(data: Path) -> tuple[str, Path]:
    packs = pack_files(data)
    assert packs, f"no pack files under {data}"
    name = max(packs, key=pack_seq)
    return name, packs[name]
