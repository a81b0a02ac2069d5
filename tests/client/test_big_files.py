"""Big files, tried as a user with a 200 MB video and a 40 MB log would: the
client never holds a file of STREAM_MIN bytes or more whole (memory measured on
real `linesync sync` processes and on the server), a line added to a big log
costs a few kilobytes, and a big file that changes while it is sent is never
committed half old, half new."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from linesync.client.api import Client
from linesync.client.bigfiles import STREAM_MIN
from linesync.client.committing import Committing
from tests.support.proxy import ThreadProxy
from tests.support.resources import peak_rss, pid_of, reset_peak_rss
from tests.support.server import ServerProc

MiB = 2**20


def digest(path: Path) -> str:
    h = hashlib.blake2b()
    with open(path, "rb") as f:
        while block := f.read(MiB):
            h.update(block)
    return h.hexdigest()


# ``linesync sync -q FOLDER``, then its peak RSS (VmHWM, of this process's own
# memory: a child's ru_maxrss also counts the parent it was forked from).
_SYNC = """
import sys
from pathlib import Path
from linesync.cli.main import main
code = main(["sync", "-q", sys.argv[1]])
hwm = [l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:")]
print(int(hwm[0].split()[1]) * 1024)
raise SystemExit(code)
"""


def sync_process(folder: Path) -> int:
    """``linesync sync`` of the folder in a process of its own: its peak RSS."""
    out = subprocess.run([sys.executable, "-c", _SYNC, str(folder)], capture_output=True,
                         text=True)  # fmt: skip
    assert out.returncode == 0, f"sync of {folder} failed: {out.stderr[-2000:]}"
    return int(out.stdout.split()[-1])


def log_lines(size: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    lines = (f"{i:09d} GET /items/{rnd.randrange(10**6)} 200 {rnd.randrange(10**5)}\n"
             for i in range(size // 40))  # fmt: skip
    return "".join(lines).encode()


def test_a_200_mb_file_goes_up_and_down_in_bounded_memory(
    server: ServerProc, tmp_path: Path
) -> None:
    a, b = tmp_path / "A", tmp_path / "B"
    Client.init(a, server=server.url, token=server.new_token("admin", "alpha"))
    Client.init(b, server=server.url, token=server.new_token("admin", "beta"))
    with open(a / "video.bin", "wb") as f:
        rnd = random.Random(5)
        for _ in range(200):
            f.write(rnd.randbytes(MiB))
    pid = pid_of(server)
    reset_peak_rss(pid)
    up = sync_process(a)
    down = sync_process(b)
    served = peak_rss(pid)
    assert digest(b / "video.bin") == digest(a / "video.bin")
    print(f"peak RSS: up {up / MiB:.0f} MiB, down {down / MiB:.0f} MiB, server {served / MiB:.0f}")
    # The file is 200 MiB; before streaming each side held it two or three times.
    assert up < 150 * MiB, f"uploading client peaked at {up / MiB:.0f} MiB"
    assert down < 150 * MiB, f"downloading client peaked at {down / MiB:.0f} MiB"
    assert served < 150 * MiB, f"server peaked at {served / MiB:.0f} MiB"


@pytest.fixture
def proxied(server: ServerProc) -> Iterator[ThreadProxy]:
    proxy = ThreadProxy(server.url)
    try:
        yield proxy
    finally:
        proxy.close()


def test_a_line_added_to_a_40_mb_log_costs_a_few_kilobytes(
    server: ServerProc, proxied: ThreadProxy, tmp_path: Path
) -> None:
    a = Client.init(tmp_path / "A", server=proxied.url, token=server.new_token("admin", "alpha"))
    b = Client.init(tmp_path / "B", server=proxied.url, token=server.new_token("admin", "beta"))
    log = log_lines(40 * MiB, seed=2)
    assert len(log) >= STREAM_MIN
    (a.folder / "app.log").write_bytes(log)
    assert a.sync_once().uploaded == 1
    assert b.sync_once().downloaded == 1
    proxied.reset()
    with open(a.folder / "app.log", "ab") as f:
        f.write(b"000000000 GET /items/42 500 0\n")
    with open(a.folder / "app.log", "r+b") as f:  # and one line in the middle
        f.seek(20 * MiB)
        f.write(b"X")
    assert a.sync_once().uploaded == 1
    assert b.sync_once().downloaded == 1
    wire = proxied.reset()
    assert digest(b.folder / "app.log") == digest(a.folder / "app.log")
    assert wire.total < 16_000, wire  # three chunks changed, of 20,000


def test_a_big_file_that_changes_while_it_is_sent_is_not_committed(
    server: ServerProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "alpha"))
    b = Client.init(tmp_path / "B", server=server.url, token=server.new_token("admin", "beta"))
    big = a.folder / "data.bin"
    rnd = random.Random(9)
    big.write_bytes(rnd.randbytes(24 * MiB))
    upload_ahead = Committing._upload_ahead
    edits: list[int] = []

    async def edited_meanwhile(self: Committing, bodies: list[object], on_server: object) -> None:
        if not edits:  # an editor writes in place, during the first upload
            with open(big, "r+b") as f:
                f.seek(12 * MiB)
                f.write(b"\xff" * 4096)
            edits.append(1)
        await upload_ahead(self, bodies, on_server)  # type: ignore[arg-type]

    monkeypatch.setattr(Committing, "_upload_ahead", edited_meanwhile)
    first = a.sync_once()
    assert edits
    assert any("data.bin" in p and "changed" in p for p in first.problems), first.problems
    assert b.sync_once().downloaded == 1  # the next round sent what is there now
    assert digest(b.folder / "data.bin") == digest(big)
    # One version on the server: the half-old, half-new one never was committed.
    out = subprocess.run([sys.executable, "-m", "linesync", "log", str(a.folder), "data.bin"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert len(out.strip().splitlines()) == 1, out
