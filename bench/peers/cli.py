"""Command line of the peers benchmark."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

from . import corpus, report
from .procs import stop_all
from .runner import Bench, Options, log, tool_classes

REPO = Path(__file__).resolve().parents[2]
ALL_TOOLS = ["linesync", "rsync", "unison", "syncthing"]
SCENARIOS = [
    corpus.INITIAL,
    corpus.NOOP,
    *(c.key for c in corpus.CHANGES),
    "latency",
    "idle",
    "big-file",
    "slow",
    "scale",
]

METHOD = [
    "All traffic is on 127.0.0.1. Every connection crosses a byte-counting TCP proxy "
    "(bench/peers/proxy.py); bytes are TCP payload each way (every protocol header, TLS included; "
    "not TCP/IP headers). linesync: two hops (A → server, server → B), both counted; rsync, Unison "
    'and Syncthing: one hop. "Up" is A → B (for linesync: both clients → server).',
    "Time: one-shot tools (rsync, Unison, linesync one-shot: `linesync sync A` then "
    "`linesync sync B`) — the wall time of the sync commands, process start included; B is then "
    "checked against A by BLAKE3 of every file. Watching tools (linesync `sync --watch` on both "
    "folders, Syncthing) — from the change until B's changed paths match A's (polled every 20 ms), "
    "then the whole tree is checked; their initial sync is timed from starting the watchers "
    "(Syncthing: starting A, B already running) until the whole tree matches (polled every "
    "100 ms, less often for big trees). Tool state (.linesync, .stfolder) is ignored.",
    "CPU: user+system seconds of every process involved — one-shot commands by wait4 rusage, "
    "servers/daemons/watchers by psutil over their process trees (reaped children included) — "
    "from before the change until B matched and traffic stopped for 1 s.",
    'Watchers, "nothing changed": bytes and CPU over 5 s with no change. linesync\'s watch rows '
    "include the long-polls the change completes and re-arms (its background traffic with "
    'nothing changing is the "nothing changed" row). Idle: CPU and peak RSS of every '
    "long-running process over the idle window, after all scenarios, every tool's processes "
    "measured in the same window; CPU times count in 10 ms ticks (30 s resolves 0.03% of a core).",
    "Corpus files carry fixed modification times in the past (Unison 2.52 missed a same-size "
    "in-place overwrite of a file written a moment before its previous sync). Each run starts "
    "from a fresh copy of the corpus and fresh tool state; tables show the median of the runs. "
    "The 200 MB file (random, incompressible) is added after the idle window, last run only.",
    "rsync: `rsync --daemon` (use chroot = false) and `rsync -a --delete A/ rsync://…/mod/` "
    "(no -z, no --fuzzy: a rename sends the file again). Unison 2.52: `unison -socket PORT` and "
    "`unison A socket://…//B -batch -auto -times -perms 0 -confirmbigdel=false`; archives persist "
    "in a private UNISON dir; its `-times` did not carry an mtime-only change to B (the row says "
    "so). Syncthing compresses metadata only (its default). linesync: `linesync serve --rate "
    "100000` (no request-rate limit); in watch mode a deletion is sent once none arrived for 2 s "
    "(the mass-delete rail), which sets the delete scenario's time.",
]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny corpus, one run, 10 s idle, no scale or slow sections unless asked",
    )
    p.add_argument("--runs", type=int, help="runs per tool (median); default 3, 1 with --quick")
    p.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    p.add_argument(
        "--tools", default=",".join(ALL_TOOLS), help="comma-separated: " + ",".join(ALL_TOOLS)
    )
    p.add_argument(
        "--scale",
        type=int,
        help="files in the scale section (default 100000; 0: none; with --quick none unless given)",
    )
    p.add_argument(
        "--slow", action="store_true", help="also the shaped-link section (RTT+40 ms, 50 Mbit/s)"
    )
    p.add_argument(
        "--idle", type=float, help="seconds of the idle measurement (default 30, 10 with --quick)"
    )
    p.add_argument("--trials", type=int, help="watch-latency trials (default 20, 5 with --quick)")
    p.add_argument("--out", type=Path, help="markdown file whose bench-peers section is written")
    p.add_argument(
        "--json", type=Path, help="raw results (default: bench/results.json next to --out)"
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary folders (debugging)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    bad = [t for t in tools if t not in ALL_TOOLS]
    only = {s.strip() for s in args.only.split(",") if s.strip()} if args.only else None
    bad_sc = sorted((only or set()) - set(SCENARIOS))
    if bad or bad_sc:
        print(f"unknown tools {bad} / scenarios {bad_sc}", file=sys.stderr)
        return 2
    scale = args.scale if args.scale is not None else (0 if args.quick else 100_000)
    opts = Options(
        quick=args.quick,
        runs=args.runs or (1 if args.quick else 3),
        only=only,
        tools=tools,
        scale=scale,
        slow=args.slow,
        idle=args.idle if args.idle is not None else (10.0 if args.quick else 30.0),
        latency_trials=args.trials or (5 if args.quick else 20),
        big=not args.quick,
        keep=args.keep,
    )
    classes, missing = tool_classes(tools)
    for label, why in missing.items():
        log(f"not run: {label} ({why})")
    if any(label.startswith("linesync") for label in missing):
        raise SystemExit("linesync itself cannot run here: " + "; ".join(missing.values()))
    tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    bench = Bench(opts, tmp, classes)
    git_start = report.git_describe(REPO)  # others may commit to src/ while this runs
    t0 = time.monotonic()
    loads = [os.getloadavg()[0]]
    sampling = threading.Event()

    def sample_load() -> None:
        while not sampling.wait(30):
            loads.append(os.getloadavg()[0])

    threading.Thread(target=sample_load, daemon=True).start()
    try:
        bench.run()
    except KeyboardInterrupt:
        log("interrupted: reporting what was measured")
    finally:
        sampling.set()
        stop_all()
        bench.close()
        if not opts.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"done in {time.monotonic() - t0:.0f} s")

    spec = bench.spec
    versions: dict[str, str] = {}
    for cls in classes:
        m = re.search(r"v?\d+\.\d+[\w.\-]*", cls.version())
        versions[cls.label.split(" ")[0]] = m.group(0) if m else "unknown"
    if "linesync" in versions:
        git_end = report.git_describe(REPO)
        versions["linesync"] += f" ({git_end}" + (
            f"; {git_start} when the run began)" if git_start != git_end else ")"
        )
    cmd = "python -m bench.peers" + (
        "".join(" " + shlex.quote(a) for a in sys.argv[1:])
        if argv is None
        else "".join(" " + shlex.quote(a) for a in argv)
    )
    meta = {
        "date": report.now(),
        "command": cmd,
        "runs": opts.runs,
        "idle_s": opts.idle,
        "scale": opts.scale,
        "quick": opts.quick,
        "machine": report.machine(),
        "versions": versions,
        "corpus": spec.describe(),
        "method": METHOD,
        "elapsed_s": time.monotonic() - t0,
        "load": f"{loads[0]:.1f} at the start, at most {max(loads):.1f} during the run "
        "(other work on the machine slows every tool)",
    }
    labels = [c.label for c in classes]
    rep = report.Report(bench.rows, labels, missing, bench.notes, corpus.titles(spec), meta)
    print(rep.stdout_text())
    if args.out:
        out: Path = args.out
        chart_dir = out.parent / "bench"
        charts = rep.charts(chart_dir)
        report.update_doc(out, rep.markdown(charts, "bench"))
        report.write_json(args.json or chart_dir / "results.json", rep.json())
        log(f"wrote {out}, {chart_dir}/")
    elif args.json:
        report.write_json(args.json, rep.json())
    return 0
