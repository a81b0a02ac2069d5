"""Folder reads on a 40,000-file namespace, straight on the metadata stores:
what a web folder page, a WebDAV PROPFIND, a zip or the conflicts page reads
(``children``, ``under``, ``find``), against reading every current entry of
the namespace a page at a time (what they did before).

    .venv/bin/python -m bench.folders [--rounds N]

The namespace: 40 folders x 10 subfolders x 100 files, plus one flat folder
of 20,000 files. SQLite in a temporary directory; PostgreSQL on a fresh
database of the local server (dropped at the end)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.scale import Cleanup, create_db

from linesync.protocol.schemas import CommitOp, Content, Kind
from linesync.server.commit import Limits
from linesync.server.stores.base import MetadataStore
from linesync.server.stores.common import CONFLICT_MARK
from linesync.server.stores.postgres import PostgresStore
from linesync.server.stores.sqlite import SqliteStore

FLAT = 20_000


def tree_ops() -> list[CommitOp]:
    def f(path: str) -> CommitOp:
        return CommitOp(path=path, kind=Kind.FILE, content=Content(ids=""))

    ops = []
    for t in range(40):
        ops.append(CommitOp(path=f"d{t:02}", kind=Kind.DIRECTORY))
        for s in range(10):
            ops.append(CommitOp(path=f"d{t:02}/s{s}", kind=Kind.DIRECTORY))
            ops += [f(f"d{t:02}/s{s}/f{i:03}.txt") for i in range(100)]
    ops.append(CommitOp(path="flat", kind=Kind.DIRECTORY))
    ops += [f(f"flat/n{i:05}.md") for i in range(FLAT)]
    ops.append(f("d07/s3/f000 (conflict from phone 2026-12-01 101500).txt"))
    return ops


async def scan_all(s: MetadataStore, ns: int) -> int:
    after, n = 0, 0
    while True:
        rows, _ = await s.changes(ns, after, 1000)
        n += len(rows)
        if len(rows) < 1000:
            return n
        after = rows[-1].jid


async def timed(run: Callable[[], Awaitable[object]], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        await run()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


async def bench(name: str, s: MetadataStore, rounds: int) -> list[str]:
    uid = await s.create_user("bench")
    (home,) = await s.namespaces_of(uid)
    ns = home.id
    ops = tree_ops()
    t = time.perf_counter()
    for i in range(0, len(ops), 1000):
        out = await s.commit(ns, ops[i : i + 1000], "bench", Limits())
        assert {r.status for r in out.results} == {"ok"}
    print(f"{name}: {len(ops)} entries written in {time.perf_counter() - t:.1f} s", flush=True)
    cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("every current entry (before)", lambda: scan_all(s, ns)),
        ("children: top (41)", lambda: s.children(ns, "", "", 2001)),
        ("children: d07 (10 folders)", lambda: s.children(ns, "d07", "", 2001)),
        ("children: d07/s3 (101 files)", lambda: s.children(ns, "d07/s3", "", 2001)),
        ("children: flat, first 2,000", lambda: s.children(ns, "flat", "", 2001)),
        ("children: flat, last page", lambda: s.children(ns, "flat", "flat/n18000.md", 2001)),
        ("under: d07 (1,011)", lambda: s.under(ns, "d07", "", 1000)),
        ("find: conflict copies", lambda: s.find(ns, CONFLICT_MARK, "", 501)),
    ]
    return [f"| {name} | {what} | {await timed(run, rounds):.2f} |" for what, run in cases]


async def on_sqlite(rounds: int) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteStore.open(Path(tmp) / "meta.sqlite3")
        try:
            return await bench("SQLite", store, rounds)
        finally:
            await store.close()


async def on_postgres(url: str, rounds: int) -> list[str]:
    store = await PostgresStore.open(url, max_size=4)
    try:
        return await bench("PostgreSQL", store, rounds)
    finally:
        await store.close()


def main(rounds: int) -> None:
    lines = ["| store | read | median ms |", "|---|---|---|"]
    lines += asyncio.run(on_sqlite(rounds))
    cleanup = Cleanup()
    try:
        _, url = create_db(cleanup, "folders")
        lines += asyncio.run(on_postgres(url, rounds))
    finally:
        cleanup.run()
    print("\n".join(lines))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20, help="timed rounds per read (median)")
    main(ap.parse_args().rounds)
