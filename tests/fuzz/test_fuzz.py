"""The fuzz targets in ``make test``: the corpus replayed, a bounded atheris run
of each target, and the regressions the fuzzers found.

A bounded run is ``python -m tests.fuzz TARGET -runs=N -seed=1`` in a
subprocess (PYTHONHASHSEED=0, so a run replays the same way on the same
code), capped at ``MAX_SECONDS`` of fuzzing in case the machine is slow; it
must end without a crash. Long runs: ``make fuzz TIME=600``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from linesync.core import paths
from tests.fuzz.__main__ import CORPUS, MAX_LEN
from tests.fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
# About five seconds of fuzzing per target on a quiet machine (startup aside).
RUNS = {"frames": 15_000, "commit": 10_000, "paths": 10_000}
MAX_SECONDS = 6
SEED = 1


def test_every_target_has_a_seed_corpus() -> None:
    assert set(TARGETS) == set(MAX_LEN) == set(RUNS)
    for target in TARGETS:
        assert len(list((CORPUS / target).glob("seed-*"))) >= 10, target


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_corpus_replays_cleanly(target: str) -> None:
    """Every seed and every input that once crashed runs clean (no atheris)."""
    for f in sorted((CORPUS / target).iterdir()):
        TARGETS[target](f.read_bytes())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_bounded_fuzzing_run_finds_no_crash(target: str, tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "tests.fuzz", target, f"-runs={RUNS[target]}", f"-seed={SEED}",
        f"-max_total_time={MAX_SECONDS}", "--out", str(tmp_path),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONHASHSEED="0")
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    bad = ("crash-", "timeout-", "oom-")
    found = [p.name for p in tmp_path.iterdir() if p.name.startswith(bad)]
    log = out.stdout[-2000:] + out.stderr[-6000:]
    assert out.returncode == 0 and not found, f"{target}: {found} (exit {out.returncode})\n{log}"
    done = re.search(r"Done (\d+) runs", out.stderr)
    cov = re.search(r"INITED cov: (\d+)", out.stderr)
    assert done and int(done.group(1)) > 0, log
    assert cov and int(cov.group(1)) > 20, f"{target}: is the code instrumented?\n{log}"


# -- regressions -----------------------------------------------------------------


def test_a_long_run_of_combining_marks_is_refused_before_normalizing() -> None:
    """Normalizing 16,383 marks in the worst order took about a second of CPU
    (quadratic), for a 32 KB path any writer could send, once per request."""
    worst = "a" + "\u0301\u0316" * 8191  # a commit's path may have 16,384 characters
    start = time.process_time()
    with pytest.raises(paths.PathError, match="combining marks"):
        paths.normalize(worst)
    assert time.process_time() - start < 0.05
    assert paths.is_valid(paths.normalize("a" + "\u0301" * paths.MAX_MARKS))
    for mark in ("\u0301", "\u0f73"):  # U+0F73 is made of two marks
        with pytest.raises(paths.PathError, match="combining marks"):
            paths.normalize("a" + mark * (paths.MAX_MARKS + 1))


def test_rebase_refuses_to_make_a_path_past_the_limit() -> None:
    """A folder move could give its contents paths longer than 4096 bytes: the
    server wrote such entries (found by the commit and paths targets)."""
    deep = "p/" + "/".join(["p" * 250] * 16)
    assert paths.is_valid(deep)
    assert paths.rebase(deep, "p", "q" * 80) == "q" * 80 + deep[1:]
    with pytest.raises(paths.PathError, match="longer than 4096"):
        paths.rebase(deep, "p", "q" * 81)
