"""The first scan of a big folder cuts files into chunks in worker processes
(both cores), and records exactly what a scan in one process records; a
worker that dies costs time, not files."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from linesync.client import cutting
from linesync.client.api import Client
from linesync.client.index import Index
from linesync.client.localfs import STATE_DIR
from tests.support.server import ServerProc

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or (os.cpu_count() or 1) < 2, reason="needs fork and 2 cores"
)


def fill(folder: Path, seed: int) -> None:
    """300 text files and 40 binaries in nested folders (about 3 MB)."""
    rnd = random.Random(seed)
    for i in range(300):
        d = folder / f"notes/{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        lines = "".join(
            f"line {n} of note {i}: {rnd.random()}\n" for n in range(rnd.randrange(400))
        )
        (d / f"n{i}.md").write_text(lines)
    for i in range(40):
        (folder / f"b{i}.bin").write_bytes(rnd.randbytes(rnd.randrange(40_000)))


def layout(folder: Path) -> dict[str, tuple[object, ...]]:
    """Each path's local view and recorded chunks, as the index holds them."""
    ix = Index.open(folder / STATE_DIR / "index.sqlite3")
    try:
        out: dict[str, tuple[object, ...]] = {}
        for path, s in ix.states().items():
            node = s.local_node
            assert node is not None
            chash = node.chash
            out[path] = (node.kind, node.size, chash, ix.blocklist(chash) if chash else None,
                         ix.chunk_sizes(chash) if chash else None)  # fmt: skip
        return out
    finally:
        ix.close()


@pytest.fixture
def small_tasks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Workers for any amount and any file, in tasks of a few files, few of
    them held at once: every path of the Cutter is taken. Counts the tasks sent."""
    monkeypatch.setattr(cutting, "POOL_FILE_MIN", 0)
    monkeypatch.setattr("linesync.client.engine.POOL_FILE_MIN", 0)
    monkeypatch.setattr(cutting, "TASK_FILES", 7)
    monkeypatch.setattr(cutting, "HELD_BYTES", 64 * 1024)
    monkeypatch.setattr("linesync.client.engine.POOL_MIN_BYTES", 1)
    sent: list[int] = []
    submit = cutting.Cutter._submit

    def counting(self: cutting.Cutter) -> None:
        if self.batch and self.pool is not None:
            sent.append(len(self.batch))
        submit(self)

    monkeypatch.setattr(cutting.Cutter, "_submit", counting)
    return sent


def scan_of(server: ServerProc, folder: Path, name: str) -> dict[str, tuple[object, ...]]:
    """A first sync of the folder (into a namespace of its own); its index."""
    server.admin("user", "add", name)
    client = Client.init(folder, server=server.url, token=server.new_token(name, name))
    assert client.sync_once().uploaded == 340
    return layout(folder)


def test_workers_record_what_one_process_records(
    server: ServerProc, tmp_path: Path, small_tasks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(tmp_path / "A", 1)
    fill(tmp_path / "B", 1)
    parallel = scan_of(server, tmp_path / "A", "alpha")
    assert sum(small_tasks) == 340 and len(small_tasks) > 40  # every file, in workers
    monkeypatch.setattr("linesync.client.engine.POOL_MIN_BYTES", 10**15)
    small_tasks.clear()
    alone = scan_of(server, tmp_path / "B", "beta")
    assert small_tasks == []
    assert len(parallel) > 340 and parallel == alone


def test_a_worker_that_dies_costs_no_file(
    server: ServerProc, tmp_path: Path, small_tasks: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(tmp_path / "A", 2)
    fill(tmp_path / "B", 2)
    monkeypatch.setattr(cutting.Cutter, "work", staticmethod(die))
    broken = scan_of(server, tmp_path / "A", "alpha")
    assert small_tasks, "no task went to a worker"
    monkeypatch.setattr("linesync.client.engine.POOL_MIN_BYTES", 10**15)
    assert broken == scan_of(server, tmp_path / "B", "beta")


def die(datas: list[bytes]) -> list[object]:
    os._exit(3)


def test_only_big_files_go_to_workers(
    server: ServerProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small file costs a worker about what cutting it costs here: 100,000
    notes went 5% faster in workers, and took 73 MiB more here and 60 MiB
    in the workers. They are cut here; the big ones of the same scan go to
    the workers."""
    monkeypatch.setattr("linesync.client.engine.POOL_MIN_BYTES", 1)
    sizes: list[int] = []
    submit = cutting.Cutter._submit

    def spy(self: cutting.Cutter) -> None:
        if self.pool is not None:
            sizes.extend(len(c.data) for c in self.batch)
        submit(self)

    monkeypatch.setattr(cutting.Cutter, "_submit", spy)
    folder = tmp_path / "A"
    (folder / "notes").mkdir(parents=True)
    (folder / "big").mkdir()
    for i in range(200):
        (folder / f"notes/n{i:03d}.md").write_bytes(b"a small note\n" * (i + 1))
    for i in range(3):
        log = b"".join(b"log line %d\n" % k for k in range(20_000 + i))
        (folder / f"big/b{i}.log").write_bytes(log)
    client = Client.init(folder, server=server.url, token=server.new_token("admin", "a"))
    assert client.sync_once().uploaded == 203
    assert len(sizes) == 3 and min(sizes) >= cutting.POOL_FILE_MIN, sizes
