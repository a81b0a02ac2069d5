"""An in-memory namespace implementing ``CommitView``, for testing the commit rules.

It mirrors what the SQLite store keeps for one namespace: the journal (entries
by JID, with full blocklists), the current entry of every path, and the chunks
the namespace holds with their sizes. ``apply`` folds a plan's writes into it,
the way ``SqliteStore._commit`` does, so tests can run batches in sequence.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from linesync.core import paths
from linesync.core.ids import ChunkId
from linesync.protocol.schemas import CommitOp, Kind
from linesync.server.commit import Limits, Plan, plan_commit
from linesync.server.model import Row


class MemView:
    def __init__(self, chunks: dict[ChunkId, int] | None = None) -> None:
        self.head = 0
        self.rows: dict[str, Row] = {}  # current entry by path (tombstones included)
        self.entries: dict[int, Row] = {}  # every entry by JID
        self.blocklists: dict[int, list[ChunkId]] = {}  # file entries' blocklists by JID
        self.chunks: dict[ChunkId, int] = dict(chunks or {})  # held chunks -> size

    # -- CommitView ----------------------------------------------------------

    def current(self, path: str) -> Row | None:
        return self.rows.get(path)

    def entry(self, jid: int) -> Row | None:
        return self.entries.get(jid)

    def live_under(self, path: str, limit: int | None) -> list[Row]:
        found = sorted(
            (r for r in self.rows.values() if r.live and paths.is_under(r.path, path)),
            key=lambda r: r.path,
        )
        return found if limit is None else found[:limit]

    def live_by_fold(self, key: str) -> list[Row]:
        return [r for r in self.rows.values() if r.live and paths.fold_key(r.path) == key]

    def blocklist(self, jid: int) -> list[ChunkId] | None:
        row = self.entries.get(jid)
        if row is None or row.kind is not Kind.FILE:
            return None
        return self.blocklists.get(jid)

    def missing(self, ids: Sequence[ChunkId]) -> set[ChunkId]:
        return {c for c in ids if c not in self.chunks}

    def chunk_sizes(self, ids: Sequence[ChunkId]) -> dict[ChunkId, int]:
        return {c: self.chunks[c] for c in ids if c in self.chunks}

    # -- test helpers --------------------------------------------------------

    def hold(self, chunks: dict[ChunkId, int]) -> None:
        """The namespace receives these uploads."""
        self.chunks.update(chunks)

    def apply(self, plan: Plan) -> None:
        """Persist the plan's writes; their JIDs must continue the journal."""
        for w in plan.writes:
            assert w.row.jid == self.head + 1, f"JID {w.row.jid} after head {self.head}"
            self.head = w.row.jid
            self.entries[w.row.jid] = w.row
            self.rows[w.row.path] = w.row
            if w.blocklist is not None:
                self.blocklists[w.row.jid] = list(w.blocklist)

    def commit(
        self, ops: Iterable[CommitOp], device: str = "dev1", limits: Limits | None = None
    ) -> Plan:
        """Plan a batch against the current state and apply it."""
        plan = plan_commit(self, list(ops), device, self.head, limits or Limits())
        self.apply(plan)
        return plan

    def live(self) -> dict[str, Row]:
        return {p: r for p, r in self.rows.items() if r.live}


class MemReader:
    """``CommitReader`` over a ``MemView`` (the prefetching planner's reads),
    counting the fetches it serves."""

    def __init__(self, view: MemView) -> None:
        self.view = view
        self.calls = 0

    async def current(self, paths_: Collection[str]) -> list[Row]:
        self.calls += 1
        return [r for p in paths_ if (r := self.view.current(p)) is not None]

    async def live_by_fold(self, keys: Collection[str]) -> list[Row]:
        self.calls += 1
        return [r for k in keys for r in self.view.live_by_fold(k)]

    async def live_under(self, path: str, limit: int | None) -> list[Row]:
        self.calls += 1
        return self.view.live_under(path, limit)

    async def entries(self, jids: Collection[int]) -> list[Row]:
        self.calls += 1
        return [r for j in jids if (r := self.view.entry(j)) is not None]

    async def blocklists(self, jids: Collection[int]) -> dict[int, list[ChunkId]]:
        self.calls += 1
        return {j: ids for j in jids if (ids := self.view.blocklist(j)) is not None}

    async def chunks(self, ids: Collection[ChunkId]) -> tuple[set[ChunkId], dict[ChunkId, int]]:
        self.calls += 1
        return {c for c in ids if c in self.view.chunks}, self.view.chunk_sizes(list(ids))
