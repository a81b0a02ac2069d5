"""Two server processes, one PostgreSQL database, one S3 bucket: clients of
either process see one server. Folders converge through different processes,
a long-poll held by one process hears of a commit made through the other
within a second, and two commits of one path through different processes
conflict exactly as they would through one."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

from linesync.client.api import Client
from linesync.client.engine import SyncResult
from linesync.protocol.schemas import Kind
from tests.scenarios.helpers import assert_same_trees, conflict_copies, files, settle, write
from tests.support.api import Remote, file_op, put_file, raw_frames, split
from tests.support.deploy import Deployment
from tests.support.resources import MB, Meter, pid_of
from tests.support.watch import WatchThread, wait_until

LATENCY_LIMIT = 1.0  # seconds from a commit's answer to another process's long-poll answer


def note(i: int, tag: str = "", n: int = 40) -> bytes:
    return "".join(f"{tag}note {i} line {k:02d} with a few words\n" for k in range(n)).encode()


def with_line(data: bytes, k: int, line: str) -> bytes:
    ls = data.decode().splitlines(keepends=True)
    ls[k] = line
    return "".join(ls).encode()


def clients(dep: Deployment, tmp_path: Path, *servers: int) -> list[Client]:
    """One client of the admin's home namespace per server index, a device each."""
    return [
        Client.init(
            tmp_path / f"c{n}-on-{i}",
            server=dep.servers[i].url,
            token=dep.new_token("admin", f"dev{n}"),
        )
        for n, i in enumerate(servers)
    ]


# -- 1. convergence through two processes ---------------------------------------------------


def test_folders_converge_through_two_processes(deployment: Deployment, tmp_path: Path) -> None:
    """A few hundred small files made on both sides, then edits, deletes, a rename,
    a folder move and a merge made on both sides (each side's changes its own,
    but for the merged file), each client syncing through its own process: the
    folders end byte-identical, holding what was made."""
    dep = deployment
    a, b = clients(dep, tmp_path, 0, 1)
    model: dict[str, bytes] = {}

    def put(c: Client, path: str, data: bytes) -> None:
        write(c.folder / path, data)
        model[path] = data

    for i in range(300):
        put(a, f"d{i % 10}/note{i:03d}.md", note(i))
    for i in range(60):
        put(b, f"b{i % 3}/item{i:02d}.txt", note(i, "b "))
    started = time.monotonic()
    with Meter(pid_of(dep.servers[0])) as m0, Meter(pid_of(dep.servers[1])) as m1:
        settle(a, b)
        first = time.monotonic() - started
        t = assert_same_trees(a, b)
        assert files(t) == model

        # Both sides change things (disjoint, but for one file both edit: merged).
        for i in range(0, 40, 2):  # d0, d2, ... edited on A
            p = f"d{i % 10}/note{i:03d}.md"
            put(a, p, with_line(model[p], 3, f"edited on A {i}\n"))
        for i in range(1, 40, 2):  # d1, d3, ... edited on B
            p = f"d{i % 10}/note{i:03d}.md"
            put(b, p, with_line(model[p], 7, f"edited on B {i}\n"))
        for i in range(0, 60, 6):  # b0 items edited on B
            p = f"b0/item{i:02d}.txt"
            put(b, p, model[p] + b"appended on B\n")
        for i in range(2, 300, 10)[:10]:  # deleted on A
            p = f"d2/note{i:03d}.md"
            (a.folder / p).unlink()
            del model[p]
        for i in range(1, 60, 3)[:10]:  # deleted on B
            p = f"b1/item{i:02d}.txt"
            (b.folder / p).unlink()
            del model[p]
        (a.folder / "d3/note053.md").rename(a.folder / "d3/renamed.md")  # a rename on A
        model["d3/renamed.md"] = model.pop("d3/note053.md")
        (b.folder / "moved").mkdir()  # a folder move on B (of files only B edited)
        (b.folder / "d9").rename(b.folder / "moved/d9")
        for p in [p for p in model if p.startswith("d9/")]:
            model["moved/" + p] = model.pop(p)
        shared = "d7/note107.md"  # both edit one file, different lines: merged
        base = model[shared]
        write(a.folder / shared, with_line(base, 1, "line 1 from A\n"))
        write(b.folder / shared, with_line(base, 30, "line 30 from B\n"))
        model[shared] = with_line(with_line(base, 1, "line 1 from A\n"), 30, "line 30 from B\n")
        for i in range(5):
            put(a, f"new/a{i}.md", note(1000 + i, "new A "))
            put(b, f"new/b{i}.md", note(2000 + i, "new B "))
        t0 = time.monotonic()
        results = settle(a, b)
        second = time.monotonic() - t0
    t = assert_same_trees(a, b)
    assert not conflict_copies(t), conflict_copies(t)
    assert files(t) == model
    assert sum(r.merged for r in results) >= 1, results
    print(
        f"\nconverge: 360 files in {first:.2f} s, {len(model)} files after edits in "
        f"{second:.2f} s; server 0: {m0.usage}; server 1: {m1.usage}"
    )
    for usage in (m0.usage, m1.usage):
        assert usage.peak_rss < 400 * MB, usage


# -- 2. a long-poll on one process, a commit through the other ------------------------------


def test_a_long_poll_hears_of_another_process_commit_within_a_second(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A long-poll held by process 0 answers within a second of a commit made
    through process 1 (PostgreSQL NOTIFY): measured over several commits; then a
    watching client on process 0 gets a file saved through process 1."""
    dep = deployment
    tok0, tok1 = dep.new_token("admin", "poller"), dep.new_token("admin", "writer")
    lat: list[float] = []

    async def go() -> None:
        async with Remote(dep.servers[0].url, tok0) as r0, Remote(dep.servers[1].url, tok1) as r1:
            ns = (await r0.me()).namespaces[0].id
            cursor = (await r0.list_changes(ns)).cursor  # (starts process 0's listening)
            await put_file(r1, ns, "warm.txt", b"warm\n")
            cursor = (await r0.list_changes(ns, cursor)).cursor
            for i in range(10):
                poll = asyncio.create_task(r0.list_changes(ns, cursor, wait=20))
                await asyncio.sleep(0.3)
                assert not poll.done(), "the long-poll answered before any commit"
                await put_file(r1, ns, f"f{i}.txt", f"commit {i}\n".encode())
                committed = time.monotonic()
                page = await asyncio.wait_for(poll, 25)
                lat.append(time.monotonic() - committed)
                assert [e.path for e in page.entries] == [f"f{i}.txt"], page.entries
                cursor = page.cursor

    asyncio.run(go())
    print(
        f"\nlong-poll latency across processes (10 commits): median "
        f"{statistics.median(lat) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms"
    )
    assert max(lat) < LATENCY_LIMIT, lat

    # A client in watch mode on process 0; files saved and synced through process 1.
    w, b = clients(dep, tmp_path, 0, 1)
    w.sync_once()
    b.sync_once()
    seen: list[float] = []
    watcher = WatchThread(w).start()
    try:
        assert wait_until(lambda: bool(watcher.snapshot()), 20), "the watcher made no round"
        time.sleep(0.5)  # its long-poll is waiting
        for i in range(3):
            data = f"saved through process 1, {i}\n".encode()
            write(b.folder / f"w{i}.txt", data)
            b.sync_once()
            synced = time.monotonic()
            arrived = wait_until(_holds(w.folder / f"w{i}.txt", data), 10, 0.01)
            assert arrived, f"w{i}.txt did not reach the watcher in 10 s"
            seen.append(time.monotonic() - synced)
            time.sleep(0.3)
    finally:
        watcher.close()
    print(f"watcher on process 0, file written: {', '.join(f'{s * 1000:.0f} ms' for s in seen)}")
    assert max(seen) < 3 * LATENCY_LIMIT, seen


# -- 3. the same path through two processes ----------------------------------------------------


def test_commits_of_one_path_through_two_processes_conflict(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Raw commits of one path on the same base through both processes at once:
    exactly one is ok, the other a conflict, and the journal holds the winner
    alone. Then two clients, one on each process, save the same file and sync at
    the same moment: one version stays at the path, the other in a conflict copy
    on both sides (no bytes lost)."""
    dep = deployment
    tok0, tok1 = dep.new_token("admin", "one"), dep.new_token("admin", "two")
    rounds = 20

    async def race() -> None:
        async with Remote(dep.servers[0].url, tok0) as r0, Remote(dep.servers[1].url, tok1) as r1:
            ns = (await r0.me()).namespaces[0].id
            # One after the other first: an edit on a stale base is a conflict.
            v1 = await put_file(r1, ns, "stale.txt", b"v1\n")
            v2 = await put_file(r0, ns, "stale.txt", b"v2\n", v1)
            await r1.upload(ns, raw_frames(split(b"v2 elsewhere\n")))
            (late,) = await r1.commit(ns, [file_op("stale.txt", b"v2 elsewhere\n", v1)])
            assert (late.status, late.reason) == ("conflict", "changed"), late
            assert late.current is not None and late.current.jid == v2, late
            base = await put_file(r0, ns, "race.txt", b"base\n")
            for i in range(rounds):
                ours, theirs = f"ours {i}\n".encode(), f"theirs {i}\n".encode()
                for r, d in ((r0, ours), (r1, theirs)):  # chunks up, so commits are one step
                    await r.upload(ns, raw_frames(split(d)))
                (x,), (y,) = await asyncio.gather(
                    r0.commit(ns, [file_op("race.txt", ours, base)]),
                    r1.commit(ns, [file_op("race.txt", theirs, base)]),
                )
                statuses = sorted([x.status, y.status])
                assert statuses == ["conflict", "ok"], (i, x, y)
                winner = x if x.status == "ok" else y
                assert winner.jid is not None
                hist = await r1.history(ns, "race.txt", limit=1000)
                assert [e.jid for e in hist.entries][:2] == [winner.jid, base], hist.entries
                assert (await r0.head(ns)).jid == winner.jid  # nothing else was written
                base = winner.jid

    asyncio.run(race())

    a, b = clients(dep, tmp_path, 0, 1)
    settle(a, b)
    for i in range(3):
        path = f"doc{i}.txt"
        write(a.folder / path, b"the first version\n")
        settle(a, b)
        ours, theirs = f"A's version {i}\n".encode(), f"B's version {i}\n".encode()
        write(a.folder / path, ours)
        write(b.folder / path, theirs)
        results = _sync_at_once({"a": a, "b": b})
        after = settle(a, b)
        t = assert_same_trees(a, b)
        copies = [p for p in conflict_copies(t) if p.startswith(f"doc{i} ")]
        assert len(copies) == 1, conflict_copies(t)
        got = {t[path][1], t[copies[0]][1]}
        assert got == {ours, theirs}, got  # one at the path, the other in the copy
        # Exactly one of them lost, once, and its edit is the copy's content.
        told = [(n, c) for n, r in results.items() for c in r.conflicts]
        told += [("later", c) for r in after for c in r.conflicts]
        assert [c for _, c in told] == copies, told
        loser = told[0][0]
        assert t[copies[0]][1] == {"a": ours, "b": theirs}[loser], (loser, t[copies[0]])
        history = _history(dep, a, path)
        assert history.count(t[path][1]) == 1 and t[copies[0]][1] not in history, history


def _holds(path: Path, data: bytes) -> Callable[[], bool]:
    return lambda: path.exists() and path.read_bytes() == data


def _sync_at_once(clients: dict[str, Client]) -> dict[str, SyncResult]:
    """One sync of each client, all let go at the same moment (threads); the results."""
    gate = threading.Barrier(len(clients), timeout=30)
    results: dict[str, SyncResult] = {}

    def sync(name: str) -> None:
        gate.wait()
        results[name] = clients[name].sync_once()

    threads = [threading.Thread(target=sync, args=(n,)) for n in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert set(results) == set(clients), "a sync did not finish in 60 s"
    return results


def _history(dep: Deployment, c: Client, path: str) -> list[bytes]:
    """The bytes of every version of ``path`` on the server (newest first)."""

    async def go() -> list[bytes]:
        from linesync.core.ids import unpack_ids
        from tests.support.api import frame_bytes

        async with Remote(dep.servers[1].url, c.config.token) as r:
            ns = c.config.namespace
            out = []
            for e in (await r.history(ns, path, limit=100)).entries:
                if e.kind is not Kind.FILE:
                    continue
                full = await r.entry(ns, e.jid)
                assert full.content is not None and full.content.ids is not None
                ids = unpack_ids(full.content.ids)
                frames = {f.chunk_id: frame_bytes(f) for f in await r.fetch(ns, ids)}
                out.append(b"".join(frames[i] for i in ids))
            return out

    return asyncio.run(go())
