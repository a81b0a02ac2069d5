"""The whole-system simulation with power cuts (tests/sim/power.py): every
machine's disk on a LazyFS that forgets what was not fsynced.

`make test` runs LINESYNC_POWER_SEEDS seeds (30 unless set); `make soak
SIM_ARGS=--power SEEDS=N` runs as many as asked, outside pytest. Where FUSE
cannot mount these tests skip and say why; under CI they fail instead.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from linesync.client.localfs import LocalFS
from linesync.server.stores import packs
from linesync.server.stores.sqlite import SqliteStore
from tests.sim.world import SimFailure, run_seed

SEEDS = int(os.environ.get("LINESYNC_POWER_SEEDS", "30"))
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("seed", range(SEEDS))
def test_power_seed(seed: int, power_where: Path) -> None:
    run_seed(seed, power_where, power=True)  # raises SimFailure, naming the seed and its replay


def test_a_power_seed_replays_exactly_in_another_process(power_where: Path) -> None:
    """Same seed, in this process and in another one with another string-hash
    seed: the same trace, power cuts and boots included."""
    for seed in range(1, 6):  # the first seed that cuts the power twice or more
        world = run_seed(seed, power_where / str(seed), power=True)
        if world.cuts["cuts"] >= 2:  # type: ignore[attr-defined]
            break
    else:
        raise AssertionError("no seed of five cut the power twice")
    out = subprocess.run(
        [sys.executable, "-m", "tests.sim", "--power", "--seed", str(seed)],
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "7"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    m = re.search(r"digest ([0-9a-f]+)", out)
    assert m is not None, out
    assert world.digest().startswith(m[1])


def test_the_power_seeds_cut_every_kind(power_where: Path) -> None:
    """The mix is wide: within a few seeds the power goes on a client, on the
    server before a disk call and after an answer, and everywhere at once; and
    each machine boots again."""
    marks = {
        "a client": re.compile(r"power cut: c\d, at"),
        "everything": re.compile(r"power cut: everything, at"),
        "server mid-request": re.compile(r"power cut: the server, before"),
        "server after answering": re.compile(r"power cut: the server, after answering"),
        "a client boots": re.compile(r"c\d boots after a power cut"),
        "the server boots": re.compile(r"server boots after a power cut"),
    }
    seen: set[str] = set()
    for seed in range(15):
        text = "\n".join(run_seed(seed, power_where / str(seed), power=True).trace)
        seen |= {name for name, mark in marks.items() if mark.search(text)}
        if seen == set(marks):
            break
    assert seen == set(marks), set(marks) - seen


# -- the model can fail: each fsync linesync needs, removed, is caught -----------------


@contextmanager
def _files_not_fsynced() -> Iterator[None]:
    """os.fsync that does nothing for a file (a directory is still fsynced)."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            real(fd)

    os.fsync = fsync
    try:
        yield
    finally:
        os.fsync = real


def _without_file_fsync(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with _files_not_fsynced():
            return fn(*args, **kwargs)

    return wrapped


def _first_failure(where: Path, seeds: int) -> str:
    for seed in range(seeds):
        try:
            run_seed(seed, where / str(seed), power=True)
        except SimFailure as exc:
            return str(exc)
    raise AssertionError(f"none of {seeds} seeds noticed")


def test_a_download_written_without_fsync_is_caught(
    power_where: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`LocalFS.write_file` without the fsync of its temporary file: after a
    cut a downloaded file is renamed into place but empty, and the index had
    recorded its bytes."""
    monkeypatch.setattr(LocalFS, "write_file", _without_file_fsync(LocalFS.write_file))
    monkeypatch.setattr(LocalFS, "sync_files", _without_file_fsync(LocalFS.sync_files))
    failure = _first_failure(power_where, 15)
    assert re.search(r"the index relied on a file .*\(partial or lost\)", failure)


def test_a_group_of_downloads_put_in_place_before_their_fsyncs_is_caught(
    power_where: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`LocalFS.sync_files` (a group's downloads made durable before they are
    renamed into place) doing nothing: the cut finds empty files where the
    index recorded bytes."""
    monkeypatch.setattr(LocalFS, "sync_files", lambda self, tmps: None)
    failure = _first_failure(power_where, 15)
    assert re.search(r"the index relied on a file .*\(partial or lost\)", failure)


def test_a_rename_without_fsync_of_its_folder_is_caught(
    power_where: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`LocalFS` without its fsyncs of folders: a name it created, moved or
    removed comes back as it was after a cut, which the index does not know."""
    monkeypatch.setattr(LocalFS, "_fsync_dir", staticmethod(lambda path: None))
    assert re.search(r"the index relied on .*\(partial or lost\)", _first_failure(power_where, 15))


def test_a_pack_append_without_fsync_is_caught(
    power_where: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pack writer without its fsync: the index names chunks whose bytes a
    server power cut took away."""
    store = packs.DiskPackStore
    monkeypatch.setattr(store, "_append_sync", _without_file_fsync(store._append_sync))
    monkeypatch.setattr(store, "_create_pack", _without_file_fsync(store._create_pack))
    assert re.search(
        r"server's data is inconsistent: .*(unreadable|not stored)",
        _first_failure(power_where, 15),
    )


def test_a_commit_without_fsync_is_caught(
    power_where: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's journal commits with synchronous=OFF (its set-up still
    fsynced): entries it acknowledged are gone after a cut, or, when a torn
    cut kept a checkpoint's deletion of the WAL but not the database pages it
    wrote unsynced, the whole namespace is."""
    commit = SqliteStore.commit

    async def unsynced(self: SqliteStore, *args: Any) -> Any:
        self.db.execute("PRAGMA synchronous=OFF")
        return await commit(self, *args)

    monkeypatch.setattr(SqliteStore, "commit", unsynced)
    failures: list[str] = []
    for seed in range(20):  # until one says which entries it lost
        try:
            run_seed(seed, power_where / str(seed), power=True)
        except SimFailure as exc:
            failures.append(str(exc))
            if re.search(r"lost \d+ acknowledged entries", str(exc)):
                break
    assert failures and re.search(r"lost \d+ acknowledged entries", failures[-1]), failures
    assert all(re.search(r"acknowledged entries|namespace \d+ is gone", f) for f in failures)


def test_a_scan_that_leaves_temporary_files_is_caught(
    power_where: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the scan's removal of our temporary files, one that a power cut
    or a crash left (half written, its name made durable) is still there after
    the next sync, or at the end."""
    monkeypatch.setattr(LocalFS, "remove_stale", lambda self, disk: None)
    failure = _first_failure(power_where, 20)
    assert re.search(
        r"temporary files a power cut left are still there|temporary files left behind", failure
    )
