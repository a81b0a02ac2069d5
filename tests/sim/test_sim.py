"""The whole-system simulation under pytest: many seeds, each a different mix
of users' actions and faults; a failure names its seed and how to replay it.

`make test` runs LINESYNC_SIM_SEEDS seeds (500 unless set), and
LINESYNC_SIM_PG_SEEDS of them (30) on PostgreSQL; `make soak SEEDS=N` runs
as many as asked, outside pytest.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from linesync.client.localfs import LocalFS
from linesync.client.model import Stat
from tests.sim.world import SimFailure, run_seed, sim_root

SEEDS = int(os.environ.get("LINESYNC_SIM_SEEDS", "500"))
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def where(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = sim_root()
    if base is None:
        return tmp_path_factory.mktemp("sim")
    import tempfile

    return Path(tempfile.mkdtemp(prefix="linesync-sim-", dir=base))


@pytest.fixture(autouse=True)
def _cleanup(where: Path) -> object:
    yield
    import shutil

    shutil.rmtree(where, ignore_errors=True)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_seed(seed: int, where: Path) -> None:
    run_seed(seed, where)  # raises SimFailure, naming the seed and its replay command


PG_SEEDS = int(os.environ.get("LINESYNC_SIM_PG_SEEDS", "30"))


@pytest.mark.parametrize("seed", range(PG_SEEDS))
def test_seed_on_postgres(seed: int, where: Path, pg_url: str) -> None:
    """The same worlds with the server's metadata in PostgreSQL."""
    run_seed(seed, where, db_url=pg_url)


def test_a_seed_replays_exactly(where: Path) -> None:
    first = run_seed(7, where / "one")
    again = run_seed(7, where / "two")
    assert first.trace == again.trace
    assert len(first.trace) > 50


def test_a_seed_replays_exactly_in_another_process() -> None:
    """Same seed, separate processes with different string hashing: the same
    trace (and so the same final trees), event for event."""

    def digest(hash_seed: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "tests.sim", "--seed", "11"],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        m = re.search(r"digest ([0-9a-f]+)", out)
        assert m is not None, out
        return m[1]

    assert digest("1") == digest("2")


def test_the_seeds_exercise_every_fault() -> None:
    """The mix is wide: across a few dozen seeds, every kind of fault happens."""
    import tempfile

    seen: set[str] = set()
    marks = {
        "crash": " crash ",
        "restart": "server restarts",
        "lost answer": "answer lost",
        "refused": ": refused",
        "disk full": "disk full",
        "saved while read": "while it is read",
        "interference": "interference",
        "offline": " offline",
        "conflict copy": "conflict from",
        "merge": "merged=1",
        "mass delete": "mass delete",
    }
    for seed in range(60):
        with tempfile.TemporaryDirectory(dir=sim_root()) as d:
            text = "\n".join(run_seed(seed, Path(d)).trace)
        seen |= {name for name, mark in marks.items() if mark in text}
    assert seen == set(marks), set(marks) - seen


class _TornWrites(LocalFS):
    """A broken disk layer: it writes files in place, not through a temporary
    file, and stops halfway, as a crash mid-write would leave them."""

    def write_file(self, path: str, pieces: object, *, mtime_ns: int, exec: bool,
                   expect: Stat | None, sync_dir: bool = True) -> Stat:  # fmt: skip
        dest = self.disk(path)
        data = b"".join(pieces)  # type: ignore[call-overload]
        with open(dest, "wb") as f:
            f.write(data[: len(data) // 2])
        found = self.lstat(path)
        assert found is not None
        return found[1]

    def write_temp(self, path: str, pieces: object, *, mtime_ns: int, exec: bool) -> Path:
        """A group's download: half its bytes, as if that were all of them."""
        data = b"".join(pieces)  # type: ignore[call-overload]
        w = self.create(path, exec)
        w.write([data[: len(data) // 2]])
        return w.close(mtime_ns, durable=True)


def test_the_simulation_catches_a_partial_file(
    where: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The invariants can fail: with torn in-place writes the simulation
    reports a partial file within a few seeds."""
    monkeypatch.setattr(LocalFS, "write_file", _TornWrites.write_file)
    monkeypatch.setattr(LocalFS, "write_temp", _TornWrites.write_temp)
    with pytest.raises(SimFailure, match=r"seed \d+: .*partial"):
        for seed in range(20):
            run_seed(seed, where / str(seed))


def test_the_simulation_catches_a_merge_that_drops_local_changes(
    where: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge that silently keeps only the server's side loses the user's
    edit: the simulation reports the lost version."""
    from linesync.client import engine

    monkeypatch.setattr(engine, "merge3", lambda base, local, theirs: theirs)
    with pytest.raises(SimFailure, match=r"seed \d+: .*lost"):
        for seed in range(100):
            run_seed(seed, where / str(seed))
