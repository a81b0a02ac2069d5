"""How long a saved edit takes to appear in another folder when both run
`linesync sync --watch` (watcher + long-poll). Run: `.venv/bin/python bench/watch_latency.py`."""

from __future__ import annotations

import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import corpus  # noqa: E402
from tests.support.server import ServerProc  # noqa: E402

from linesync.client.api import Client  # noqa: E402

TRIALS = 20


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="linesync-latency-"))
    srv = ServerProc(tmp / "server").start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        a = Client.init(tmp / "A", server=srv.url, token=srv.new_token("admin", "a"))
        b = Client.init(tmp / "B", server=srv.url, token=srv.new_token("admin", "b"))
        big = corpus.markdown(1_000_000)
        (a.folder / "notes.md").write_bytes(big)
        a.sync_once()
        b.sync_once()
        for folder in (a.folder, b.folder):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "linesync", "sync", str(folder), "--watch", "-q"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(1.5)
        lat = []
        for i in range(TRIALS):
            content = corpus.edit_middle_line(big, f"edit number {i}".encode())
            t0 = time.monotonic()
            (a.folder / "notes.md").write_bytes(content)
            while (b.folder / "notes.md").read_bytes() != content:
                if time.monotonic() - t0 > 30:
                    raise SystemExit(f"trial {i}: the edit did not arrive in 30 s")
                time.sleep(0.005)
            lat.append(time.monotonic() - t0)
            time.sleep(0.3)
        lat.sort()
        p50, p95 = statistics.median(lat), lat[int(0.95 * (len(lat) - 1))]
        print(
            f"edit of a 1 MB file, A -> B, {TRIALS} trials: p50 {p50 * 1000:.0f} ms, "
            f"p95 {p95 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms"
        )
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=20)
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
