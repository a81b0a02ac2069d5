"""Small appends staged in PostgreSQL, then moved to the object store many at
once: one-line edits do not cost one object-store PUT each."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

from linesync.core.ids import chunk_id
from linesync.server.gc import drain
from linesync.server.model import ChunkLoc
from linesync.server.stores.objects import LocalObjects
from linesync.server.stores.objpacks import ObjectPackStore
from linesync.server.stores.packs import Location, Record
from linesync.server.stores.postgres import PostgresStore
from linesync.server.stores.staged import PgStage, StagedChunkStore

Body = Callable[[PostgresStore, StagedChunkStore, ObjectPackStore], Awaitable[None]]


def _run(pg_url: str, tmp_path: Path, body: Body) -> None:
    async def go() -> None:
        meta = await PostgresStore.open(pg_url, max_size=4)
        big = ObjectPackStore(LocalObjects(tmp_path / "objects"))
        store = StagedChunkStore(big, PgStage(pg_url))
        try:
            await body(meta, store, big)
        finally:
            await store.close()
            await meta.close()

    asyncio.run(go())


def _rec(i: int, size: int = 60) -> Record:
    data = (b"line %d " % i).ljust(size, b".")
    return Record(chunk_id(data), 0, data)


async def _index(meta: PostgresStore, ns: int, recs: list[Record], locs: list[Location]) -> None:
    await meta.add_chunks(
        ns,
        [
            ChunkLoc(r.chunk_id, loc.pack, loc.offset, loc.length, r.codec, len(r.payload))
            for r, loc in zip(recs, locs, strict=True)
        ],
    )


async def _home(meta: PostgresStore) -> int:
    uid = await meta.create_user("alice")
    (home,) = await meta.namespaces_of(uid)
    return home.id


def test_small_appends_wait_in_the_database_and_move_together(pg_url: str, tmp_path: Path) -> None:
    async def body(meta: PostgresStore, store: StagedChunkStore, big: ObjectPackStore) -> None:
        ns = await _home(meta)
        recs = [_rec(i) for i in range(300)]
        locs: list[Location] = []
        for r in recs:  # 300 one-line uploads, one after another
            (loc,) = await store.append([r])
            locs.append(loc)
        await _index(meta, ns, recs, locs)
        assert big.objects_written == 0 and store.stage.rows_written == 300
        assert all(loc.pack.startswith("s-") for loc in locs)
        assert await store.read_many(locs) == [r.payload for r in recs]
        # a scan reads a staged pack like any other
        entries = [e async for e in store.scan(locs[0].pack)]
        assert [e.location for e in entries] == [locs[0]]

        report = await drain(meta, store, hold_seconds=3600)
        assert report.records == 300 and report.packs == 300
        assert big.objects_written == 1, "300 small records must share one object"
        moved = await meta.locate(ns, [r.chunk_id for r in recs])
        assert all(not m.pack.startswith("s-") for m in moved.values())
        got = await store.read_many(
            [Location(moved[r.chunk_id].pack, moved[r.chunk_id].offset, moved[r.chunk_id].length)
             for r in recs]
        )  # fmt: skip
        assert got == [r.payload for r in recs]
        # the staged copies stay for readers that looked them up just before ...
        assert await store.read(locs[5]) == recs[5].payload
        assert (await drain(meta, store, hold_seconds=3600)).deleted == []
        # ... and go once the hold has passed
        gone = await drain(meta, store, hold_seconds=0)
        assert sorted(gone.deleted) == sorted({loc.pack for loc in locs})
        assert await store.stage.list_packs() == []

    _run(pg_url, tmp_path, body)


def test_big_appends_go_to_the_object_store_at_once(pg_url: str, tmp_path: Path) -> None:
    async def body(meta: PostgresStore, store: StagedChunkStore, big: ObjectPackStore) -> None:
        recs = [_rec(i, 100_000) for i in range(4)]  # 400 KB: past the staging limit
        locs = await store.append(recs)
        assert big.objects_written == 1 and store.stage.rows_written == 0
        assert all(not loc.pack.startswith("s-") for loc in locs)
        assert await store.read_many(locs) == [r.payload for r in recs]
        names = [p.name for p in await store.list_packs()]
        assert names == [locs[0].pack]

    _run(pg_url, tmp_path, body)


def test_an_upload_not_yet_indexed_keeps_its_staged_pack(pg_url: str, tmp_path: Path) -> None:
    """The drain runs between an upload's staging and its indexing: the pack
    is not deleted under it, and its records move at a later drain."""

    async def body(meta: PostgresStore, store: StagedChunkStore, big: ObjectPackStore) -> None:
        ns = await _home(meta)
        rec = _rec(1)
        (loc,) = await store.append([rec])
        first = await drain(meta, store, hold_seconds=0)
        assert first.records == 0 and first.deleted == []
        await _index(meta, ns, [rec], [loc])  # the upload indexes it now
        second = await drain(meta, store, hold_seconds=0)
        assert second.deleted == [] and second.records == 1  # in use: kept, and moved
        (moved,) = (await meta.locate(ns, [rec.chunk_id])).values()
        assert await store.read(Location(moved.pack, moved.offset, moved.length)) == rec.payload
        last = await drain(meta, store, hold_seconds=0)
        assert last.deleted == [loc.pack]

    _run(pg_url, tmp_path, body)


def test_one_line_edits_through_a_server_cost_no_put_each(
    pg_url: str, tmp_path: Path, s3_server: object
) -> None:
    """A server on PostgreSQL and S3: a watched folder's one-line edits are
    staged; the bucket gets objects only when the drain runs."""
    from linesync.client.api import Client
    from tests.support.api import parse_metrics
    from tests.support.s3 import S3Server
    from tests.support.server import ServerProc

    assert isinstance(s3_server, S3Server)
    prefix = s3_server.new_prefix()
    env = {
        "AWS_ACCESS_KEY_ID": s3_server.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key,
    }
    srv = ServerProc(
        tmp_path / "srv",
        stores=["--db", pg_url, "--chunks", s3_server.url(prefix)],
        extra=["--limit", "drain_interval_seconds=2", "--limit", "drain_hold_seconds=1"],
        env=env,
    ).start()
    raw = s3_server.raw_store(prefix)

    def objects() -> list[str]:
        import obstore

        return [o["path"] for batch in obstore.list(raw) for o in batch]

    try:
        folder = tmp_path / "A"
        client = Client.init(folder, server=srv.url, token=srv.token)
        (folder / "notes.txt").write_text("".join(f"line {i}\n" for i in range(200)))
        asyncio.run(client.sync())
        for k in range(5):
            text = (folder / "notes.txt").read_text().replace(f"line {k}\n", f"edit {k}\n")
            (folder / "notes.txt").write_text(text)
            asyncio.run(client.sync())
        deadline = time.monotonic() + 30
        while not objects():
            assert time.monotonic() < deadline, "the drain never moved the staged packs"
            time.sleep(0.2)
        assert len(objects()) <= 2, objects()  # 6 uploads, one object (or two)
        fresh = Client.init(tmp_path / "B", server=srv.url, token=srv.token)
        asyncio.run(fresh.sync())
        assert (tmp_path / "B" / "notes.txt").read_text() == (folder / "notes.txt").read_text()
        # /metrics reports the object store's record cache (the download read through it).
        scraper = srv.admin("token", "create", "admin", "--device", "prom", "--metrics")
        req = urllib.request.Request(
            srv.url + "/metrics", headers={"Authorization": f"Bearer {scraper.splitlines()[-1]}"}
        )
        with urllib.request.urlopen(req, timeout=10) as answer:
            metrics = parse_metrics(answer.read().decode())
        records = [f'linesync_cache_{k}_total{{cache="chunk records"}}' for k in ("hits", "misses")]
        assert sum(metrics[k] for k in records) > 0, metrics
        assert 'linesync_cache_hits_total{cache="blocklists"}' in metrics
    finally:
        srv.stop()
