"""What only the PostgreSQL store has: processes sharing one database (commits
announced to every one, garbage collection racing a commit), and its schema's
versioning. The semantics both stores share are in tests/contract."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from linesync.core.ids import chunk_id, pack_ids
from linesync.protocol.schemas import CommitOp, Content, Kind
from linesync.server.commit import Limits
from linesync.server.model import ChunkLoc
from linesync.server.stores import postgres
from linesync.server.stores.base import StoreError
from linesync.server.stores.postgres import PostgresStore
from linesync.server.stores.postgres_admin import SCHEMA_VERSION

Told = list[tuple[int | None, str | None, range]]


def _file(path: str, data: bytes) -> tuple[CommitOp, ChunkLoc]:
    cid = chunk_id(data)
    op = CommitOp(path=path, kind=Kind.FILE, size=len(data), content=Content(ids=pack_ids([cid])))
    return op, ChunkLoc(cid, "p-00000001-00000000", 16, len(data), 0, len(data))


async def _home(store: PostgresStore, name: str) -> int:
    uid = await store.create_user(name)
    (home,) = await store.namespaces_of(uid)
    return home.id


async def _until(cond: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _run(pg_url: str, body: Callable[[PostgresStore, PostgresStore], Awaitable[None]]) -> None:
    """``body`` on two instances of the store, as two server processes would hold."""

    async def go() -> None:
        a = await PostgresStore.open(pg_url, max_size=4)
        b = await PostgresStore.open(pg_url, max_size=4)
        try:
            await body(a, b)
        finally:
            await b.close()
            await a.close()

    asyncio.run(go())


def test_a_commit_is_told_to_every_instance_once(pg_url: str) -> None:
    async def body(a: PostgresStore, b: PostgresStore) -> None:
        told_a: Told = []
        told_b: Told = []
        a.subscribe(lambda *t: told_a.append(t))
        b.subscribe(lambda *t: told_b.append(t))
        await asyncio.wait_for(a.feed_connected.wait(), 10)
        await asyncio.wait_for(b.feed_connected.wait(), 10)
        told_a.clear()
        told_b.clear()  # (each was told "read again" on connecting)
        ns = await _home(a, "alice")
        op, loc = _file("f", b"hello")
        await b.add_chunks(ns, [loc])
        started = time.monotonic()
        out = await b.commit(ns, [op], "dev", Limits(), session="dev\0s1")
        assert told_b == [(ns, "dev\0s1", range(1, 2))]  # at once, in the committer
        await _until(lambda: bool(told_a))
        latency = time.monotonic() - started
        assert told_a == [(ns, "dev\0s1", range(1, 2))]
        assert latency < 1.0, latency
        # a commit that writes nothing is told to no one
        again = await b.commit(ns, [op], "dev", Limits())
        assert again.head == out.head
        await asyncio.sleep(0.2)
        assert len(told_a) == 1 and len(told_b) == 1

    _run(pg_url, body)


def test_a_lost_listening_connection_makes_every_waiter_read_again(pg_url: str) -> None:
    async def body(a: PostgresStore, b: PostgresStore) -> None:
        told: Told = []
        a.subscribe(lambda *t: told.append(t))
        await asyncio.wait_for(a.feed_connected.wait(), 10)
        told.clear()
        con = await asyncpg.connect(pg_url)
        try:
            killed = await con.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname=current_database() AND query LIKE 'LISTEN%'"
            )
        finally:
            await con.close()
        assert killed == 1
        # Within a check interval the loss is seen, then the connection is made
        # again and every waiter told to read its journal: (None, ...).
        await _until(lambda: (None, None, range(0)) in told, 3 * postgres.FEED_CHECK_SECONDS)
        # and commits elsewhere are told again
        ns = await _home(b, "bob")
        op, loc = _file("g", b"again")
        await b.add_chunks(ns, [loc])
        await b.commit(ns, [op], "dev", Limits())
        await _until(lambda: (ns, None, range(1, 2)) in told)

    _run(pg_url, body)


def test_gc_taking_an_upload_mid_commit_makes_the_commit_say_missing(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit read its chunks as held; before it marks them taken up, GC
    (another process) drops the stale upload. The commit must not refer to the
    dropped chunk: it is planned again and answers "missing"."""

    async def body(a: PostgresStore, b: PostgresStore) -> None:
        ns = await _home(a, "alice")
        op, loc = _file("f", b"in flight")
        await a.add_chunks(ns, [loc])
        await asyncio.sleep(0.05)
        real = postgres._Reader.chunks
        raced = 0

        async def chunks_then_gc(self: postgres._Reader, ids: object) -> object:
            nonlocal raced
            out = await real(self, ids)  # type: ignore[arg-type]
            if not raced:
                raced += 1
                stats, dead = await b.gc(0.01)  # (another process, its own connection)
                assert stats.stale_refs == 1 and len(dead) == 1
            return out

        monkeypatch.setattr(postgres._Reader, "chunks", chunks_then_gc)
        out = await a.commit(ns, [op], "dev", Limits())
        assert raced == 1
        assert [r.status for r in out.results] == ["missing"]
        assert out.head == 0
        assert await a.check_entries() == []

    _run(pg_url, body)


def test_the_schema_is_made_once_by_processes_starting_together(pg_url: str) -> None:
    async def go() -> None:
        stores = await asyncio.gather(*(PostgresStore.open(pg_url, max_size=2) for _ in range(4)))
        try:
            await stores[0].create_user("alice")
            for s in stores:
                assert await s.list_users() == ["alice"]
        finally:
            for s in stores:
                await s.close()
        con = await asyncpg.connect(pg_url)
        try:
            assert await con.fetch("SELECT version FROM linesync_schema") == [(SCHEMA_VERSION,)]
        finally:
            await con.close()

    asyncio.run(go())


def test_a_newer_schema_is_refused(pg_url: str) -> None:
    async def go() -> None:
        s = await PostgresStore.open(pg_url)
        await s.close()
        con = await asyncpg.connect(pg_url)
        try:
            await con.execute("UPDATE linesync_schema SET version=$1", SCHEMA_VERSION + 1)
        finally:
            await con.close()
        with pytest.raises(StoreError, match="Upgrade linesync"):
            await PostgresStore.open(pg_url)

    asyncio.run(go())


def test_an_unreachable_database_is_a_clear_error() -> None:
    async def go() -> None:
        with pytest.raises(StoreError, match="cannot connect to postgresql://who@127.0.0.1:1/x"):
            await PostgresStore.open("postgresql://who:secret@127.0.0.1:1/x")

    asyncio.run(go())


def test_a_list_page_of_1000_entries_is_a_handful_of_queries(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file's content and the version the client holds come in batches:
    the queries a page costs do not grow with its entries."""
    from linesync.server.app import create_app
    from linesync.server.config import ServerConfig
    from linesync.server.stores.packs import DiskPackStore
    from tests.sim.net import asgi_call

    queries = 0
    real = asyncpg.connection.Connection._do_execute

    async def counting(self: object, *args: object, **kw: object) -> object:
        nonlocal queries
        queries += 1
        return await real(self, *args, **kw)  # type: ignore[arg-type]

    async def go() -> None:
        nonlocal queries
        meta = await PostgresStore.open(pg_url, max_size=4)
        packs = DiskPackStore(tmp_path / "packs")
        try:
            ns = await _home(meta, "alice")
            token = await meta.create_token("alice", "laptop", "rw")
            for version in (b"one", b"two"):
                ops, locs = [], []
                for i in range(1000):
                    op, loc = _file(f"f{i:04d}", version + b" %d" % i)
                    ops.append(
                        CommitOp(
                            path=op.path,
                            kind=op.kind,
                            size=op.size,
                            content=op.content,
                            base_jid=0 if version == b"one" else i + 1,
                        )
                    )
                    locs.append(loc)
                await meta.add_chunks(ns, locs)
                out = await meta.commit(ns, ops, "laptop", Limits())
                assert {r.status for r in out.results} == {"ok"}
            app = create_app(ServerConfig(data_dir=tmp_path), meta, packs, run_gc=False)
            auth = [(b"authorization", b"Bearer " + token.encode())]
            head = await meta.head(ns)
            cursor = f"{head.journal}.1000.{(await meta.nonce(ns, 1000))}"
            monkeypatch.setattr(asyncpg.connection.Connection, "_do_execute", counting)
            for query in ("limit=1000", f"limit=1000&cursor={cursor}"):
                queries = 0
                status, body = await asgi_call(app, "GET", f"/v1/ns/{ns}/list", query, auth, b"")
                assert status == 200, body
                assert body.count(b'"path"') == 1000
                assert queries <= 30, f"{query}: {queries} queries for one page"
                print(f"{query[:12]}: {queries} queries")
        finally:
            await packs.close()
            await meta.close()

    asyncio.run(go())


def test_a_lost_database_connection_is_503_and_the_next_request_works(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request whose database connection is cut under it gets 503 (try
    again), not 500; the pool connects again for the next one."""
    from linesync.server.app import create_app
    from linesync.server.config import ServerConfig
    from linesync.server.stores.packs import DiskPackStore
    from tests.sim.net import asgi_call

    async def go() -> None:
        meta = await PostgresStore.open(pg_url, max_size=2)
        packs = DiskPackStore(tmp_path / "packs")
        real_head = PostgresStore.head

        async def cut_then_head(self: PostgresStore, ns_id: int) -> object:
            # The backend serving this query is terminated while it runs.
            await self.pool.fetchval("SELECT pg_terminate_backend(pg_backend_pid())")
            return await real_head(self, ns_id)

        try:
            ns = await _home(meta, "alice")
            token = await meta.create_token("alice", "laptop", "rw")
            app = create_app(ServerConfig(data_dir=tmp_path), meta, packs, run_gc=False)
            auth = [(b"authorization", b"Bearer " + token.encode())]
            monkeypatch.setattr(PostgresStore, "head", cut_then_head)
            status, body = await asgi_call(app, "GET", f"/v1/ns/{ns}/head", "", auth, b"")
            assert status == 503 and b'"unavailable"' in body, body
            monkeypatch.setattr(PostgresStore, "head", real_head)
            for _ in range(3):  # the pool makes new connections
                status, body = await asgi_call(app, "GET", f"/v1/ns/{ns}/head", "", auth, b"")
                assert status == 200, body
        finally:
            await packs.close()
            await meta.close()

    asyncio.run(go())
