"""Progress bars: off where stderr is not a terminal (no escape codes in the
output), on through a pseudo-terminal, forced with --progress and refused
with --no-progress; nothing for a small sync; bytes and files both ways."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from linesync.client.api import Client
from linesync.client.progress import THRESHOLD_BYTES, Bars, console_for
from tests.client.conftest import files
from tests.support import corpus
from tests.support.server import ServerProc
from tests.support.watch import interrupt

ESC = "\x1b["


def _linesync(*args: str, stderr: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linesync", *args], capture_output=stderr is None,
        stderr=stderr, stdout=subprocess.PIPE if stderr is not None else None,
        text=True, timeout=120, env=dict(os.environ, COLUMNS="100"),
    )  # fmt: skip


def _fill(folder: Path, n: int = 101, size: int = 20_000) -> int:
    (folder / "data").mkdir()
    for i in range(n):
        (folder / "data" / f"f{i:03}.bin").write_bytes(corpus.random_bytes(size, seed=i))
    return n * size


def test_bars_draw_bytes_and_files_past_the_threshold() -> None:
    buf = io.StringIO()
    bars = Bars(Console(file=buf, force_terminal=True, width=120))
    bars("download", 10, 1000)  # small: nothing yet
    bars("download files", 1, 3)
    assert buf.getvalue() == ""
    bars("download", 1000, 2 * THRESHOLD_BYTES)
    bars("download files", 2, 150)
    bars("upload files", 4, 5)
    bars.close()
    bars("download files", 3, 150)  # after close: ignored
    out = buf.getvalue()
    assert ESC in out and "down" in out and "up" in out
    assert "2/150 files" in out and "8.4 MB" in out and "4/5 files" in out
    assert "3/150" not in out


def test_console_for_follows_the_terminal_unless_forced() -> None:
    assert console_for(False) is None
    forced = console_for(True)
    assert forced is not None and forced.is_terminal
    # Under pytest stderr is no terminal: by default, no bars.
    if not sys.stderr.isatty():
        assert console_for(None) is None


def test_cli_progress_off_without_a_terminal_forced_with_flag(
    server: ServerProc, tmp_path: Path
) -> None:
    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "a"))
    size = _fill(a.folder)
    assert size < THRESHOLD_BYTES  # (past the threshold by its 101 files)
    done = _linesync("sync", str(a.folder))  # stderr a pipe: no bars, no escape codes
    assert done.returncode == 0, done.stderr
    assert ESC not in done.stdout + done.stderr and "101 uploaded" in done.stdout
    for device, flag in (("b", "--no-progress"), ("c", "--progress")):
        c = Client.init(tmp_path / device, server=server.url,
                        token=server.new_token("admin", device))  # fmt: skip
        done = _linesync("sync", str(c.folder), flag)
        assert done.returncode == 0, done.stderr
        assert files(c.folder) == files(a.folder)
        if flag == "--no-progress":
            assert ESC not in done.stdout + done.stderr
        else:
            assert ESC in done.stderr and "101/101 files" in done.stderr
            assert "2.0 MB of 2.0 MB" in done.stderr
            assert ESC not in done.stdout  # bars go to stderr only


def _through_pty(args: list[str], deadline: float = 120.0) -> tuple[int, str]:
    """Run linesync with stderr on a pseudo-terminal; its exit code and what the
    terminal showed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "linesync", *args], stdout=subprocess.DEVNULL, stderr=slave,
        env=dict(os.environ, COLUMNS="100", TERM="xterm"),
    )  # fmt: skip
    os.close(slave)
    seen = b""
    end = time.monotonic() + deadline
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the other side closed
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(end - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, seen.decode(errors="replace")


def test_a_terminal_gets_bars_for_a_big_sync_and_none_for_a_small_one(
    server: ServerProc, tmp_path: Path
) -> None:
    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "a"))
    _fill(a.folder)
    assert a.sync_once().converged
    b = Client.init(tmp_path / "B", server=server.url, token=server.new_token("admin", "b"))
    code, shown = _through_pty(["sync", str(b.folder)])
    assert code == 0 and files(b.folder) == files(a.folder)
    assert ESC in shown and "101/101 files" in shown
    (a.folder / "small.txt").write_text("one line\n")
    assert a.sync_once().converged
    code, shown = _through_pty(["sync", str(b.folder)])
    assert code == 0 and (b.folder / "small.txt").exists()
    assert "files" not in shown  # a small sync: no bars
    code, shown = _through_pty(["sync", str(b.folder), "--no-progress"])
    assert code == 0 and ESC not in shown


def test_watch_draws_bars_for_its_first_pass_only(server: ServerProc, tmp_path: Path) -> None:
    import threading

    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "a"))
    _fill(a.folder)
    assert a.sync_once().converged
    b = Client.init(tmp_path / "B", server=server.url, token=server.new_token("admin", "b"))
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "linesync", "sync", "--watch", str(b.folder)],
        stdout=subprocess.DEVNULL, stderr=slave, env=dict(os.environ, COLUMNS="100", TERM="xterm"),
    )  # fmt: skip
    os.close(slave)
    seen = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def wait_for(check: object, what: str, seconds: float = 60.0) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if check():  # type: ignore[operator]
                return
            assert proc.poll() is None, seen.decode(errors="replace")
            time.sleep(0.2)
        raise AssertionError(f"{what}: {seen.decode(errors='replace')[-2000:]}")

    try:
        wait_for(lambda: b"101/101 files" in seen, "the first pass's bars")
        wait_for(lambda: files(b.folder) == files(a.folder), "the first pass")
        wait_for(lambda: b"\x1b[?25h" in seen, "the bars' end (the cursor shown again)")
        mark = len(seen)
        (a.folder / "more").mkdir()
        for i in range(101):  # as big again: the steady state stays quiet
            (a.folder / "more" / f"g{i:03}.bin").write_bytes(
                corpus.random_bytes(20_000, seed=900 + i)
            )
        assert a.sync_once().converged
        wait_for(lambda: files(b.folder) == files(a.folder), "the second batch")
        time.sleep(0.5)
        assert b"files" not in seen[mark:], seen[mark:].decode(errors="replace")
    finally:
        try:
            interrupt(proc)
        finally:
            os.close(master)
            reader.join(timeout=5)
    assert proc.returncode == 0
