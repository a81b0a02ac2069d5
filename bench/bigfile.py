"""A big file through linesync: A uploads it, B downloads it; the time and the
peak RSS of each client process and of the server, for the streaming
client (files of 16 MiB and up never held whole in memory).

    python -m bench.bigfile --mb 1024 [--text]
    python -m bench.bigfile --mb 200 --streaming [--runs 3]

Random bytes by default (binary, FastCDC chunks); ``--text`` makes a log-like
text file instead (line chunks, 2 KiB on average). ``--streaming``: B runs
``sync --watch`` (with and without ``--no-stream``, runs interleaved) while A
uploads a new file; the time from A's start until the file is in B's folder.
``--slow``: each client on its own shaped link (50 Mbit/s each way, RTT +40
ms), as devices at two homes are. Uses 127.0.0.1 only.
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

from bench.peers.proxy import ProxyHub, Shape
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


def streaming(root: Path, srv: ServerProc, a: Path, b: Path, mb: int, text: bool, runs: int
              ) -> dict[str, list[dict[str, float]]]:  # fmt: skip
    """A uploads a new file (one-shot sync) while B watches: A's time, and the
    time until the file is in B's folder, with B streaming and without."""
    out: dict[str, list[dict[str, float]]] = {"stream": [], "no-stream": []}
    for n in range(runs * 2):
        mode = "stream" if n % 2 == 0 else "no-stream"
        flags = [] if mode == "stream" else ["--no-stream"]
        watch = subprocess.Popen([sys.executable, "-m", "linesync", "sync", "--watch", "-q",
                                  str(b), *flags], stdout=subprocess.DEVNULL)  # fmt: skip
        try:
            time.sleep(3)  # its first round: nothing to do
            name = f"big-{n}.bin"
            make(root / name, mb, text, seed=100 + n)
            (root / name).rename(a / name)
            size = (a / name).stat().st_size
            start = time.monotonic()
            up = sync(a)[0]
            target = b / name
            for _ in range(3000):  # the file appears whole (renamed into place)
                if target.exists() and target.stat().st_size == size:
                    break
                time.sleep(0.02)
            else:
                raise SystemExit(f"{name} did not reach B")
            arrived = time.monotonic() - start
            if (a / name).read_bytes() != target.read_bytes():
                raise SystemExit("B's copy differs from A's")
            out[mode].append({"up_s": up, "arrived_s": arrived})
            print(mode, f"A's upload {up:.2f} s, in B's folder after {arrived:.2f} s", flush=True)
        finally:
            watch.terminate()
            watch.wait(30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=1024, help="file size in MiB (default 1024)")
    ap.add_argument("--text", action="store_true", help="a text file instead of random bytes")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--streaming", action="store_true",
                    help="B watches while A uploads: with and without streaming")  # fmt: skip
    ap.add_argument("--runs", type=int, default=3, help="--streaming runs of each mode")
    ap.add_argument("--slow", action="store_true", help="each client on a 50 Mbit/s link")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="linesync-big-") as tmp:
        root = Path(tmp)
        srv = ServerProc(root / "data").start()
        hub = ProxyHub()
        try:
            a, b = root / "a", root / "b"
            port = int(srv.url.rsplit(":", 1)[1])
            for folder, device in ((a, "a"), (b, "b")):
                folder.mkdir()
                token = srv.new_token("bench", device)
                url = srv.url
                if args.slow:
                    url = f"http://127.0.0.1:{hub.proxy(port, Shape.slow()).port}"
                subprocess.run([sys.executable, "-m", "linesync", "init", str(folder),
                                "--server", url, "--token", token], check=True,
                               capture_output=True)  # fmt: skip
            if args.streaming:
                result = streaming(root, srv, a, b, args.mb, args.text, args.runs)
                print(json.dumps(result, indent=1))
                if args.json:
                    args.json.write_text(json.dumps(result))
                return
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
            hub.close()
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
