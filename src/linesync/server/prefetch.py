"""Commit planning on a prefetched snapshot, for stores that read asynchronously.

``plan_commit`` reads the namespace through a synchronous :class:`CommitView`.
A store whose reads are awaits (PostgreSQL) cannot serve it directly, and one
query per read would cost a round trip each. So, inside its transaction, the
store hands :func:`plan_prefetched` a :class:`CommitReader` of batched reads:

1. :func:`stages` says what the batch will read (the ops' paths, their
   parents, case-fold keys, base versions, the subtrees of folder moves, the
   chunks new content adds and removes), in three rounds that each depend on
   the one before (the current entries, then their blocklists and subtrees,
   then the moved children and removed chunks).
2. The snapshot answers ``plan_commit`` from memory. A read it was not given
   raises :class:`Miss`; the missing part is fetched and the (pure) plan runs
   again. The prefetch is meant to make that never happen (the property test
   in tests/core/test_prefetch.py checks it on random batches); the fallback
   keeps an unforeseen read correct, only slower.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from linesync.core import blocklist as bl
from linesync.core import paths
from linesync.core.ids import ChunkId, unpack_ids
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.schemas import CommitOp, Kind
from linesync.server.commit import Limits, Plan, plan_commit, validate_op
from linesync.server.model import Row

# A plan that keeps missing reads after this many fetches has met a batch the
# prefetch does not understand; each fetch still adds what was missing, so the
# loop ends, but a bound keeps one request's work bounded.
MAX_MISSES = 256


class CommitReader(Protocol):
    """Batched reads of one namespace, as of the committing transaction."""

    async def current(self, paths: Collection[str]) -> list[Row]:
        """The current entry (tombstones too) of each path that has one."""
        ...

    async def live_by_fold(self, keys: Collection[str]) -> list[Row]: ...
    async def live_under(self, path: str, limit: int | None) -> list[Row]:
        """The first ``limit`` (None: all) live entries strictly under ``path``, by path."""
        ...

    async def entries(self, jids: Collection[int]) -> list[Row]: ...
    async def blocklists(self, jids: Collection[int]) -> dict[int, list[ChunkId]]:
        """The blocklist of each file entry among ``jids``."""
        ...

    async def chunks(self, ids: Collection[ChunkId]) -> tuple[set[ChunkId], dict[ChunkId, int]]:
        """Which of ``ids`` the namespace holds, and the size of each stored one."""
        ...


@dataclass
class Loads:
    """What to fetch next."""

    paths: set[str] = field(default_factory=set)
    folds: set[str] = field(default_factory=set)
    subtrees: dict[str, int | None] = field(default_factory=dict)  # path -> limit (None: all)
    jids: set[int] = field(default_factory=set)
    chunks: set[ChunkId] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.paths or self.folds or self.subtrees or self.jids or self.chunks)

    def subtree(self, path: str, limit: int | None) -> None:
        if path in self.subtrees:
            old = self.subtrees[path]
            limit = None if old is None or limit is None else max(old, limit)
        self.subtrees[path] = limit


class Miss(Exception):
    """The plan read something the snapshot was not given."""

    def __init__(self, loads: Loads) -> None:
        super().__init__("prefetch miss")
        self.loads = loads


class Snapshot:
    """A ``CommitView`` from prefetched reads; any other read raises :class:`Miss`."""

    def __init__(self) -> None:
        self.cur: dict[str, Row | None] = {}  # path -> current entry (None: none)
        self.entries: dict[int, Row | None] = {}
        self.blocklists: dict[int, list[ChunkId] | None] = {}
        self.folds: dict[str, list[Row]] = {}
        self.subtrees: dict[str, tuple[list[Row], bool]] = {}  # path -> (rows, complete)
        self.held: set[ChunkId] = set()
        self.sizes: dict[ChunkId, int] = {}
        self.known_chunks: set[ChunkId] = set()
        self.missed: list[Loads] = []  # what the plan read beyond the prefetch

    # -- filling -----------------------------------------------------------

    def _rows(self, rows: Sequence[Row]) -> None:
        for r in rows:
            self.cur[r.path] = r
            self.entries[r.jid] = r

    async def load(self, reader: CommitReader, loads: Loads) -> None:
        if loads.paths:
            self._rows(await reader.current(loads.paths))
            for p in loads.paths:
                self.cur.setdefault(p, None)
        if loads.folds:
            found = await reader.live_by_fold(loads.folds)
            self._rows(found)
            for key in loads.folds:
                self.folds[key] = []
            for r in found:
                self.folds[paths.fold_key(r.path)].append(r)
        for path, limit in loads.subtrees.items():
            rows = await reader.live_under(path, limit)
            self._rows(rows)
            self.subtrees[path] = (rows, limit is None or len(rows) < limit)
        if loads.jids:
            # (versions by JID: not necessarily their paths' current entries)
            self.entries.update((r.jid, r) for r in await reader.entries(loads.jids))
            got = await reader.blocklists(loads.jids)
            for jid in loads.jids:
                self.entries.setdefault(jid, None)
                self.blocklists[jid] = got.get(jid)
        if loads.chunks:
            held, sizes = await reader.chunks(loads.chunks)
            self.held |= held
            self.sizes.update(sizes)
            self.known_chunks |= loads.chunks

    # -- CommitView --------------------------------------------------------

    def current(self, path: str) -> Row | None:
        if path not in self.cur:
            raise Miss(Loads(paths={path}))
        return self.cur[path]

    def entry(self, jid: int) -> Row | None:
        if jid not in self.entries:
            raise Miss(Loads(jids={jid}))
        return self.entries[jid]

    def live_under(self, path: str, limit: int | None) -> list[Row]:
        for root in (path, *reversed(paths.ancestors(path))):
            if root not in self.subtrees:
                continue
            rows, complete = self.subtrees[root]
            if root != path:
                if not complete:
                    continue
                rows = [r for r in rows if paths.is_under(r.path, path)]
            if complete or (limit is not None and len(rows) >= limit):
                return rows if limit is None else rows[:limit]
        want = None if limit is None else max(2 * limit, 16)
        raise Miss(Loads(subtrees={path: want}))

    def live_by_fold(self, key: str) -> list[Row]:
        if key not in self.folds:
            raise Miss(Loads(folds={key}))
        return list(self.folds[key])

    def blocklist(self, jid: int) -> list[ChunkId] | None:
        if jid not in self.blocklists:
            raise Miss(Loads(jids={jid}))
        return self.blocklists[jid]

    def _need(self, ids: Sequence[ChunkId]) -> None:
        unknown = {c for c in ids if c not in self.known_chunks}
        if unknown:
            raise Miss(Loads(chunks=unknown))

    def missing(self, ids: Sequence[ChunkId]) -> set[ChunkId]:
        self._need(ids)
        return {c for c in ids if c not in self.held}

    def chunk_sizes(self, ids: Sequence[ChunkId]) -> dict[ChunkId, int]:
        self._need(ids)
        return {c: self.sizes[c] for c in ids if c in self.sizes}


def _parent(path: str) -> str | None:
    try:
        return paths.parent(path) or None
    except paths.PathError:
        return None


def _new_ids(op: CommitOp) -> list[ChunkId]:
    """The chunks an op's content names (all of a full list, or a delta's inserts)."""
    c = op.content
    try:
        if c is not None and c.ids is not None:
            return unpack_ids(c.ids)
        if c is not None and c.edits is not None:
            return [i for _, _, ids in c.edits for i in unpack_ids(ids)]
    except (ValueError, TypeError):
        pass  # the plan refuses the op with the proper error
    return []


def stages(ops: Sequence[CommitOp], snap: Snapshot) -> Iterator[Loads]:
    """What ``plan_commit`` will read for ``ops``, round by round: each round is
    computed from what ``snap`` holds after the previous one was loaded."""
    first = Loads()
    for op in ops:
        first.paths.add(op.path)
        if (par := _parent(op.path)) is not None:
            first.paths.add(par)
        if op.move_from is not None:
            first.paths.add(op.move_from)
        if op.kind is not Kind.TOMBSTONE:
            try:
                first.folds.add(paths.fold_key(op.path))
            except (paths.PathError, ValueError):
                pass
        for jid in (op.base_jid, op.move_base, op.content.base if op.content else None):
            if jid:
                first.jids.add(jid)
        first.chunks.update(_new_ids(op))
    yield first

    def probe(path: str) -> int:
        """Rows to read to tell whether ``path`` has a live child: one, plus one
        for each path of the batch inside it (its own writes may shadow those)."""
        inside = {p for op in ops for p in (op.path, op.move_from) if p is not None}
        return 1 + sum(1 for p in inside if paths.is_under(p, path))

    second = Loads()
    for op in ops:
        cur = snap.cur.get(op.path)
        if cur is not None:
            if cur.kind is Kind.DIRECTORY:
                second.subtree(op.path, probe(op.path))
            elif cur.kind is Kind.FILE:
                second.jids.add(cur.jid)
        src = snap.cur.get(op.move_from) if op.move_from is not None else None
        if src is not None:
            second.jids.add(src.jid)
            if op.kind is Kind.DIRECTORY:
                second.subtree(op.move_from, None)  # type: ignore[arg-type]
                second.subtree(op.path, probe(op.path))
    second.jids -= snap.blocklists.keys()
    if second:
        yield second

    third = Loads()
    for op in ops:
        src = snap.cur.get(op.move_from) if op.move_from is not None else None
        if src is not None and op.kind is Kind.DIRECTORY and op.move_from in snap.subtrees:
            children = snap.subtrees[op.move_from][0]
            third.jids.update(c.jid for c in children if c.kind is Kind.FILE)
            # where the children land: those there now, and those the batch makes
            moved = {c.path for c in children} | {
                p for o in ops for p in (o.path, o.move_from) if p is not None
            }
            third.paths.update(
                paths.rebase(p, src.path, op.path) for p in moved if paths.is_under(p, src.path)
            )
        c = op.content
        if c is not None and c.base is not None and c.edits is not None:
            base = snap.blocklists.get(c.base)
            if base is not None:
                try:
                    delta = [bl.Edit(s, d, tuple(unpack_ids(i))) for s, d, i in c.edits]
                    third.chunks.update(bl.removed(base, delta))
                except (ValueError, TypeError, bl.DeltaError):
                    pass
    third.paths -= snap.cur.keys()
    third.jids -= snap.blocklists.keys()
    third.chunks -= snap.known_chunks
    if third:
        yield third


async def plan_prefetched(
    reader: CommitReader,
    ops: Sequence[CommitOp],
    device: str,
    head: int,
    limits: Limits,
) -> tuple[Plan, Snapshot]:
    """``plan_commit`` on a snapshot read through ``reader``; also returns the
    snapshot (its ``missed`` lists the reads the prefetch did not foresee)."""
    for op in ops:  # shapes and paths first: nothing unchecked reaches the reads
        try:
            validate_op(op)
        except paths.PathError as exc:
            raise LinesyncError(Code.BAD_PATH, f"{op.path!r}: {exc}") from exc
    snap = Snapshot()
    for loads in stages(ops, snap):
        await snap.load(reader, loads)
    while True:
        try:
            return plan_commit(snap, ops, device, head, limits), snap
        except Miss as miss:
            snap.missed.append(miss.loads)
            if len(snap.missed) > MAX_MISSES:
                raise RuntimeError("commit planning kept reading past its prefetch") from None
            await snap.load(reader, miss.loads)
