"""SQLite metadata store: the embedded default.

One connection, used from one dedicated thread, so every transaction is
serialized (SQLite allows one writer anyway) and JIDs are assigned gaplessly
inside ``BEGIN IMMEDIATE``. WAL mode with ``synchronous=FULL``: a commit that
returned is on disk. Admin commands may open the same file from another
process; ``busy_timeout`` makes them wait their turn.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, TypeVar

from linesync.core import blocklist as bl
from linesync.core import paths
from linesync.core.ids import ChunkId, join_ids, split_ids
from linesync.protocol.schemas import CommitOp, Kind
from linesync.server.commit import Limits, Write, plan_commit
from linesync.server.model import ChunkLoc, Row, Sources
from linesync.server.stores.base import CommitListener, CommitOutcome, GcStats, Head, StoreError
from linesync.server.stores.common import (
    ENTRY_COLUMNS,
    MAX_DELTA_DEPTH,
    BlocklistCache,
    CacheStats,
    child_of,
    entry_row,
    folder_range,
)
from linesync.server.stores.sqlite_admin import SqliteAdmin

T = TypeVar("T")
_SQL_VARS = 500
_SKIP_READ = (4, 256)  # rows a folder's skip scan reads at a time: first, most

_ENTRY_COLS = ENTRY_COLUMNS


def _batches(items: Sequence[T], n: int = _SQL_VARS) -> list[Sequence[T]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


class SqliteStore(SqliteAdmin):
    """MetadataStore on one SQLite file."""

    def __init__(self, path: Path, executor: Executor | None = None) -> None:
        super().__init__(path, executor)
        self._cache = BlocklistCache(max_ids=2_000_000)
        self._listeners: list[CommitListener] = []

    @property
    def cache_stats(self) -> CacheStats:
        """The blocklist cache's counters (``ReportsCache``)."""
        return self._cache.stats

    # -- journal -----------------------------------------------------------

    async def commit(
        self,
        ns_id: int,
        ops: Sequence[CommitOp],
        device: str,
        limits: Limits,
        session: str | None = None,
    ) -> CommitOutcome:
        out: CommitOutcome = await self._run(self._tx, self._commit, ns_id, ops, device, limits)
        if out.head > out.head_before:
            for listener in self._listeners:
                listener(ns_id, session, range(out.head_before + 1, out.head + 1))
        return out

    def subscribe(self, listener: CommitListener) -> None:
        # One process per database file (the data directory's lock): its own
        # commits are all there are.
        self._listeners.append(listener)

    def _commit(
        self, ns_id: int, ops: Sequence[CommitOp], device: str, limits: Limits
    ) -> CommitOutcome:
        head = self.db.execute("SELECT head FROM namespaces WHERE id=?", (ns_id,)).fetchone()[0]
        head_before = head
        plan = plan_commit(_View(self, ns_id), ops, device, head, limits)
        now = time.time()
        for w in plan.writes:
            self._insert(ns_id, w, now)
        if plan.writes:
            head = plan.writes[-1].row.jid
            self.db.execute("UPDATE namespaces SET head=? WHERE id=?", (head, ns_id))
        nonce = self._nonce(ns_id, head) or "0"
        return CommitOutcome(plan.results, head, head_before, nonce)

    def _insert(self, ns_id: int, w: Write, now: float) -> None:
        r = w.row
        full = delta = None
        base = None
        depth = 0
        if w.blocklist is not None:
            full = join_ids(w.blocklist)
            if w.delta_base is not None and w.delta is not None:
                enc = bl.encode_delta(w.delta)
                d = self.db.execute(
                    "SELECT bl_depth FROM entries WHERE ns_id=? AND jid=?", (ns_id, w.delta_base)
                ).fetchone()
                if d is not None and d[0] < MAX_DELTA_DEPTH and 2 * len(enc) <= len(full):
                    delta, base, depth, full = enc, w.delta_base, d[0] + 1, None
            self._cache.put((ns_id, self._journal(ns_id), r.jid), w.blocklist)
        self.db.execute(
            "INSERT INTO entries (ns_id, jid, path, kind, size, mtime_ns, exec, target, device,"
            " base_jid, moved_from, chash, bl_full, bl_delta, bl_base, bl_depth, nonce, created)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                ns_id, r.jid, r.path, r.kind.value, r.size, r.mtime_ns, int(r.exec), r.target,
                r.device, r.base_jid, r.moved_from, r.chash, full, delta, base, depth,
                secrets.token_hex(4), now,
            ),
        )  # fmt: skip
        self.db.execute(
            "INSERT INTO current (ns_id, path, jid, live, fold) VALUES (?,?,?,?,?) "
            "ON CONFLICT (ns_id, path) DO UPDATE SET jid=excluded.jid, live=excluded.live",
            (ns_id, r.path, r.jid, int(r.live), paths.fold_key(r.path)),
        )
        for batch in _batches(w.new_chunks):
            self.db.execute(
                f"UPDATE ns_chunks SET committed=1 WHERE ns_id=? AND chunk_id IN "
                f"({','.join('?' * len(batch))})",
                (ns_id, *batch),
            )

    def _journal(self, ns_id: int) -> str:
        r = self.db.execute("SELECT journal FROM namespaces WHERE id=?", (ns_id,)).fetchone()
        return str(r[0]) if r else ""

    def _blocklist(self, ns_id: int, jid: int) -> list[ChunkId] | None:
        # Cached by journal id too: a reset (maybe by another process) mints a new
        # one, so blocklists of the erased journal can never be served again.
        journal = self._journal(ns_id)
        chain: list[bytes] = []
        cur = jid
        ids: list[ChunkId] | None = None
        while True:
            cached = self._cache.get((ns_id, journal, cur))
            if cached is not None:
                ids = cached
                break
            r = self.db.execute(
                "SELECT kind, bl_full, bl_delta, bl_base FROM entries WHERE ns_id=? AND jid=?",
                (ns_id, cur),
            ).fetchone()
            if r is None or r[0] != Kind.FILE.value:
                if not chain:
                    return None
                raise StoreError(f"blocklist chain of {ns_id}/{jid} is broken at {cur}")
            if r[1] is not None:
                ids = split_ids(r[1])
                break
            chain.append(r[2])
            cur = r[3]
        for raw in reversed(chain):
            ids = bl.apply(ids, bl.decode_delta(raw))
        self._cache.put((ns_id, journal, jid), ids)
        return ids

    async def blocklist(self, ns_id: int, jid: int) -> list[ChunkId] | None:
        return await self._run(self._blocklist, ns_id, jid)

    async def head(self, ns_id: int) -> Head:
        def go() -> Head:
            journal, head = self.db.execute(
                "SELECT journal, head FROM namespaces WHERE id=?", (ns_id,)
            ).fetchone()
            return Head(journal, head, self._nonce(ns_id, head) or "0")

        return await self._run(go)

    def _nonce(self, ns_id: int, jid: int) -> str | None:
        if jid == 0:
            return "0"
        r = self.db.execute(
            "SELECT nonce FROM entries WHERE ns_id=? AND jid=?", (ns_id, jid)
        ).fetchone()
        return str(r[0]) if r else None

    async def nonce(self, ns_id: int, jid: int) -> str | None:
        return await self._run(self._nonce, ns_id, jid)

    async def changes(self, ns_id: int, after: int, limit: int) -> tuple[list[Row], int]:
        """The current entry of every path changed after ``after``, in JID order,
        and the head as of the same read."""

        def go() -> tuple[list[Row], int]:
            self.db.execute("BEGIN")
            try:
                head = self.db.execute(
                    "SELECT head FROM namespaces WHERE id=?", (ns_id,)
                ).fetchone()[0]
                rows = [
                    entry_row(r)
                    for r in self.db.execute(
                        f"SELECT {', '.join('e.' + c.strip() for c in _ENTRY_COLS.split(','))} "
                        "FROM current c JOIN entries e ON e.ns_id=c.ns_id AND e.jid=c.jid "
                        "WHERE c.ns_id=? AND c.jid>? ORDER BY c.jid LIMIT ?",
                        (ns_id, after, limit),
                    )
                ]
            finally:
                self.db.execute("COMMIT")
            return rows, head

        return await self._run(go)

    def _version_at(self, ns_id: int, path: str, jid: int) -> Row | None:
        r = self.db.execute(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE ns_id=? AND path=? AND jid<=? "
            "ORDER BY jid DESC LIMIT 1",
            (ns_id, path, jid),
        ).fetchone()
        return entry_row(r) if r else None

    async def version_at(self, ns_id: int, path: str, jid: int) -> Row | None:
        return await self._run(self._version_at, ns_id, path, jid)

    def _sources(self, ns_id: int, rows: Sequence[Row], since: int) -> dict[int, Sources]:
        out: dict[int, Sources] = {}
        for row in rows:
            if row.kind is not Kind.FILE:
                continue
            ids = self._blocklist(ns_id, row.jid)
            assert ids is not None
            base = None
            if since > 0:
                for path in (row.path, row.moved_from):
                    cand = self._version_at(ns_id, path, since) if path is not None else None
                    if cand is not None and cand.kind is Kind.FILE:
                        base = cand
                        break
            base_ids = self._blocklist(ns_id, base.jid) if base is not None else None
            out[row.jid] = Sources(ids, base, base_ids)
        return out

    async def sources(self, ns_id: int, rows: Sequence[Row], since: int) -> dict[int, Sources]:
        return await self._run(self._sources, ns_id, rows, since)

    def _entry(self, ns_id: int, jid: int) -> Row | None:
        r = self.db.execute(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE ns_id=? AND jid=?", (ns_id, jid)
        ).fetchone()
        return entry_row(r) if r else None

    async def entry(self, ns_id: int, jid: int) -> Row | None:
        return await self._run(self._entry, ns_id, jid)

    async def journal(self, ns_id: int, after: int, upto: int) -> list[Row]:
        def go() -> list[Row]:
            return [
                entry_row(r)
                for r in self.db.execute(
                    f"SELECT {_ENTRY_COLS} FROM entries WHERE ns_id=? AND jid>? AND jid<=? "
                    "ORDER BY jid",
                    (ns_id, after, upto),
                )
            ]

        return await self._run(go)

    async def history(self, ns_id: int, path: str, before: int, limit: int) -> list[Row]:
        def go() -> list[Row]:
            return [
                entry_row(r)
                for r in self.db.execute(
                    f"SELECT {_ENTRY_COLS} FROM entries WHERE ns_id=? AND path=? AND jid<? "
                    "ORDER BY jid DESC LIMIT ?",
                    (ns_id, path, before, limit),
                )
            ]

        return await self._run(go)

    # -- folders -----------------------------------------------------------

    def _current_rows(self, where: str, args: tuple[object, ...]) -> list[Row]:
        cols = ", ".join("e." + c.strip() for c in _ENTRY_COLS.split(","))
        return [
            entry_row(r)
            for r in self.db.execute(
                f"SELECT {cols} FROM current c JOIN entries e ON e.ns_id=c.ns_id AND e.jid=c.jid "
                f"WHERE {where}",
                args,
            )
        ]

    async def children(
        self, ns_id: int, folder: str, after: str, limit: int, deleted: bool = False
    ) -> list[Row]:
        prefix, end = folder_range(folder)

        def go() -> list[Row]:
            # A skip scan: read the folder's range a few rows at a time; a
            # path deeper down names a child folder, whose subtree the next
            # read jumps. Reads grow while they find children only, and
            # shrink again at a jump (whose rows were wasted).
            out: list[Row] = []
            bound, op, n = max(after, prefix), ">", _SKIP_READ[0]
            live = "" if deleted else " AND c.live=1"
            upper = "" if end is None else " AND c.path<?"
            while len(out) < limit:
                found = self._current_rows(
                    f"c.ns_id=? AND c.path{op}?{upper}{live} ORDER BY c.path LIMIT ?",
                    (ns_id, bound, *(() if end is None else (end,)), n),
                )
                for row in found:
                    child = child_of(prefix, row.path)
                    if child != row.path:
                        bound, op, n = child + "0", ">=", _SKIP_READ[0]  # past ``child/``
                        break
                    out.append(row)
                    bound, op = row.path, ">"
                    if len(out) == limit:
                        break
                else:
                    if len(found) < n:
                        break
                    n = min(2 * n, _SKIP_READ[1])
            return out

        return await self._run(go)

    async def under(
        self, ns_id: int, folder: str, after: str, limit: int, deleted: bool = False
    ) -> list[Row]:
        prefix, end = folder_range(folder)
        upper = "" if end is None else " AND c.path<?"
        live = "" if deleted else " AND c.live=1"
        return await self._run(
            self._current_rows,
            f"c.ns_id=? AND c.path>?{upper}{live} ORDER BY c.path LIMIT ?",
            (ns_id, max(after, prefix), *(() if end is None else (end,)), limit),
        )

    async def find(self, ns_id: int, text: str, after: str, limit: int) -> list[Row]:
        return await self._run(
            self._current_rows,
            "c.ns_id=? AND c.path>? AND c.live=1 AND e.kind='file' AND instr(c.path, ?)>0 "
            "ORDER BY c.path LIMIT ?",
            (ns_id, after, text, limit),
        )

    # -- chunks ------------------------------------------------------------

    def _held(self, ns_id: int, ids: Sequence[ChunkId]) -> set[ChunkId]:
        held: set[ChunkId] = set()
        for batch in _batches(ids):
            held.update(
                r[0]
                for r in self.db.execute(
                    f"SELECT chunk_id FROM ns_chunks WHERE ns_id=? AND chunk_id IN "
                    f"({','.join('?' * len(batch))})",
                    (ns_id, *batch),
                )
            )
        return held

    def _missing(self, ns_id: int, ids: Sequence[ChunkId]) -> set[ChunkId]:
        return set(ids) - self._held(ns_id, ids)

    async def missing(self, ns_id: int, ids: Sequence[ChunkId]) -> set[ChunkId]:
        return await self._run(self._missing, ns_id, ids)

    def _locate(self, ns_id: int | None, ids: Sequence[ChunkId]) -> dict[ChunkId, ChunkLoc]:
        out: dict[ChunkId, ChunkLoc] = {}
        for batch in _batches(ids):
            marks = ",".join("?" * len(batch))
            if ns_id is None:
                q = (
                    "SELECT id, pack, offset, length, codec, raw_size FROM chunks "
                    f"WHERE id IN ({marks})"
                )
                args: tuple[Any, ...] = tuple(batch)
            else:
                q = (
                    "SELECT c.id, c.pack, c.offset, c.length, c.codec, c.raw_size FROM ns_chunks n "
                    f"JOIN chunks c ON c.id=n.chunk_id WHERE n.ns_id=? AND n.chunk_id IN ({marks})"
                )
                args = (ns_id, *batch)
            for r in self.db.execute(q, args):
                out[r[0]] = ChunkLoc(*r)
        return out

    async def locate(self, ns_id: int, ids: Sequence[ChunkId]) -> dict[ChunkId, ChunkLoc]:
        return await self._run(self._locate, ns_id, ids)

    async def locate_stored(self, ids: Sequence[ChunkId]) -> dict[ChunkId, ChunkLoc]:
        """Global lookup, for dedup on upload only: never answer a client with it."""
        return await self._run(self._locate, None, ids)

    def _chunk_sizes(self, ids: Sequence[ChunkId]) -> dict[ChunkId, int]:
        return {cid: loc.raw_size for cid, loc in self._locate(None, ids).items()}

    async def add_chunks(self, ns_id: int, chunks: Sequence[ChunkLoc]) -> None:
        def go() -> None:
            now = time.time()
            self.db.executemany(
                "INSERT INTO chunks (id, pack, offset, length, codec, raw_size, created) "
                # A chunk stored already is pointed at the copy just written, so
                # that the index does the same work either way (PROTOCOL §7.4).
                "VALUES (?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET pack=excluded.pack, "
                "offset=excluded.offset, length=excluded.length, codec=excluded.codec, "
                "created=excluded.created",
                [
                    (c.chunk_id, c.pack, c.offset, c.length, c.codec, c.raw_size, now)
                    for c in chunks
                ],
            )
            self.db.executemany(
                "INSERT INTO ns_chunks (ns_id, chunk_id, committed, touched) VALUES (?,?,0,?) "
                "ON CONFLICT (ns_id, chunk_id) DO UPDATE SET touched=excluded.touched",
                [(ns_id, c.chunk_id, now) for c in chunks],
            )

        await self._run(self._tx, go)

    async def gc(self, grace_seconds: float) -> tuple[GcStats, list[ChunkLoc]]:
        """Drop uploads no entry took up within the grace period, then chunks that no
        namespace holds; returns the dropped chunks' locations (for pack compaction)."""

        def go() -> tuple[GcStats, list[ChunkLoc]]:
            cutoff = time.time() - grace_seconds
            stale = self.db.execute(
                "DELETE FROM ns_chunks WHERE committed=0 AND touched<?", (cutoff,)
            ).rowcount
            dead = [
                ChunkLoc(*r)
                for r in self.db.execute(
                    "SELECT id, pack, offset, length, codec, raw_size FROM chunks c "
                    "WHERE created<? AND NOT EXISTS "
                    "(SELECT 1 FROM ns_chunks n WHERE n.chunk_id=c.id)",
                    (cutoff,),
                )
            ]
            for batch in _batches([d.chunk_id for d in dead]):
                self.db.execute(
                    f"DELETE FROM chunks WHERE id IN ({','.join('?' * len(batch))})", tuple(batch)
                )
            freed = sum(d.length for d in dead)
            return GcStats(stale, len(dead), freed), dead

        return await self._run(self._tx, go)

    async def pack_usage(self) -> dict[str, int]:
        """Live payload bytes per pack."""

        def go() -> dict[str, int]:
            return {
                p: int(n)
                for p, n in self.db.execute("SELECT pack, SUM(length) FROM chunks GROUP BY pack")
            }

        return await self._run(go)

    async def pack_chunks(self, pack: str) -> list[ChunkLoc]:
        def go() -> list[ChunkLoc]:
            return [
                ChunkLoc(*r)
                for r in self.db.execute(
                    "SELECT id, pack, offset, length, codec, raw_size FROM chunks WHERE pack=?",
                    (pack,),
                )
            ]

        return await self._run(go)

    async def chunks_in(self, packs: Sequence[str]) -> list[ChunkLoc]:
        def go() -> list[ChunkLoc]:
            out: list[ChunkLoc] = []
            for batch in _batches(list(packs)):
                out += [
                    ChunkLoc(*r)
                    for r in self.db.execute(
                        "SELECT id, pack, offset, length, codec, raw_size FROM chunks "
                        f"WHERE pack IN ({','.join('?' * len(batch))})",
                        tuple(batch),
                    )
                ]
            return sorted(out, key=lambda c: (c.pack, c.offset))

        return await self._run(go)

    async def all_chunks(self) -> list[ChunkLoc]:
        def go() -> list[ChunkLoc]:
            q = "SELECT id, pack, offset, length, codec, raw_size FROM chunks ORDER BY pack, offset"
            return [ChunkLoc(*r) for r in self.db.execute(q)]

        return await self._run(go)

    async def check_entries(self) -> list[str]:
        """Every file entry's blocklist resolves, and its chunks are indexed and
        held (committed) by its namespace; JIDs are gapless up to the head."""

        def go() -> list[str]:
            problems: list[str] = []
            for ns_id, head in self.db.execute("SELECT id, head FROM namespaces").fetchall():
                n, top = self.db.execute(
                    "SELECT COUNT(*), COALESCE(MAX(jid), 0) FROM entries WHERE ns_id=?", (ns_id,)
                ).fetchone()
                if n != head or top != head:
                    problems.append(f"namespace {ns_id}: {n} entries, max jid {top}, head {head}")
                files = self.db.execute(
                    "SELECT jid FROM entries WHERE ns_id=? AND kind='file'", (ns_id,)
                ).fetchall()
                for (jid,) in files:
                    try:
                        ids = self._blocklist(ns_id, jid) or []
                    except (StoreError, bl.DeltaError) as exc:
                        problems.append(f"entry {ns_id}/{jid}: {exc}")
                        continue
                    uniq = list(dict.fromkeys(ids))
                    held = self._held(ns_id, uniq)
                    stored = self._locate(None, uniq)
                    for cid in uniq:
                        if cid not in stored:
                            problems.append(f"entry {ns_id}/{jid}: chunk {cid.hex()} not stored")
                        elif cid not in held:
                            problems.append(f"entry {ns_id}/{jid}: chunk {cid.hex()} not held")
            return problems

        return await self._run(go)

    async def lease(self, name: str, holder: str, seconds: float) -> bool:
        def go() -> bool:
            now = time.time()
            cur = self.db.execute(
                "INSERT INTO leases (name, holder, until) VALUES (?,?,?) "
                "ON CONFLICT (name) DO UPDATE SET holder=excluded.holder, until=excluded.until "
                "WHERE leases.holder=excluded.holder OR leases.until<=?",
                (name, holder, now + seconds, now),
            )
            return cur.rowcount == 1

        return await self._run(self._tx, go)

    async def retired(self) -> dict[str, float]:
        def go() -> dict[str, float]:
            return {p: t for p, t in self.db.execute("SELECT pack, since FROM retired")}

        return await self._run(go)

    async def set_retired(self, add: Sequence[str], drop: Sequence[str]) -> None:
        def go() -> None:
            now = time.time()
            self.db.executemany(
                "INSERT INTO retired (pack, since) VALUES (?,?) ON CONFLICT (pack) DO NOTHING",
                [(p, now) for p in add],
            )
            self.db.executemany("DELETE FROM retired WHERE pack=?", [(p,) for p in drop])

        await self._run(self._tx, go)

    async def relocate(self, moves: Sequence[ChunkLoc]) -> None:
        def go() -> None:
            self.db.executemany(
                "UPDATE chunks SET pack=?, offset=?, length=? WHERE id=?",
                [(m.pack, m.offset, m.length, m.chunk_id) for m in moves],
            )

        await self._run(self._tx, go)


class _View:
    """CommitView over the store, inside the committing transaction."""

    def __init__(self, store: SqliteStore, ns_id: int) -> None:
        self.s = store
        self.ns = ns_id

    def _rows(self, where: str, args: tuple[Any, ...]) -> list[Row]:
        cols = ", ".join("e." + c.strip() for c in _ENTRY_COLS.split(","))
        return [
            entry_row(r)
            for r in self.s.db.execute(
                f"SELECT {cols} FROM current c JOIN entries e ON e.ns_id=c.ns_id AND e.jid=c.jid "
                f"WHERE c.ns_id=? AND {where}",
                (self.ns, *args),
            )
        ]

    def current(self, path: str) -> Row | None:
        found = self._rows("c.path=?", (path,))
        return found[0] if found else None

    def entry(self, jid: int) -> Row | None:
        return self.s._entry(self.ns, jid)

    def live_under(self, path: str, limit: int | None) -> list[Row]:
        return self._rows(
            "c.path>=? AND c.path<? AND c.live=1 ORDER BY c.path LIMIT ?",
            (path + "/", path + "0", -1 if limit is None else limit),
        )

    def live_by_fold(self, key: str) -> list[Row]:
        return self._rows("c.fold=? AND c.live=1", (key,))

    def blocklist(self, jid: int) -> list[ChunkId] | None:
        return self.s._blocklist(self.ns, jid)

    def missing(self, ids: Sequence[ChunkId]) -> set[ChunkId]:
        return self.s._missing(self.ns, ids)

    def chunk_sizes(self, ids: Sequence[ChunkId]) -> dict[ChunkId, int]:
        return self.s._chunk_sizes(ids)
