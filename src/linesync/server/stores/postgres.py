"""PostgreSQL metadata store: the journal, the chunk index and maintenance.

Same semantics as the SQLite store (the contract suite runs on both). What
differs is how a commit reads: it plans on a prefetched snapshot
(``server/prefetch.py``) read in a few batched queries, under the namespace
row's lock, then writes every entry in one round trip per table.

Concurrency with garbage collection (another process may collect while this
one commits): a commit marks the uploads it takes up as committed and checks
that each row was still there; if GC dropped one in between, the transaction
is rolled back and planned again (the chunk is now "missing", so the client
uploads it again). A stale upload GC deletes is one no commit has marked; the
row lock orders the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from linesync.core import blocklist as bl
from linesync.core import paths
from linesync.core.ids import ChunkId, join_ids, split_ids
from linesync.protocol.schemas import CommitOp, Kind
from linesync.server.commit import Limits, Write
from linesync.server.model import ChunkLoc, Row, Sources
from linesync.server.prefetch import plan_prefetched
from linesync.server.stores.base import CommitListener, CommitOutcome, GcStats, Head, StoreError
from linesync.server.stores.common import (
    ENTRY_COLUMNS,
    MAX_DELTA_DEPTH,
    BlocklistCache,
    CacheStats,
    entry_row,
    folder_range,
)
from linesync.server.stores.postgres_admin import PostgresAdmin

if TYPE_CHECKING:
    from linesync.server.stores.postgres_admin import Conn

_COLS = ENTRY_COLUMNS
_E_COLS = ", ".join("e." + c.strip() for c in _COLS.split(","))
_LOC_COLS = "id, pack, pack_offset, length, codec, raw_size"

# How often a commit that met garbage collection mid-way is planned again.
# A folder's children by a skip scan (PostgreSQL has none built in): each
# step reads the first path of the folder's range past the last one; a path
# deeper down names a child folder, whose subtree the next step jumps ("/" + 1
# is "0"). ``n`` counts the children met, to stop at the limit. $2: the path
# to start after; $3: the prefix's length + 1; $4: the limit; $5: the range's end.
_CHILD = "strpos(substr({p}, $3), '/') = 0"
_CHILDREN = (
    "WITH RECURSIVE walk(path, n) AS ("
    " (SELECT c.path, CASE WHEN " + _CHILD.format(p="c.path") + " THEN 1 ELSE 0 END"
    "  FROM current_entries c WHERE c.ns_id=$1 AND c.path>$2 {upper} {live}"
    "  ORDER BY c.path LIMIT 1)"
    " UNION ALL"
    " SELECT nxt.path, w.n + CASE WHEN " + _CHILD.format(p="nxt.path") + " THEN 1 ELSE 0 END"
    " FROM walk w CROSS JOIN LATERAL ("
    "  SELECT c.path FROM current_entries c"
    "  WHERE c.ns_id=$1 AND c.path>w.path {upper} {live} AND c.path >= CASE"
    "   WHEN " + _CHILD.format(p="w.path") + " THEN w.path"
    "   ELSE left(w.path, $3 - 2 + strpos(substr(w.path, $3), '/')) || '0' END"
    "  ORDER BY c.path LIMIT 1) nxt"
    " WHERE w.n < $4)"
    " SELECT {cols} FROM walk w JOIN current_entries c ON c.ns_id=$1 AND c.path=w.path"
    " JOIN entries e ON e.ns_id=c.ns_id AND e.jid=c.jid"
    " WHERE " + _CHILD.format(p="w.path") + " ORDER BY w.path LIMIT $4"
)
_COMMIT_TRIES = 5
# Commits are announced on this channel: [instance, namespace, session, first
# JID, JID after the last].
CHANNEL = "linesync_commits"
# Seconds between checks that the listening connection still works.
FEED_CHECK_SECONDS = 5.0

log = logging.getLogger("linesync.postgres")


def _loc(r: asyncpg.Record) -> ChunkLoc:
    return ChunkLoc(bytes(r[0]), r[1], r[2], r[3], r[4], r[5])


class _Retry(Exception):
    """GC took an upload away while this commit was taking it up."""


class PostgresStore(PostgresAdmin):
    """MetadataStore on a PostgreSQL database, shared by any number of processes."""

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        super().__init__(url, pool)
        self._cache = BlocklistCache(max_ids=2_000_000)
        self._listeners: list[CommitListener] = []
        self._me = secrets.token_hex(8)  # tells this instance's notifications apart
        self._feed: asyncio.Task[None] | None = None
        self.feed_connected = asyncio.Event()  # (for tests) listening right now

    @property
    def cache_stats(self) -> CacheStats:
        """The blocklist cache's counters (``ReportsCache``)."""
        return self._cache.stats

    # -- notifications ---------------------------------------------------------

    def subscribe(self, listener: CommitListener) -> None:
        self._listeners.append(listener)
        self._listen()

    def _tell(self, ns_id: int | None, session: str | None, jids: range) -> None:
        for listener in self._listeners:
            listener(ns_id, session, jids)

    def _listen(self) -> None:
        """Start listening for other processes' commits, once there is a loop
        to do it on and someone to tell."""
        if self._feed is not None or not self._listeners:
            return
        try:
            self._feed = asyncio.get_running_loop().create_task(self._feed_loop())
        except RuntimeError:
            pass  # no loop yet: the first commit or list starts it

    def _on_note(self, con: Conn, pid: int, channel: str, payload: object) -> None:
        try:
            me, ns_id, session, start, stop = json.loads(str(payload))
        except (ValueError, TypeError):
            log.warning("ignoring a malformed notification on %s", channel)
            return
        if me != self._me:  # this instance told its own listeners already
            self._tell(int(ns_id), session, range(int(start), int(stop)))

    async def _feed_loop(self) -> None:
        """One connection LISTENing, checked every few seconds. When it is lost,
        notifications may have been missed: once listening again, every waiter
        is told to read its journal (``None``), so nothing stalls silently."""
        delay = 0.1
        while True:
            con: asyncpg.Connection[asyncpg.Record] | None = None
            try:
                con = await asyncpg.connect(self.url, timeout=10)
                await con.add_listener(CHANNEL, self._on_note)
                self.feed_connected.set()
                self._tell(None, None, range(0))
                delay = 0.1
                while True:
                    await asyncio.sleep(FEED_CHECK_SECONDS)
                    await con.fetchval("SELECT 1", timeout=FEED_CHECK_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: connect again
                log.warning("commit notifications from PostgreSQL lost (%s); reconnecting", exc)
            finally:
                self.feed_connected.clear()
                if con is not None:
                    con.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        if self._feed is not None:
            self._feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed
        await super().close()

    # -- journal -----------------------------------------------------------

    async def commit(
        self,
        ns_id: int,
        ops: Sequence[CommitOp],
        device: str,
        limits: Limits,
        session: str | None = None,
    ) -> CommitOutcome:
        self._listen()
        for attempt in range(_COMMIT_TRIES):
            try:
                async with self._tx() as con:
                    out = await self._commit(con, ns_id, ops, device, limits, session)
                break
            except (_Retry, asyncpg.DeadlockDetectedError):
                if attempt == _COMMIT_TRIES - 1:
                    raise StoreError("commit kept meeting garbage collection") from None
        if out.head > out.head_before:
            self._tell(ns_id, session, range(out.head_before + 1, out.head + 1))
        return out

    async def _commit(
        self,
        con: Conn,
        ns_id: int,
        ops: Sequence[CommitOp],
        device: str,
        limits: Limits,
        session: str | None,
    ) -> CommitOutcome:
        r = await con.fetchrow(
            "SELECT n.head, n.journal, e.nonce FROM namespaces n"
            " LEFT JOIN entries e ON e.ns_id=n.id AND e.jid=n.head"
            " WHERE n.id=$1 FOR UPDATE OF n",
            ns_id,
        )
        if r is None:
            raise StoreError(f"no namespace {ns_id}")
        head_before, journal, nonce = int(r[0]), str(r[1]), str(r[2] or "0")
        reader = _Reader(self, con, ns_id, journal)
        plan, _ = await plan_prefetched(reader, ops, device, head_before, limits)
        head = head_before
        if plan.writes:
            head = plan.writes[-1].row.jid
            nonce = await self._insert(con, reader, plan.writes, session, head_before)
        return CommitOutcome(plan.results, head, head_before, nonce)

    async def _insert(
        self,
        con: Conn,
        reader: _Reader,
        writes: Sequence[Write],
        session: str | None,
        head_before: int,
    ) -> str:
        """Write a commit's entries in one statement: the journal rows, the paths'
        current entries, the chunks taken, the new head, and the notification to
        other processes (delivered when, and only if, the transaction commits).
        The last entry's nonce."""
        ns_id, journal = reader.ns, reader.journal
        written = {w.row.jid for w in writes}
        bases = {
            w.delta_base for w in writes if w.delta_base is not None and w.delta_base not in written
        }
        depth = {b: reader.depths[b] for b in bases if b in reader.depths}
        if bases - depth.keys():
            for rec in await con.fetch(
                "SELECT jid, bl_depth FROM entries WHERE ns_id=$1 AND jid = ANY($2::bigint[])",
                ns_id,
                list(bases - depth.keys()),
            ):
                depth[rec[0]] = rec[1]
        now = time.time()
        cols: list[list[Any]] = [[] for _ in range(17)]
        nonce = ""
        for w in writes:
            r = w.row
            full = delta = None
            base = None
            d = 0
            if w.blocklist is not None:
                full = join_ids(w.blocklist)
                if w.delta_base is not None and w.delta is not None:
                    enc = bl.encode_delta(w.delta)
                    bd = depth.get(w.delta_base)
                    if bd is not None and bd < MAX_DELTA_DEPTH and 2 * len(enc) <= len(full):
                        delta, base, d, full = enc, w.delta_base, bd + 1, None
                self._cache.put((ns_id, journal, r.jid), w.blocklist)
            if r.kind is Kind.FILE:
                depth[r.jid] = d
            nonce = secrets.token_hex(4)
            row = (
                r.jid, r.path, r.kind.value, r.size, r.mtime_ns, r.exec, r.target, r.device,
                r.base_jid, r.moved_from, r.chash, full, delta, base, d, nonce, now,
            )  # fmt: skip
            for col, value in zip(cols, row, strict=True):
                col.append(value)
        last: dict[str, Row] = {w.row.path: w.row for w in writes}  # one upsert per path
        taken = list({c for w in writes for c in w.new_chunks})
        head = writes[-1].row.jid
        note = json.dumps([self._me, ns_id, session, head_before + 1, head + 1])
        done = await con.fetchrow(
            "WITH e AS ("
            " INSERT INTO entries (ns_id, jid, path, kind, size, mtime_ns, exec, target, device,"
            " base_jid, moved_from, chash, bl_full, bl_delta, bl_base, bl_depth, nonce, created)"
            " SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[],"
            " $6::bigint[], $7::bool[], $8::text[], $9::text[], $10::bigint[], $11::text[],"
            " $12::bytea[], $13::bytea[], $14::bytea[], $15::bigint[], $16::int[], $17::text[],"
            " $18::float8[])),"
            " c AS ("
            " INSERT INTO current_entries (ns_id, path, jid, live, fold)"
            " SELECT $1, * FROM unnest($19::text[], $20::bigint[], $21::bool[], $22::text[])"
            " ON CONFLICT (ns_id, path) DO UPDATE SET jid=excluded.jid, live=excluded.live),"
            " t AS (UPDATE ns_chunks SET committed=true"
            " WHERE ns_id=$1 AND chunk_id = ANY($23::bytea[]) RETURNING 1),"
            " h AS (UPDATE namespaces SET head=$24 WHERE id=$1)"
            " SELECT (SELECT count(*) FROM t), pg_notify($25, $26)",
            ns_id,
            *cols,
            list(last),
            [r.jid for r in last.values()],
            [r.live for r in last.values()],
            [paths.fold_key(p) for p in last],
            taken,
            head,
            CHANNEL,
            note,
        )
        assert done is not None
        if done[0] != len(taken):
            raise _Retry  # garbage collection took an upload this commit holds
        return nonce

    async def _journal(self, ns_id: int) -> str:
        j = await self.pool.fetchval("SELECT journal FROM namespaces WHERE id=$1", ns_id)
        return str(j) if j is not None else ""

    async def _blocklists(
        self,
        con: Conn | asyncpg.Pool,
        ns_id: int,
        journal: str,
        jids: Collection[int],
    ) -> dict[int, list[ChunkId]]:
        """The blocklists of the file entries among ``jids`` (one query for those
        not cached: each one's delta chain down to a full list)."""
        out: dict[int, list[ChunkId]] = {}
        todo: list[int] = []
        for jid in jids:
            cached = self._cache.get((ns_id, journal, jid))
            if cached is not None:
                out[jid] = cached
            else:
                todo.append(jid)
        if not todo:
            return out
        rows = await con.fetch(
            "WITH RECURSIVE chain (start, jid, kind, bl_full, bl_delta, bl_base, step) AS ("
            " SELECT jid, jid, kind, bl_full, bl_delta, bl_base, 0 FROM entries"
            "  WHERE ns_id=$1 AND jid = ANY($2::bigint[])"
            " UNION ALL"
            " SELECT c.start, e.jid, e.kind, e.bl_full, e.bl_delta, e.bl_base, c.step + 1"
            "  FROM chain c JOIN entries e ON e.ns_id=$1 AND e.jid=c.bl_base"
            "  WHERE c.bl_full IS NULL AND c.kind='file' AND c.step < $3)"
            " SELECT start, jid, kind, bl_full, bl_delta, bl_base, step FROM chain"
            " ORDER BY start, step",
            ns_id,
            todo,
            MAX_DELTA_DEPTH + 1,
        )
        chains: dict[int, list[asyncpg.Record]] = {}
        for r in rows:
            chains.setdefault(r[0], []).append(r)
        for jid, chain in chains.items():
            if chain[0][2] != Kind.FILE.value:
                continue
            bottom = chain[-1]
            if bottom[2] != Kind.FILE.value or bottom[3] is None:
                raise StoreError(f"blocklist chain of {ns_id}/{jid} is broken at {bottom[1]}")
            ids = split_ids(bottom[3])
            for link in reversed(chain[:-1]):
                ids = bl.apply(ids, bl.decode_delta(link[4]))
            self._cache.put((ns_id, journal, jid), ids)
            out[jid] = ids
        return out

    async def blocklist(self, ns_id: int, jid: int) -> list[ChunkId] | None:
        return (await self._blocklists(self.pool, ns_id, await self._journal(ns_id), [jid])).get(
            jid
        )

    async def head(self, ns_id: int) -> Head:
        r = await self.pool.fetchrow(
            "SELECT n.journal, n.head, e.nonce FROM namespaces n LEFT JOIN entries e "
            "ON e.ns_id=n.id AND e.jid=n.head WHERE n.id=$1",
            ns_id,
        )
        if r is None:
            raise StoreError(f"no namespace {ns_id}")
        return Head(r[0], r[1], r[2] if r[1] else "0")

    @staticmethod
    async def _nonce(con: Conn | asyncpg.Pool, ns_id: int, jid: int) -> str | None:
        if jid == 0:
            return "0"
        n = await con.fetchval("SELECT nonce FROM entries WHERE ns_id=$1 AND jid=$2", ns_id, jid)
        return str(n) if n is not None else None

    async def nonce(self, ns_id: int, jid: int) -> str | None:
        return await self._nonce(self.pool, ns_id, jid)

    async def changes(self, ns_id: int, after: int, limit: int) -> tuple[list[Row], int]:
        """The current entry of every path changed after ``after``, in JID order,
        and the head as of the same read."""
        self._listen()
        async with (
            self.pool.acquire() as con,
            con.transaction(isolation="repeatable_read", readonly=True),
        ):
            head = await con.fetchval("SELECT head FROM namespaces WHERE id=$1", ns_id)
            rows = await con.fetch(
                f"SELECT {_E_COLS} FROM current_entries c JOIN entries e "
                "ON e.ns_id=c.ns_id AND e.jid=c.jid WHERE c.ns_id=$1 AND c.jid>$2 "
                "ORDER BY c.jid LIMIT $3",
                ns_id,
                after,
                limit,
            )
        return [entry_row(r) for r in rows], int(head or 0)

    async def version_at(self, ns_id: int, path: str, jid: int) -> Row | None:
        r = await self.pool.fetchrow(
            f"SELECT {_COLS} FROM entries WHERE ns_id=$1 AND path=$2 AND jid<=$3 "
            "ORDER BY jid DESC LIMIT 1",
            ns_id,
            path,
            jid,
        )
        return entry_row(r) if r else None

    async def sources(self, ns_id: int, rows: Sequence[Row], since: int) -> dict[int, Sources]:
        files = [r for r in rows if r.kind is Kind.FILE]
        if not files:
            return {}
        async with self.pool.acquire() as con:
            journal = await self._journal(ns_id)
            at: dict[str, Row] = {}
            if since > 0:
                names = {p for r in files for p in (r.path, r.moved_from) if p is not None}
                for r in await con.fetch(
                    f"SELECT {_E_COLS} FROM unnest($2::text[]) AS p(path) CROSS JOIN LATERAL "
                    f"(SELECT {_COLS} FROM entries WHERE ns_id=$1 AND path=p.path AND jid<=$3 "
                    "ORDER BY jid DESC LIMIT 1) e",
                    ns_id,
                    list(names),
                    since,
                ):
                    at[r[1]] = entry_row(r)
            bases: dict[int, Row | None] = {}
            for row in files:
                base = None
                for p in (row.path, row.moved_from):
                    cand = at.get(p) if p is not None else None
                    if cand is not None and cand.kind is Kind.FILE:
                        base = cand
                        break
                bases[row.jid] = base
            want = {r.jid for r in files} | {b.jid for b in bases.values() if b is not None}
            ids = await self._blocklists(con, ns_id, journal, want)
        out: dict[int, Sources] = {}
        for row in files:
            b = bases[row.jid]
            out[row.jid] = Sources(ids[row.jid], b, ids.get(b.jid) if b is not None else None)
        return out

    async def entry(self, ns_id: int, jid: int) -> Row | None:
        r = await self.pool.fetchrow(
            f"SELECT {_COLS} FROM entries WHERE ns_id=$1 AND jid=$2", ns_id, jid
        )
        return entry_row(r) if r else None

    async def journal(self, ns_id: int, after: int, upto: int) -> list[Row]:
        rows = await self.pool.fetch(
            f"SELECT {_COLS} FROM entries WHERE ns_id=$1 AND jid>$2 AND jid<=$3 ORDER BY jid",
            ns_id,
            after,
            upto,
        )
        return [entry_row(r) for r in rows]

    async def history(self, ns_id: int, path: str, before: int, limit: int) -> list[Row]:
        rows = await self.pool.fetch(
            f"SELECT {_COLS} FROM entries WHERE ns_id=$1 AND path=$2 AND jid<$3 "
            "ORDER BY jid DESC LIMIT $4",
            ns_id,
            path,
            before,
            limit,
        )
        return [entry_row(r) for r in rows]

    # -- folders -----------------------------------------------------------

    async def children(
        self, ns_id: int, folder: str, after: str, limit: int, deleted: bool = False
    ) -> list[Row]:
        prefix, end = folder_range(folder)
        sql = _CHILDREN.format(
            cols=_E_COLS,
            live="" if deleted else "AND c.live",
            upper="" if end is None else "AND c.path<$5",
        )
        args = (ns_id, max(after, prefix), len(prefix) + 1, limit)
        rows = await self.pool.fetch(sql, *args, *(() if end is None else (end,)))
        return [entry_row(r) for r in rows]

    async def under(
        self, ns_id: int, folder: str, after: str, limit: int, deleted: bool = False
    ) -> list[Row]:
        prefix, end = folder_range(folder)
        upper = "" if end is None else " AND c.path<$4"
        live = "" if deleted else " AND c.live"
        rows = await self.pool.fetch(
            f"SELECT {_E_COLS} FROM current_entries c JOIN entries e "
            "ON e.ns_id=c.ns_id AND e.jid=c.jid "
            f"WHERE c.ns_id=$1 AND c.path>$2{upper}{live} ORDER BY c.path LIMIT $3",
            ns_id,
            max(after, prefix),
            limit,
            *(() if end is None else (end,)),
        )
        return [entry_row(r) for r in rows]

    async def find(self, ns_id: int, text: str, after: str, limit: int) -> list[Row]:
        rows = await self.pool.fetch(
            f"SELECT {_E_COLS} FROM current_entries c JOIN entries e "
            "ON e.ns_id=c.ns_id AND e.jid=c.jid WHERE c.ns_id=$1 AND c.path>$2 AND c.live "
            "AND e.kind='file' AND strpos(c.path, $3)>0 ORDER BY c.path LIMIT $4",
            ns_id,
            after,
            text,
            limit,
        )
        return [entry_row(r) for r in rows]

    # -- chunks ------------------------------------------------------------

    async def missing(self, ns_id: int, ids: Sequence[ChunkId]) -> set[ChunkId]:
        held = await self.pool.fetch(
            "SELECT chunk_id FROM ns_chunks WHERE ns_id=$1 AND chunk_id = ANY($2::bytea[])",
            ns_id,
            list(ids),
        )
        return set(ids) - {bytes(r[0]) for r in held}

    async def locate(self, ns_id: int, ids: Sequence[ChunkId]) -> dict[ChunkId, ChunkLoc]:
        rows = await self.pool.fetch(
            f"SELECT {', '.join('c.' + c.strip() for c in _LOC_COLS.split(','))} "
            "FROM ns_chunks n JOIN chunks c ON c.id=n.chunk_id "
            "WHERE n.ns_id=$1 AND n.chunk_id = ANY($2::bytea[])",
            ns_id,
            list(ids),
        )
        return {bytes(r[0]): _loc(r) for r in rows}

    async def locate_stored(self, ids: Sequence[ChunkId]) -> dict[ChunkId, ChunkLoc]:
        """Global lookup, for dedup on upload only: never answer a client with it."""
        rows = await self.pool.fetch(
            f"SELECT {_LOC_COLS} FROM chunks WHERE id = ANY($1::bytea[])", list(ids)
        )
        return {bytes(r[0]): _loc(r) for r in rows}

    async def add_chunks(self, ns_id: int, chunks: Sequence[ChunkLoc]) -> None:
        # One row per id (an upsert may not touch a row twice); the last copy wins.
        last = list({c.chunk_id: c for c in chunks}.values())
        if not last:
            return
        now = time.time()
        async with self._tx() as con:
            # A chunk stored already is pointed at the copy just written, so that
            # the index does the same work either way (PROTOCOL §7.4).
            await con.execute(
                "INSERT INTO chunks (id, pack, pack_offset, length, codec, raw_size, created) "
                "SELECT *, $7 FROM unnest($1::bytea[], $2::text[], $3::bigint[], $4::bigint[], "
                "$5::smallint[], $6::bigint[]) "
                "ON CONFLICT (id) DO UPDATE SET pack=excluded.pack, "
                "pack_offset=excluded.pack_offset, length=excluded.length, "
                "codec=excluded.codec, created=excluded.created",
                [c.chunk_id for c in last],
                [c.pack for c in last],
                [c.offset for c in last],
                [c.length for c in last],
                [c.codec for c in last],
                [c.raw_size for c in last],
                now,
            )
            await con.execute(
                "INSERT INTO ns_chunks (ns_id, chunk_id, committed, touched) "
                "SELECT $1, id, false, $3 FROM unnest($2::bytea[]) AS t(id) "
                "ON CONFLICT (ns_id, chunk_id) DO UPDATE SET touched=excluded.touched",
                ns_id,
                [c.chunk_id for c in last],
                now,
            )

    # -- maintenance ---------------------------------------------------------

    async def gc(self, grace_seconds: float) -> tuple[GcStats, list[ChunkLoc]]:
        """Drop uploads no entry took up within the grace period, then chunks that no
        namespace holds; returns the dropped chunks' locations (for pack compaction)."""
        cutoff = time.time() - grace_seconds
        async with self._tx() as con:
            status = await con.execute(
                "DELETE FROM ns_chunks WHERE NOT committed AND touched<$1", cutoff
            )
            stale = int(status.split()[-1])
            dead = await con.fetch(
                f"DELETE FROM chunks c WHERE created<$1 AND NOT EXISTS "
                f"(SELECT 1 FROM ns_chunks n WHERE n.chunk_id=c.id) RETURNING {_LOC_COLS}",
                cutoff,
            )
        locs = [_loc(r) for r in dead]
        return GcStats(stale, len(locs), sum(d.length for d in locs)), locs

    async def pack_usage(self) -> dict[str, int]:
        """Live payload bytes per pack."""
        rows = await self.pool.fetch("SELECT pack, SUM(length) FROM chunks GROUP BY pack")
        return {p: int(n) for p, n in rows}

    async def pack_chunks(self, pack: str) -> list[ChunkLoc]:
        rows = await self.pool.fetch(f"SELECT {_LOC_COLS} FROM chunks WHERE pack=$1", pack)
        return [_loc(r) for r in rows]

    async def chunks_in(self, packs: Sequence[str]) -> list[ChunkLoc]:
        rows = await self.pool.fetch(
            f"SELECT {_LOC_COLS} FROM chunks WHERE pack = ANY($1::text[]) "
            "ORDER BY pack, pack_offset",
            list(packs),
        )
        return [_loc(r) for r in rows]

    async def all_chunks(self) -> list[ChunkLoc]:
        rows = await self.pool.fetch(f"SELECT {_LOC_COLS} FROM chunks ORDER BY pack, pack_offset")
        return [_loc(r) for r in rows]

    async def lease(self, name: str, holder: str, seconds: float) -> bool:
        now = time.time()
        got = await self.pool.fetchval(
            "INSERT INTO leases (name, holder, until) VALUES ($1,$2,$3) "
            "ON CONFLICT (name) DO UPDATE SET holder=excluded.holder, until=excluded.until "
            "WHERE leases.holder=excluded.holder OR leases.until<=$4 RETURNING 1",
            name,
            holder,
            now + seconds,
            now,
        )
        return got is not None

    async def retired(self) -> dict[str, float]:
        return {p: t for p, t in await self.pool.fetch("SELECT pack, since FROM retired")}

    async def set_retired(self, add: Sequence[str], drop: Sequence[str]) -> None:
        async with self._tx() as con:
            await con.execute(
                "INSERT INTO retired (pack, since) SELECT unnest($1::text[]), $2 "
                "ON CONFLICT (pack) DO NOTHING",
                list(add),
                time.time(),
            )
            await con.execute("DELETE FROM retired WHERE pack = ANY($1::text[])", list(drop))

    async def relocate(self, moves: Sequence[ChunkLoc]) -> None:
        if not moves:
            return
        await self.pool.execute(
            "UPDATE chunks c SET pack=m.pack, pack_offset=m.off, length=m.len "
            "FROM unnest($1::bytea[], $2::text[], $3::bigint[], $4::bigint[]) "
            "AS m(id, pack, off, len) WHERE c.id=m.id",
            [m.chunk_id for m in moves],
            [m.pack for m in moves],
            [m.offset for m in moves],
            [m.length for m in moves],
        )

    async def check_entries(self) -> list[str]:
        """Every file entry's blocklist resolves, and its chunks are indexed and
        held (committed) by its namespace; JIDs are gapless up to the head."""
        problems: list[str] = []
        async with (
            self.pool.acquire() as con,
            con.transaction(isolation="repeatable_read", readonly=True),
        ):
            for ns_id, head, journal, n, top in await con.fetch(
                "SELECT n.id, n.head, n.journal, COUNT(e.jid), COALESCE(MAX(e.jid), 0) "
                "FROM namespaces n LEFT JOIN entries e ON e.ns_id=n.id GROUP BY n.id ORDER BY n.id"
            ):
                if n != head or top != head:
                    problems.append(f"namespace {ns_id}: {n} entries, max jid {top}, head {head}")
                files = [
                    r[0]
                    for r in await con.fetch(
                        "SELECT jid FROM entries WHERE ns_id=$1 AND kind='file' ORDER BY jid",
                        ns_id,
                    )
                ]
                for jid in files:
                    try:
                        ids = (await self._blocklists(con, ns_id, journal, [jid])).get(jid, [])
                    except (StoreError, bl.DeltaError) as exc:
                        problems.append(f"entry {ns_id}/{jid}: {exc}")
                        continue
                    uniq = list(dict.fromkeys(ids))
                    found = await con.fetch(
                        "SELECT c.id, n.chunk_id IS NOT NULL FROM chunks c LEFT JOIN ns_chunks n "
                        "ON n.ns_id=$1 AND n.chunk_id=c.id WHERE c.id = ANY($2::bytea[])",
                        ns_id,
                        uniq,
                    )
                    stored = {bytes(r[0]): r[1] for r in found}
                    for cid in uniq:
                        if cid not in stored:
                            problems.append(f"entry {ns_id}/{jid}: chunk {cid.hex()} not stored")
                        elif not stored[cid]:
                            problems.append(f"entry {ns_id}/{jid}: chunk {cid.hex()} not held")
        return problems


class _Reader:
    """``CommitReader`` inside the committing transaction."""

    def __init__(self, store: PostgresStore, con: Conn, ns_id: int, journal: str) -> None:
        self.s = store
        self.con = con
        self.ns = ns_id
        self.journal = journal
        self.depths: dict[int, int] = {}  # delta depth of the file entries read by JID

    async def _current(self, where: str, *args: object) -> list[Row]:
        rows = await self.con.fetch(
            f"SELECT {_E_COLS} FROM current_entries c JOIN entries e "
            f"ON e.ns_id=c.ns_id AND e.jid=c.jid WHERE c.ns_id=$1 AND {where}",
            self.ns,
            *args,
        )
        return [entry_row(r) for r in rows]

    # One index lookup per path or key (LATERAL): with ``= ANY(array)`` the
    # planner may scan the namespace's every row when its statistics are
    # stale, as they are while a first sync fills a namespace (measured: a
    # 1,000-path commit took 1 s at 30,000 entries, 0.09 s at 3,000).
    async def _lookup(self, where: str, keys: Collection[str]) -> list[Row]:
        rows = await self.con.fetch(
            f"SELECT {_E_COLS} FROM unnest($2::text[]) AS k(key) CROSS JOIN LATERAL "
            f"(SELECT * FROM current_entries c WHERE c.ns_id=$1 AND {where}) c "
            "JOIN entries e ON e.ns_id=c.ns_id AND e.jid=c.jid",
            self.ns,
            list(keys),
        )
        return [entry_row(r) for r in rows]

    async def current(self, paths_: Collection[str]) -> list[Row]:
        return await self._lookup("c.path = k.key", paths_)

    async def live_by_fold(self, keys: Collection[str]) -> list[Row]:
        return await self._lookup("c.fold = k.key AND c.live", keys)

    async def live_under(self, path: str, limit: int | None) -> list[Row]:
        return await self._current(
            "c.path >= $2 AND c.path < $3 AND c.live ORDER BY c.path LIMIT $4",
            path + "/",
            path + "0",
            limit,
        )

    async def entries(self, jids: Collection[int]) -> list[Row]:
        rows = await self.con.fetch(
            f"SELECT {_COLS}, bl_depth FROM entries WHERE ns_id=$1 AND jid = ANY($2::bigint[])",
            self.ns,
            list(jids),
        )
        self.depths.update((r[0], r[-1]) for r in rows)
        return [entry_row(r) for r in rows]

    async def blocklists(self, jids: Collection[int]) -> dict[int, list[ChunkId]]:
        return await self.s._blocklists(self.con, self.ns, self.journal, jids)

    async def chunks(self, ids: Collection[ChunkId]) -> tuple[set[ChunkId], dict[ChunkId, int]]:
        rows = await self.con.fetch(
            "SELECT c.id, c.raw_size, n.chunk_id IS NOT NULL FROM chunks c "
            "LEFT JOIN ns_chunks n ON n.ns_id=$1 AND n.chunk_id=c.id "
            "WHERE c.id = ANY($2::bytea[])",
            self.ns,
            list(ids),
        )
        return {bytes(r[0]) for r in rows if r[2]}, {bytes(r[0]): r[1] for r in rows}
