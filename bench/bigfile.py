"""A big file through linesync: A uploads it, B downloads it; the time and the
peak RSS of each client process and of the server, for the streaming
client (files of 16 MiB and up never held whole in memory).

    python -m bench.bigfile --mb 1024 [--text]

Random bytes by default (binary, FastCDC chunks); ``--text`` makes a log-like
text file instead (line chunks, 2 KiB on average). Uses 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.resources import peak_rss, reset_peak_rss
from tests.support.server import ServerProc

MiB = 2**20


def make(path: Path, mb: int, text: bool, seed: int = 1) -> None:
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        for i in range(mb):
            if text:
                line = b"%08d 2026-12-05T08:00:00 GET /api/item/%d 200 %d bytes\n"
                block = b"".join(line % (i, rnd.randrange(10**6), rnd.randrange(10**5))
                                 for _ in range(MiB // 60))  # fmt: skip
                f.write(block[:MiB])
            else:
                f.write(rnd.randbytes(MiB))


def sync(folder: Path) -> tuple[float, int, float]:
    """``linesync sync`` of the folder: seconds, peak RSS, CPU seconds."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "linesync", "sync", "-q", str(folder)])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"sync of {folder} failed: {proc.returncode}")
    took = time.monotonic() - start
    return took, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=1024, help="file size in MiB (default 1024)")
    ap.add_argument("--text", action="store_true", help="a text file instead of random bytes")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="linesync-big-") as tmp:
        root = Path(tmp)
        srv = ServerProc(root / "data").start()
        try:
            a, b = root / "a", root / "b"
            for folder, device in ((a, "a"), (b, "b")):
                folder.mkdir()
                token = srv.new_token("bench", device)
                subprocess.run([sys.executable, "-m", "linesync", "init", str(folder),
                                "--server", srv.url, "--token", token], check=True,
                               capture_output=True)  # fmt: skip
            make(a / "big.bin", args.mb, args.text)
            assert srv.proc is not None
            pid = srv.proc.pid
            reset_peak_rss(pid)
            up = sync(a)
            server_up = peak_rss(pid)
            reset_peak_rss(pid)
            down = sync(b)
            server_down = peak_rss(pid)
            same = (a / "big.bin").stat().st_size == (b / "big.bin").stat().st_size
            if not same or (a / "big.bin").read_bytes() != (b / "big.bin").read_bytes():
                raise SystemExit("B's copy differs from A's")
        finally:
            srv.stop()
    out = {
        "mb": args.mb, "text": args.text,
        "up_s": up[0], "up_client_rss_mib": up[1] / MiB, "up_cpu_s": up[2],
        "up_server_rss_mib": server_up / MiB,
        "down_s": down[0], "down_client_rss_mib": down[1] / MiB, "down_cpu_s": down[2],
        "down_server_rss_mib": server_down / MiB,
    }  # fmt: skip
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
