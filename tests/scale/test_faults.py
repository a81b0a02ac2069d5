"""Faults of a scaled-out server: a process killed during uploads, PostgreSQL
connections cut mid-commit, a lost commit notification. Clients fail over,
commits are whole or absent, and no long-poll stalls silently."""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import asyncpg
import psutil  # type: ignore[import-untyped]

from linesync.client.api import Client
from linesync.client.remote import Remote
from linesync.client.retry import RetryPolicy
from linesync.protocol.errors import LinesyncError
from linesync.protocol.framing import Frame
from linesync.protocol.schemas import UploadResponse
from tests.scenarios.helpers import conflict_copies, files, tree, write
from tests.support.api import Api, Resp, ns_path, put_file
from tests.support.api import Remote as OneShotRemote
from tests.support.deploy import LISTEN_QUERY, Deployment
from tests.support.resources import pid_of, wait_until

KIB = 1024


def fresh_copy(dep: Deployment, url: str, token: str, folder: Path) -> Client:
    """A new folder synced once through ``url``."""
    c = Client.init(folder, server=url, token=token)
    c.sync_once(retry_for=30)
    return c


def journal_is_consistent(dep: Deployment) -> None:
    """Every namespace's journal is gapless up to its head, and each path's
    current entry is its latest version (straight from the database)."""
    for ns, head, n, top in dep.sql(
        "SELECT n.id, n.head, COUNT(e.jid), COALESCE(MAX(e.jid), 0) FROM namespaces n "
        "LEFT JOIN entries e ON e.ns_id = n.id GROUP BY n.id"
    ):
        assert n == head == top, f"namespace {ns}: {n} entries, max JID {top}, head {head}"
    wrong = dep.sql(
        "SELECT c.ns_id, c.path, c.jid, m.top FROM current_entries c JOIN "
        "(SELECT ns_id, path, MAX(jid) AS top FROM entries GROUP BY ns_id, path) m "
        "ON m.ns_id = c.ns_id AND m.path = c.path WHERE m.top <> c.jid"
    )
    assert not wrong, wrong
    orphans = dep.sql(
        "SELECT e.ns_id, e.path FROM entries e LEFT JOIN current_entries c "
        "ON c.ns_id = e.ns_id AND c.path = e.path WHERE c.path IS NULL"
    )
    assert not orphans, orphans


def check_ok(dep: Deployment) -> None:
    out = dep.check()
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), (out.stdout, out.stderr)


# -- 4. a process killed during uploads ------------------------------------------------------


class _TimedRemote(Remote):
    """Notes when each upload request goes out and when its answer comes."""

    spans: list[list[float]]
    first: threading.Event

    async def upload(self, ns: int, frames: Sequence[Frame]) -> UploadResponse:
        span = [time.monotonic(), math.inf]
        self.spans.append(span)
        self.first.set()
        try:
            return await super().upload(ns, frames)
        finally:
            span[1] = time.monotonic()


class TimedUploads(Client):
    """A client whose upload requests are timed (``Client._remote`` is the seam)."""

    def __init__(self, folder: Path, spans: list[list[float]], first: threading.Event) -> None:
        super().__init__(folder)
        self.spans, self.first = spans, first

    def _remote(self, retry: RetryPolicy | None = None) -> Remote:
        remote = _TimedRemote(self.config.server, self.config.token, retry=retry)
        remote.spans, remote.first = self.spans, self.first
        return remote


def test_a_process_killed_during_uploads_is_failed_over(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Two clients (two users) given both processes' URLs, process 0 first, upload
    4.5 MB each; process 0 is SIGKILLed 20 ms after their first upload request
    went out. Both syncs finish through process 1 (an upload request in flight
    at the kill is answered there), and every file is on the server with its
    bytes: as fresh folders through process 1 show, and through process 0 once
    restarted; ``linesync check`` is ok."""
    dep = deployment
    both = dep.urls(0, 1)
    rng = random.Random(4)
    users = {"x": dep.new_token("x", "laptop"), "y": dep.new_token("y", "laptop")}
    spans: list[list[float]] = []  # [sent, answered] of every upload request
    first = threading.Event()
    sources = {}
    for u, t in users.items():
        Client.init(tmp_path / f"src-{u}", server=both, token=t)
        sources[u] = TimedUploads(tmp_path / f"src-{u}", spans, first)
    for c in sources.values():
        for i in range(48):
            write(c.folder / f"blobs/{i // 12}/b{i:03d}.bin", rng.randbytes(96 * KIB))
    trees = {u: tree(c.folder) for u, c in sources.items()}
    errors: list[BaseException] = []

    def sync(c: Client) -> None:
        try:
            c.sync_once(retry_for=60)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=sync, args=(c,)) for c in sources.values()]
    started = time.monotonic()
    for t in threads:
        t.start()
    assert first.wait(60), "no upload in 60 s"
    time.sleep(0.02)
    dep.servers[0].kill()  # SIGKILL, uploads in flight
    killed = time.monotonic()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a sync did not finish in 120 s"
    assert not errors, errors
    took = time.monotonic() - started
    cut = [end - killed for sent, end in spans if sent < killed < end]
    assert cut, f"no upload was in flight at the kill: {spans}"
    print(
        f"\nkill during uploads: killed {killed - started:.2f} s in, {len(cut)} of "
        f"{len(spans)} upload requests in flight, answered {max(cut) * 1000:.0f} ms after the "
        f"kill at the latest; both syncs done in {took:.2f} s"
    )

    for u, token in users.items():
        copy = fresh_copy(dep, dep.servers[1].url, token, tmp_path / f"via1-{u}")
        assert files(tree(copy.folder)) == files(trees[u]), f"{u}: lost or wrong files"
    dep.servers[0].start()  # restarted: it serves the same data
    for u, token in users.items():
        copy = fresh_copy(dep, dep.servers[0].url, token, tmp_path / f"via0-{u}")
        assert files(tree(copy.folder)) == files(trees[u]), f"{u}: lost or wrong files"
    journal_is_consistent(dep)
    check_ok(dep)


# -- 5. database connections cut mid-commit -----------------------------------------------------


class Cutter:
    """A thread that watches the test database (every 5 ms, on a connection of
    its own) and, when some connection is inside a transaction, terminates every
    connection but its own, one time in two; after a cut it lets 50-200 ms pass,
    so that commits also get through. At most ``limit`` cuts, at most ``seconds``."""

    def __init__(self, dep: Deployment, limit: int = 200, seconds: float = 120.0) -> None:
        self.dep, self.limit, self.seconds = dep, limit, seconds
        self.stop = threading.Event()
        self.rounds = 0  # cuts
        self.cut = 0  # connections terminated
        self.error: BaseException | None = None
        self.rng = random.Random(5)
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        try:
            con = await asyncpg.connect(self.dep.stores.db, timeout=10)
        except BaseException as exc:  # reported by __exit__
            self.error = exc
            return
        others = "datname = current_database() AND pid <> pg_backend_pid()"
        deadline = time.monotonic() + self.seconds
        try:
            while not self.stop.is_set() and self.rounds < self.limit:
                if time.monotonic() > deadline:
                    break
                busy = await con.fetchval(
                    f"SELECT count(*) FROM pg_stat_activity WHERE {others} "
                    "AND xact_start IS NOT NULL AND state <> 'idle'"
                )
                if busy and self.rng.random() < 0.5:
                    self.cut += await con.fetchval(
                        f"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                        f"FROM pg_stat_activity WHERE {others}"
                    )
                    self.rounds += 1
                    await asyncio.sleep(self.rng.uniform(0.05, 0.2))
                else:
                    await asyncio.sleep(0.005)
        except BaseException as exc:  # reported by __exit__
            self.error = exc
        finally:
            await con.close()

    def __enter__(self) -> Cutter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the cutter did not stop"
        if self.error is not None:
            raise AssertionError(f"the cutter failed: {self.error!r}") from self.error


def test_commits_are_whole_while_database_connections_are_cut(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A client (both URLs) commits batch after batch (new files, edits, deletes)
    while every connection to the database is terminated, again and again, as
    transactions run (the Cutter), until at least 10 batches and 10 cuts (at most
    25 batches). A sync that fails is tried again (bounded); afterwards the
    journal is gapless and each path's current entry its latest version,
    ``linesync check`` is ok, the source folder holds no conflict copy, and a
    fresh folder equals it."""
    dep = deployment
    token = dep.new_token("admin", "source")
    src = Client.init(tmp_path / "src", server=dep.urls(0, 1), token=token)
    rng = random.Random(6)
    batches, failures, attempts = 0, [], 0
    retried: list[str] = []  # requests the client's retry policy sent again

    def on_retry(exc: LinesyncError, wait: float) -> None:
        retried.append(f"{exc.code.value} ({wait:.1f} s)")

    started = time.monotonic()
    with Cutter(dep) as cutter:
        for b in range(25):
            if b >= 10 and cutter.rounds >= 10:
                break
            batches += 1
            for i in range(20):
                write(src.folder / f"b{b}/n{i:02d}.md", f"batch {b} note {i}\n".encode() * 20)
            for p in rng.sample(sorted(src.folder.glob("b*/n*.md")), 5):
                p.write_bytes(p.read_bytes() + f"edited in batch {b}\n".encode())
            if b:
                for p in rng.sample(sorted(src.folder.glob(f"b{b - 1}/n*.md")), 2):
                    p.unlink()
            for _ in range(30):  # a sync that failed is tried again, as a watcher would
                attempts += 1
                try:
                    r = asyncio.run(src.sync(retry_for=10, on_retry=on_retry))
                except LinesyncError as exc:
                    failures.append(f"{exc.code.value}: {exc}")
                    time.sleep(0.1)
                    continue
                if r.converged:
                    break
            else:
                raise AssertionError(f"batch {b} did not get up in 30 tries: {failures[-5:]}")
    took = time.monotonic() - started
    print(
        f"\ncut connections: {cutter.cut} connections terminated in {cutter.rounds} cuts; "
        f"{batches} batches in {took:.2f} s, {attempts} syncs, {len(failures)} failed "
        f"({sorted({f.split(':')[0] for f in failures})}); requests retried: {retried}"
    )
    assert cutter.rounds >= 10, f"only {cutter.rounds} cuts"
    final = src.sync_once(retry_for=30)  # nothing cut now: nothing left to do
    assert final.converged and not final.uploaded, final
    t = tree(src.folder)
    assert not conflict_copies(t), conflict_copies(t)
    journal_is_consistent(dep)
    check_ok(dep)
    copy = fresh_copy(dep, dep.servers[1].url, token, tmp_path / "copy")
    assert tree(copy.folder) == t


def test_a_commit_whose_connection_is_cut_gets_a_retryable_answer(deployment: Deployment) -> None:
    """A commit waits for the namespace's row lock (held here), and its database
    connection is terminated meanwhile. The answer must be one a client retries
    (503 ``unavailable``; the client then tries the next process at once), not
    500 ``internal`` (a bug: not retried), and nothing is applied; the same
    commit sent again is applied once."""
    dep = deployment
    token = dep.new_token("admin", "cut")
    commit = {"ops": [{"path": "cut-dir", "kind": "directory"}]}

    async def go() -> tuple[Resp, int, int]:
        async with Api(dep.servers[0].url, token) as api:
            ns = (await api.get("/v1/me")).expect(200).json()["namespaces"][0]["id"]
            head = (await api.get(ns_path(ns, "head"))).expect(200).json()["jid"]
            con = await asyncpg.connect(dep.stores.db, timeout=10)
            try:
                tx = con.transaction()
                await tx.start()
                await con.execute("SELECT 1 FROM namespaces WHERE id=$1 FOR UPDATE", ns)
                pending = asyncio.create_task(api.post(ns_path(ns, "commit"), json_body=commit))
                (waiter,) = await asyncio.to_thread(
                    _wait_for_one,
                    lambda: [
                        r[0]
                        for r in dep.sql(
                            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                            " AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'"
                        )
                    ],
                    "the commit waiting for the lock",
                )
                assert await asyncio.to_thread(dep.terminate, f"pid = {waiter}") == [waiter]
                resp = await asyncio.wait_for(pending, 30)
                await tx.rollback()
            finally:
                await con.close()
            after = (await api.get(ns_path(ns, "head"))).expect(200).json()["jid"]
            again = (await api.post(ns_path(ns, "commit"), json_body=commit)).expect(200)
            assert again.json()["results"][0]["status"] == "ok", again.body
            return resp, head, after

    resp, head, after = asyncio.run(go())
    assert after == head, "the cut commit was applied"
    assert (resp.status, resp.code) == (503, "unavailable"), (resp.status, resp.body[:300])


# -- 6. a lost notification ----------------------------------------------------------------------


def listening_backends(dep: Deployment, index: int) -> list[int]:
    """The pids of the database backends of process ``index``'s listening
    connection (its local ports are the backends' client ports)."""
    ports = {
        c.laddr.port
        for c in psutil.Process(pid_of(dep.servers[index])).net_connections(kind="tcp")
        if c.raddr and c.status == "ESTABLISHED"
    }
    rows = dep.sql(
        "SELECT pid, client_port FROM pg_stat_activity WHERE datname = current_database() "
        "AND query IN ($1, 'SELECT 1')",  # LISTEN, then its health check every 5 s
        LISTEN_QUERY,
    )
    return [pid for pid, port in rows if port in ports]


def test_a_lost_notification_is_caught_after_the_listener_reconnects(
    deployment: Deployment,
) -> None:
    """Process 0's listening connection is terminated, then a commit is made
    through process 1: its notification reaches no one in process 0. A long-poll
    waiting on process 0 still answers with the news once the listener is back
    (its check every 5 s notices the loss): within 15 s, never at its deadline.
    After that, notifications arrive within a second again."""
    dep = deployment
    tok0, tok1 = dep.new_token("admin", "poller"), dep.new_token("admin", "writer")
    times: dict[str, float] = {}

    async def go() -> None:
        async with (
            OneShotRemote(dep.servers[0].url, tok0) as r0,
            OneShotRemote(dep.servers[1].url, tok1) as r1,
        ):
            ns = (await r0.me()).namespaces[0].id
            cursor = (await r0.list_changes(ns)).cursor  # starts process 0's listener
            (old,) = await asyncio.to_thread(
                _wait_for_one, lambda: listening_backends(dep, 0), "process 0's listener"
            )
            poll = asyncio.create_task(r0.list_changes(ns, cursor, wait=40))
            await asyncio.sleep(0.3)
            assert not poll.done()
            cut = await asyncio.to_thread(dep.terminate, f"pid = {old}")
            assert cut == [old]
            await put_file(r1, ns, "while-deaf.txt", b"nobody in process 0 heard\n")
            committed = time.monotonic()
            page = await asyncio.wait_for(poll, 45)
            times["lost"] = time.monotonic() - committed
            assert [e.path for e in page.entries] == ["while-deaf.txt"], page
            (new,) = await asyncio.to_thread(
                _wait_for_one, lambda: listening_backends(dep, 0), "the new listener"
            )
            assert new != old
            # Listening again: the next commit is heard at once.
            poll = asyncio.create_task(r0.list_changes(ns, page.cursor, wait=20))
            await asyncio.sleep(0.3)
            await put_file(r1, ns, "heard.txt", b"heard\n")
            committed = time.monotonic()
            page = await asyncio.wait_for(poll, 25)
            times["after"] = time.monotonic() - committed
            assert [e.path for e in page.entries] == ["heard.txt"], page

    asyncio.run(go())
    print(
        f"\nlost notification: long-poll answered {times['lost']:.2f} s after the commit; "
        f"after the reconnect {times['after'] * 1000:.0f} ms"
    )
    assert times["lost"] < 15, times
    assert times["after"] < 1, times


def _wait_for_one(find: Callable[[], list[int]], what: str) -> list[int]:
    """Poll ``find`` until it finds exactly one (20 s at most); that one, as a list."""
    got: list[int] = []

    def one() -> bool:
        got[:] = find()
        return len(got) == 1

    wait_until(one, 20, what, interval=0.1)
    return got
