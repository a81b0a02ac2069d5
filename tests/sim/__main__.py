"""Run the whole-system simulation from the command line.

python -m tests.sim --seeds 2000            # seeds 0..1999
python -m tests.sim --seed 1234 --trace     # replay one seed, print its trace
python -m tests.sim --power --seeds 200     # with power cuts (needs FUSE: tests/sim/power.py)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.sim.world import SimFailure, run_seed, sim_root


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, help="run this one seed")
    ap.add_argument("--seeds", type=int, default=100, help="how many seeds (default 100)")
    ap.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--steps", type=int, help="steps per seed (default: drawn, 20-45)")
    ap.add_argument("--clients", type=int, help="clients per seed (default: drawn, 2-3)")
    ap.add_argument("--trace", action="store_true", help="print the trace of each seed")
    ap.add_argument(
        "--power", action="store_true", help="disks on LazyFS that lose power (tests/sim/power.py)"
    )
    args = ap.parse_args()
    if args.power:
        from tests.support.lazyfs import available, unmount_under

        why = available()
        if why is not None:
            print(f"cannot run with --power: {why}")
            return 2
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    failed: list[int] = []
    cuts: Counter[str] = Counter()
    started = time.monotonic()
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix=f"linesync-sim-{seed}-", dir=sim_root()) as d:
            try:
                world = run_seed(
                    seed, Path(d), steps=args.steps, clients=args.clients, power=args.power
                )
            except SimFailure as exc:
                failed.append(seed)
                if args.trace and exc.world is not None:
                    print("\n".join(exc.world.trace))
                print(f"FAIL {exc}", flush=True)
                continue
            finally:
                if args.power:  # nothing stays mounted in a folder about to go
                    unmount_under(Path(d))
        if args.trace:
            print("\n".join(world.trace))
        said = ""
        if world.power:
            cuts.update(world.cuts)  # type: ignore[attr-defined]
            said = f", {world.cuts['cuts']} power cuts"  # type: ignore[attr-defined]
        print(f"ok   seed {seed}: {world.steps} steps, {len(world.trace)} events{said}, "
              f"digest {world.digest()[:16]}", flush=True)  # fmt: skip
    took = time.monotonic() - started
    print(f"{len(seeds) - len(failed)}/{len(seeds)} seeds passed in {took:.1f} s")
    if cuts:
        print(
            f"power cuts: {cuts['cuts']} (disks cut: {cuts['client']} of clients, "
            f"{cuts['server']} of the server, {cuts['torn']} of them torn; "
            f"{cuts['everything']} times everything at once)"
        )
    if failed:
        print("failed seeds: " + " ".join(map(str, failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
