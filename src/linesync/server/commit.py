"""The commit rules: what a batch of ops does to a namespace's journal.

``plan_commit`` decides, for each op in order, whether it is accepted (and
which entries it writes, with their JIDs), needs chunks, or conflicts. It reads
the namespace through a :class:`CommitView` and does no I/O of its own, so each
metadata store runs it inside its own transaction and tests run it on a dict.

Rules, in the order they are checked for one op:

1. The op's shape is valid for its kind (else the whole batch is refused).
2. The path is still at ``base_jid`` (else "changed"), unless the current
   entry is this very op, already applied (a retried request): then "ok".
3. A move's source is still the version the client saw (``move_base``),
   else "source_changed".
4. Tree rules: a live entry's parent is a live directory ("parent"); a
   directory with live children cannot become a tombstone or a non-directory
   ("not_empty"); no two live paths share a case-folded key ("case_collision").
5. Content: every chunk the new blocklist adds is held by the namespace (else
   "missing"), and the chunk sizes add up to the declared size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from linesync.core import blocklist as bl
from linesync.core import paths
from linesync.core.ids import ChunkId, pack_ids, unpack_ids
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.schemas import CommitOp, CommitResult, Kind
from linesync.server.model import Row
from linesync.server.wire import entry_out


class CommitView(Protocol):
    """Read access to one namespace, as of the committing transaction."""

    def current(self, path: str) -> Row | None: ...
    def entry(self, jid: int) -> Row | None: ...
    def live_under(self, path: str, limit: int | None) -> list[Row]: ...
    def live_by_fold(self, key: str) -> list[Row]: ...
    def blocklist(self, jid: int) -> list[ChunkId] | None: ...
    def missing(self, ids: Sequence[ChunkId]) -> set[ChunkId]: ...
    def chunk_sizes(self, ids: Sequence[ChunkId]) -> dict[ChunkId, int]: ...


@dataclass(frozen=True)
class Limits:
    max_file_size: int = 16 * 2**30
    max_blocklist: int = 2**20


@dataclass
class Write:
    """An entry to persist. ``delta`` (against ``delta_base``) is a hint for
    compact storage; ``blocklist`` is always the full list for files."""

    row: Row
    blocklist: list[ChunkId] | None = None
    delta_base: int | None = None
    delta: bl.Delta | None = None
    new_chunks: list[ChunkId] = field(default_factory=list)


@dataclass
class Plan:
    results: list[CommitResult]
    writes: list[Write]


class _Overlay:
    """The view plus the writes planned so far in this batch."""

    def __init__(self, view: CommitView) -> None:
        self.view = view
        self.rows: dict[str, Row] = {}
        self.folds: dict[str, set[str]] = {}  # case-fold key -> paths in rows
        self.blocklists: dict[int, list[ChunkId]] = {}

    def put(self, row: Row) -> None:
        self.rows[row.path] = row
        self.folds.setdefault(paths.fold_key(row.path), set()).add(row.path)

    def current(self, path: str) -> Row | None:
        return self.rows[path] if path in self.rows else self.view.current(path)

    def live_under(self, path: str, limit: int | None = None) -> list[Row]:
        # Rows planned in this batch may shadow as many of the view's.
        shadowed = sum(1 for p in self.rows if paths.is_under(p, path))
        lim = None if limit is None else limit + shadowed
        found = [r for r in self.view.live_under(path, lim) if r.path not in self.rows]
        found += [r for r in self.rows.values() if r.live and paths.is_under(r.path, path)]
        found.sort(key=lambda r: r.path)
        return found if limit is None else found[:limit]

    def live_by_fold(self, key: str) -> list[Row]:
        found = [r for r in self.view.live_by_fold(key) if r.path not in self.rows]
        found += [r for p in sorted(self.folds.get(key, ())) if (r := self.rows[p]).live]
        return found

    def blocklist(self, jid: int) -> list[ChunkId] | None:
        if jid in self.blocklists:
            return self.blocklists[jid]
        return self.view.blocklist(jid)


# The longest symlink target any supported system can hold (Linux: PATH_MAX - 1).
MAX_TARGET_BYTES = 4095


def check_target(path: str, target: str) -> None:
    """A symlink target every client could create: no NUL, valid UTF-8, short enough."""
    if "\x00" in target:
        raise LinesyncError(Code.BAD_REQUEST, f"{path}: symlink target contains NUL")
    try:
        size = len(target.encode("utf-8"))
    except UnicodeEncodeError:
        raise LinesyncError(
            Code.BAD_REQUEST, f"{path}: symlink target is not valid Unicode"
        ) from None
    if size > MAX_TARGET_BYTES:
        raise LinesyncError(
            Code.BAD_REQUEST,
            f"{path}: symlink target is {size} bytes; no file system takes more than "
            f"{MAX_TARGET_BYTES}",
        )


def validate_op(op: CommitOp) -> None:
    """Shape rules; a violation refuses the whole batch."""
    for p in (op.path, op.move_from):
        if p is not None and paths.normalize(p) != p:
            raise paths.PathError("path is not NFC-normalized")
    if op.kind is Kind.FILE:
        if op.target is not None:
            raise LinesyncError(Code.BAD_REQUEST, "a file has no symlink target")
        if op.content is None and op.move_from is None and op.base_jid == 0:
            raise LinesyncError(Code.BAD_REQUEST, f"{op.path}: a new file needs content")
    else:
        if op.content is not None:
            raise LinesyncError(Code.BAD_REQUEST, f"{op.path}: only a file has content")
        if op.size:
            raise LinesyncError(Code.BAD_REQUEST, f"{op.path}: only a file has a size")
    if op.kind is Kind.SYMLINK and op.target is None and op.move_from is None:
        raise LinesyncError(Code.BAD_REQUEST, f"{op.path}: a symlink needs a target")
    if op.kind in (Kind.DIRECTORY, Kind.TOMBSTONE) and op.target is not None:
        raise LinesyncError(Code.BAD_REQUEST, f"{op.path}: only a symlink has a target")
    if op.target is not None:
        check_target(op.path, op.target)
    if op.move_from is not None:
        if op.kind is Kind.TOMBSTONE:
            raise LinesyncError(Code.BAD_REQUEST, "a tombstone cannot be a move")
        if op.move_from == op.path or paths.is_under(op.path, op.move_from):
            raise LinesyncError(Code.BAD_REQUEST, f"cannot move {op.move_from} into itself")
    c = op.content
    if c is not None:
        if (c.ids is None) == (c.base is None):
            raise LinesyncError(Code.BAD_REQUEST, f"{op.path}: content needs ids or base")
        if (c.base is None) != (c.edits is None):
            raise LinesyncError(Code.BAD_REQUEST, f"{op.path}: edits go with base, and only")


def _decode_edits(op: CommitOp) -> bl.Delta:
    assert op.content is not None and op.content.edits is not None
    try:
        return [bl.Edit(s, d, tuple(unpack_ids(ids))) for s, d, ids in op.content.edits]
    except ValueError as exc:
        raise LinesyncError(Code.BAD_DELTA, f"{op.path}: {exc}") from exc


def _conflict(op: CommitOp, reason: str, current: Row | None) -> CommitResult:
    return CommitResult(
        path=op.path,
        status="conflict",
        reason=reason,
        current=entry_out(current) if current else None,
    )


def _ok(op: CommitOp, jid: int) -> CommitResult:
    return CommitResult(path=op.path, status="ok", jid=jid)


class _Planner:
    def __init__(self, view: CommitView, device: str, head: int, limits: Limits) -> None:
        self.o = _Overlay(view)
        self.device = device
        self.head = head
        self.limits = limits
        self.writes: list[Write] = []

    def write(self, row: Row, **kw: object) -> int:
        self.head += 1
        row = replace(row, jid=self.head)
        self.o.put(row)
        w = Write(row=row, **kw)  # type: ignore[arg-type]
        if w.blocklist is not None:
            self.o.blocklists[row.jid] = w.blocklist
        self.writes.append(w)
        return row.jid

    def delete(self, path: str, base_jid: int) -> None:
        self.write(
            Row(jid=0, path=path, kind=Kind.TOMBSTONE, device=self.device, base_jid=base_jid)
        )

    def resolve(
        self, op: CommitOp, source: Row | None
    ) -> tuple[list[ChunkId], int | None, bl.Delta]:
        """The op's full blocklist, and the delta it was (or can be) sent as."""
        c = op.content
        if c is None:
            assert source is not None
            ids = self.o.blocklist(source.jid)
            if ids is None:
                raise LinesyncError(Code.BAD_REQUEST, f"{op.move_from} has no content")
            return ids, source.jid, []
        if c.ids is not None:
            try:
                return unpack_ids(c.ids), None, []
            except ValueError as exc:
                raise LinesyncError(Code.BAD_REQUEST, f"{op.path}: {exc}") from exc
        assert c.base is not None
        base = self.o.blocklist(c.base)
        if base is None:
            raise LinesyncError(
                Code.BAD_DELTA, f"{op.path}: base version {c.base} is not a file here"
            )
        delta = _decode_edits(op)
        try:
            return bl.apply(base, delta), c.base, delta
        except bl.DeltaError as exc:
            raise LinesyncError(Code.BAD_DELTA, f"{op.path}: {exc}") from exc

    def same_as_applied(self, cur: Row, op: CommitOp, chash: bytes | None) -> bool:
        """Is ``cur`` this very op, applied by an earlier try of the same request?"""
        if op.move_from is not None:
            src = self.o.current(op.move_from)
            if not (
                src is not None
                and src.kind is Kind.TOMBSTONE
                and src.device == self.device
                and src.base_jid == op.move_base
            ):
                return False
        return (
            cur.device == self.device
            and cur.base_jid == op.base_jid
            and cur.kind is op.kind
            and cur.moved_from == op.move_from
            and (op.kind is Kind.TOMBSTONE or (cur.size, cur.mtime_ns) == (op.size, op.mtime_ns))
            and cur.exec == op.exec
            and (op.target is None or cur.target == op.target)
            and (op.kind is not Kind.FILE or op.content is None or cur.chash == chash)
        )

    def tree_conflict(self, op: CommitOp, cur: Row | None) -> CommitResult | None:
        if op.kind is not Kind.TOMBSTONE:
            par = paths.parent(op.path)
            if par:
                prow = self.o.current(par)
                if prow is None or prow.kind is not Kind.DIRECTORY:
                    return _conflict(op, "parent", prow)
        if cur is not None and cur.kind is Kind.DIRECTORY and op.kind is not Kind.DIRECTORY:
            children = self.o.live_under(op.path, 1)
            if children:
                return _conflict(op, "not_empty", children[0])
        if op.kind is not Kind.TOMBSTONE and (cur is None or not cur.live):
            key = paths.fold_key(op.path)
            for other in self.o.live_by_fold(key):
                if other.path not in (op.path, op.move_from):
                    return _conflict(op, "case_collision", other)
        return None

    def plan_op(self, op: CommitOp) -> CommitResult:
        validate_op(op)
        source: Row | None = None
        if op.move_from is not None:
            source = self.o.current(op.move_from)
        cur = self.o.current(op.path)
        ids: list[ChunkId] | None = None
        delta_base: int | None = None
        delta: bl.Delta = []
        chash: bytes | None = None
        if op.kind is Kind.FILE and (op.content is not None or (source and source.live)):
            ids, delta_base, delta = self.resolve(op, source)
            chash = bl.content_hash(ids)
        elif op.kind is Kind.FILE and op.move_from is None:
            # No content: the same bytes as version base_jid (a touch, a chmod).
            ids = self.o.blocklist(op.base_jid)
            if ids is None:
                raise LinesyncError(
                    Code.BAD_REQUEST, f"{op.path}: no content, and {op.base_jid} is not a file"
                )
            delta_base, delta, chash = op.base_jid, [], bl.content_hash(ids)
        cur_jid = cur.jid if cur else 0
        if cur_jid != op.base_jid:
            if cur is not None and self.same_as_applied(cur, op, chash):
                return _ok(op, cur.jid)
            return _conflict(op, "changed", cur)
        if op.move_from is not None and (
            source is None or not source.live or source.jid != op.move_base
        ):
            return _conflict(op, "source_changed", source)
        if source is not None and source.kind is not op.kind:
            raise LinesyncError(Code.BAD_REQUEST, f"{op.move_from} is not a {op.kind.value}")
        if op.kind is Kind.TOMBSTONE and (cur is None or not cur.live):
            return _ok(op, cur_jid)
        blocked = self.tree_conflict(op, cur)
        if blocked is not None:
            return blocked
        new_chunks: list[ChunkId] = []
        if ids is not None:
            checked = bl.inserted(delta) if delta_base is not None else ids
            if len(ids) > self.limits.max_blocklist:
                raise LinesyncError(Code.FILE_TOO_LARGE, f"{op.path}: too many chunks")
            unique = list(dict.fromkeys(checked))
            missing = self.o.view.missing(unique)
            if missing:
                return CommitResult(
                    path=op.path,
                    status="missing",
                    missing=pack_ids([c for c in unique if c in missing]),
                )
            self.check_size(op, ids, delta_base, delta)
            new_chunks = unique
        if op.kind is Kind.DIRECTORY and source is not None:
            return self.move_directory(op, source)
        row = Row(
            jid=0,
            path=op.path,
            kind=op.kind,
            size=op.size,
            mtime_ns=op.mtime_ns,
            exec=op.exec,
            target=op.target if op.target is not None else (source.target if source else None),
            device=self.device,
            base_jid=op.base_jid,
            moved_from=op.move_from,
            chash=chash,
        )
        if delta_base is None and ids is not None and cur is not None and cur.kind is Kind.FILE:
            old = self.o.blocklist(cur.jid)
            if old is not None:
                delta_base, delta = cur.jid, bl.diff(old, ids)
        jid = self.write(
            row, blocklist=ids, delta_base=delta_base, delta=delta, new_chunks=new_chunks
        )
        if source is not None:
            self.delete(source.path, source.jid)
        return _ok(op, jid)

    def check_size(
        self, op: CommitOp, ids: list[ChunkId], delta_base: int | None, delta: bl.Delta
    ) -> None:
        if op.size > self.limits.max_file_size:
            raise LinesyncError(Code.FILE_TOO_LARGE, f"{op.path}: file is larger than the limit")
        base_ids = self.o.blocklist(delta_base) if delta_base is not None else None
        base_row = self._row_by_jid(delta_base) if delta_base is not None else None
        if base_ids is not None and base_row is not None:
            removed = bl.removed(base_ids, delta)
            added = bl.inserted(delta)
            sizes = self.o.view.chunk_sizes(list(dict.fromkeys(removed + added)))
            total = base_row.size - sum(sizes[c] for c in removed) + sum(sizes[c] for c in added)
        else:
            sizes = self.o.view.chunk_sizes(list(dict.fromkeys(ids)))
            total = sum(sizes[c] for c in ids)
        if total != op.size:
            raise LinesyncError(
                Code.SIZE_MISMATCH, f"{op.path}: chunks add up to {total} bytes, not {op.size}"
            )

    def _row_by_jid(self, jid: int) -> Row | None:
        for row in self.o.rows.values():
            if row.jid == jid:
                return row
        return self.o.view.entry(jid)

    def move_directory(self, op: CommitOp, source: Row) -> CommitResult:
        if self.o.live_under(op.path, 1):
            return _conflict(op, "not_empty", self.o.current(op.path))
        moved = self.o.live_under(source.path)
        first = self.write(
            Row(
                jid=0,
                path=op.path,
                kind=Kind.DIRECTORY,
                mtime_ns=op.mtime_ns,
                device=self.device,
                base_jid=op.base_jid,
                moved_from=source.path,
            )
        )
        for child in moved:
            dest = paths.rebase(child.path, source.path, op.path)
            prev = self.o.current(dest)
            ids = self.o.blocklist(child.jid) if child.kind is Kind.FILE else None
            self.write(
                replace(
                    child,
                    path=dest,
                    device=self.device,
                    base_jid=prev.jid if prev else 0,
                    moved_from=child.path,
                ),
                blocklist=ids,
                delta_base=child.jid if ids is not None else None,
                delta=[],
            )
        for child in reversed(moved):
            self.delete(child.path, child.jid)
        self.delete(source.path, source.jid)
        return _ok(op, first)


def plan_commit(
    view: CommitView, ops: Sequence[CommitOp], device: str, head: int, limits: Limits
) -> Plan:
    """Decide every op of a batch, in order; JIDs continue from ``head``."""
    planner = _Planner(view, device, head, limits)
    results: list[CommitResult] = []
    for op in ops:
        try:
            results.append(planner.plan_op(op))
        except paths.PathError as exc:
            raise LinesyncError(Code.BAD_PATH, f"{op.path!r}: {exc}") from exc
    return Plan(results=results, writes=planner.writes)
