"""The sync engine: pull the server's changes, scan the folder, plan, execute,
and repeat until both sides agree.

Data safety rules kept here:
- a path is recorded as synced only after its bytes are durable on disk (or
  the server accepted them);
- every local change checks that the path is still what the index saw;
- an error (network, disk, a changed file) never becomes a deletion: the
  path is simply left for the next round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path

from linesync.client import planner as pl
from linesync.client.chunksource import ChunkSource, assemble
from linesync.client.config import INDEX_FILE, FolderConfig
from linesync.client.ignore import IgnoreRules
from linesync.client.index import Index
from linesync.client.localfs import STATE_DIR, Changed, LocalFS
from linesync.client.merge import merge3
from linesync.client.model import Local, Node, PathState, Stat, Version
from linesync.client.naming import conflict_name
from linesync.client.remote import Remote
from linesync.client.transfer import prepare_file, resolve_content, split
from linesync.core import blocklist as bl
from linesync.core import paths
from linesync.core.chunking import is_text
from linesync.core.ids import ChunkId, unpack_ids
from linesync.protocol import codec, inline
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.framing import Frame
from linesync.protocol.schemas import (
    CommitOp,
    CommitResponse,
    CommitResult,
    Entry,
    InlineChunk,
    Kind,
    ListResponse,
)

log = logging.getLogger("linesync.client")

MAX_ROUNDS = 8
COMMIT_BATCH = 500
UPLOAD_BATCH_BYTES = 8 * 2**20
INLINE_BUDGET = 64 * 2**10
CACHE_MAX_BYTES = 256 * 2**20
CACHE_MAX_FILE = 16 * 2**20  # files bigger than this keep no cached chunks
LIST_INLINE = 256 * 2**10
CARRIED = -1  # the synced JID of a file our own folder move carried, until listed
GROUP_BYTES = 64 * 2**20  # file bytes prefetched and written at a time
DOWNLOAD_CONCURRENCY = 4
UPLOAD_CONCURRENCY = 3


class MassDelete(Exception):
    def __init__(self, count: int, total: int) -> None:
        super().__init__(
            f"refusing to delete {count} of {total} files on the server: most of the folder "
            "vanished. If you really deleted them, run again with --allow-mass-delete."
        )
        self.count = count
        self.total = total


@dataclass
class SyncResult:
    uploaded: int = 0
    downloaded: int = 0
    deleted_local: int = 0
    deleted_remote: int = 0
    moved: int = 0
    merged: int = 0
    conflicts: list[str] = field(default_factory=list)
    kept_locally: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    converged: bool = False
    rounds: int = 0


def _is_folder(node: Node | None) -> bool:
    return node is not None and node.kind is Kind.DIRECTORY


def _node_of(e: Entry, chash: bytes | None) -> Node | None:
    if e.kind is Kind.TOMBSTONE:
        return None
    return Node(e.kind, e.size, e.mtime_ns, e.exec, e.target, chash)


class Engine:
    def __init__(
        self,
        folder: Path,
        config: FolderConfig,
        remote: Remote,
        index: Index,
        *,
        allow_mass_delete: bool = False,
        report: Callable[[str], None] | None = None,
        fs: LocalFS | None = None,
    ) -> None:
        """``fs``: the folder's file system; tests pass a fault-injecting wrapper."""
        self.folder = folder
        self.config = config
        self.remote = remote
        self.index = index
        self.fs = fs or LocalFS(folder)
        self.chunks = ChunkSource(index, self.fs, remote, config.namespace)
        self.allow_mass_delete = allow_mass_delete
        self.report = report or (lambda _: None)
        # progress(what, done, total): "download" and "upload" count bytes.
        self.progress: Callable[[str, int, int], None] = lambda what, done, total: None
        self.ignore = IgnoreRules.default()
        self.unstable: set[str] = set()
        # False once the remote view is known to match the server's head (our own
        # commits carried it there): the next round then skips a list request.
        self.need_pull = True

    @property
    def ns(self) -> int:
        return self.config.namespace

    @property
    def journal(self) -> str | None:
        cursor = self.index.get("cursor")
        return cursor.split(".")[0] if cursor else None

    # -- the loop ----------------------------------------------------------

    async def sync_once(self) -> SyncResult:
        result = SyncResult()
        self.need_pull = True
        self.refused_moves: set[tuple[str, str]] = set()
        # Our last folder move was not listed yet: its carried files wait for it.
        must_pull = self.index.get("must_pull") == "1"
        for rnd in range(1, MAX_ROUNDS + 1):
            result.rounds = rnd
            self.scan(result)
            states = self._visible_states()
            plan = pl.plan(
                states, read_only=self.config.read_only, avoid=frozenset(self.refused_moves)
            )
            if self.need_pull and (must_pull or not (rnd == 1 and self._pushes(plan))):
                await self.pull()
                self.need_pull = must_pull = False
                states = self._visible_states()
                plan = pl.plan(
                    states, read_only=self.config.read_only, avoid=frozenset(self.refused_moves)
                )
            result.kept_locally = plan.kept_locally
            if not plan.ops:
                result.converged = not self.unstable
                if self.unstable:
                    result.problems.append(
                        "still changing, synced next time: " + ", ".join(sorted(self.unstable))
                    )
                return result
            if plan.mass_delete() and not self.allow_mass_delete:
                raise MassDelete(plan.remote_deletes, plan.synced_files)
            await self.execute(plan, result)
        result.problems.append(f"did not settle in {MAX_ROUNDS} rounds")
        return result

    def _pushes(self, plan: pl.Plan) -> bool:
        """Local changes to commit, on a folder that has listed before: the commit
        itself brings the server's news (``since``), so no list is needed first.
        A stale remote view is safe here: the server refuses any op whose base
        moved on, and the next round re-plans with what it said."""
        return self.index.get("cursor") is not None and any(
            isinstance(op, (pl.Upload, pl.DeleteRemote, pl.MoveRemote)) for op in plan.ops
        )

    def _visible_states(self) -> dict[str, PathState]:
        states = self.index.states()
        return {
            p: s
            for p, s in states.items()
            if not self.ignore.ignored(p, self._is_dir(s)) and p not in self.unstable
        }

    @staticmethod
    def _is_dir(s: PathState) -> bool:
        n = s.local_node or s.remote_node or s.synced_node
        return n is not None and n.kind is Kind.DIRECTORY

    # -- pull: the remote view -----------------------------------------------

    async def pull(self, wait: int = 0) -> bool:
        """Bring the remote view up to the server's head; True if anything came."""
        got = False
        while True:
            cursor = self.index.get("cursor")
            try:
                resp = await self.remote.list_changes(
                    self.ns, cursor, wait=wait, inline=LIST_INLINE
                )
            except LinesyncError as exc:
                if exc.code is not Code.CURSOR_INVALID:
                    raise
                self.report("the server's journal was reset or restored: re-syncing from scratch")
                with self.index.transaction():
                    self.index.forget_remote()
                continue
            wait = 0
            await self._apply_page(resp)
            got = got or bool(resp.entries)
            if not resp.more:
                return got

    async def _apply_page(self, resp: ListResponse) -> None:
        """Take a page of the server's changes into the remote view, and move the
        cursor past it, in one transaction."""
        resolved: list[tuple[Entry, list[ChunkId] | None]] = []
        # After a page that said "more", the view may lack versions the server
        # counts us as holding: content left out then cannot be trusted.
        clean = self.index.get("cursor_clean", "1") == "1"
        cursor = self.index.get("cursor")
        at = int(cursor.split(".")[1]) if cursor else 0
        for e in resp.entries:
            ids = None
            if e.kind is Kind.FILE:
                if e.content is None and not clean:
                    ids = None
                elif e.content is None:  # the same bytes as the version we hold there
                    held = self.index.state(e.path).remote
                    # ...as of our cursor: one of our own commits past it does not count.
                    node = held.node if held is not None and held.jid <= at else None
                    ids = self.index.blocklist(node.chash) if node and node.chash else None
                else:
                    ids = resolve_content(e.content, self.index.version_blocklist)
                if ids is None:
                    full = await self.remote.entry(self.ns, e.jid)
                    assert full.content is not None
                    ids = resolve_content(full.content, self.index.version_blocklist)
            resolved.append((e, ids))
        received = inline.decode(resp.chunks, self.chunks.local) if resp.chunks else {}
        with self.index.transaction():
            for e, ids in resolved:
                chash = bl.content_hash(ids) if ids is not None else None
                if ids is not None and chash is not None:
                    self.index.put_blocklist(chash, ids, None)
                self.index.put_version(e.jid, chash)
                self.index.set_remote(e.path, Version(e.jid, _node_of(e, chash), e.moved_from))
            if received:
                self.index.cache_put(received.items())
            self.index.set("cursor", resp.cursor)
            self.index.set("cursor_clean", "0" if resp.more else "1")
            if not resp.more:
                self.index.set("must_pull", None)

    # -- scan: the local view --------------------------------------------------

    def scan(self, result: SyncResult) -> None:
        self.ignore = self._load_ignore(result)
        walk = self.fs.walk(self.ignore)
        result.problems.extend(walk.skipped)
        for dup in walk.duplicates:  # an NFD twin of an NFC name: keep both
            new = self._free_name(dup.path, "name clash")
            try:
                self.fs.rename_disk(dup.disk, new)
                result.conflicts.append(new)
            except OSError as exc:
                result.problems.append(f"{dup.disk}: {exc}")
        states = self.index.states()
        self.unstable = set()
        with self.index.transaction():
            for path, entry in walk.entries.items():
                prev = states.get(path)
                local = self._local_of(path, entry.node, entry.stat, prev, result)
                if local is not None and (prev is None or local != prev.local):
                    self.index.set_local(path, local)
            for path, s in states.items():
                if s.local is not None and path not in walk.entries:
                    self.index.set_local(path, None)

    def _local_of(
        self, path: str, node: Node, stat: Stat, prev: PathState | None, result: SyncResult
    ) -> Local | None:
        if node.kind is not Kind.FILE:
            return Local(node, stat)
        old = prev.local if prev else None
        if old is not None and old.stat == stat and old.node.kind is Kind.FILE:
            if old.node.exec == node.exec:
                return old
            return Local(Node(Kind.FILE, old.node.size, old.node.mtime_ns, node.exec,
                              chash=old.node.chash), stat)  # fmt: skip
        synced = prev.synced_node if prev else None
        if (
            synced is not None
            and synced.kind is Kind.FILE
            and synced.size > 0
            and stat.size == 0
            and stat.mtime_ns == synced.mtime_ns
        ):
            result.problems.append(f"{path}: emptied without a new modification time; not synced")
            self.unstable.add(path)
            return None
        try:
            data, stat2 = self.fs.read(path)
        except (Changed, OSError):
            self.unstable.add(path)
            return None
        ids, chunks = split(data)
        chash = bl.content_hash(ids)
        sizes = [len(chunks[c]) for c in ids]
        self.index.put_blocklist(chash, ids, sizes)
        self.index.set_layout(path, ids, sizes)
        return Local(Node(Kind.FILE, stat2.size, stat2.mtime_ns, node.exec, chash=chash), stat2)

    def _load_ignore(self, result: SyncResult) -> IgnoreRules:
        try:
            text = (self.folder / ".linesyncignore").read_text(encoding="utf-8")
        except FileNotFoundError:
            return IgnoreRules.default()
        except (OSError, UnicodeDecodeError) as exc:
            result.problems.append(f".linesyncignore: {exc}")
            return self.ignore
        rules = IgnoreRules(text)
        result.problems.extend(f".linesyncignore: {w}" for w in rules.warnings)
        return rules

    # -- execute ---------------------------------------------------------------

    async def execute(self, plan: pl.Plan, result: SyncResult) -> None:
        """Local changes in an order that keeps the tree whole (folders first,
        deletions deepest first), then one commit for the remote ones."""
        ops = plan.ops
        folders = [o for o in ops if isinstance(o, pl.Download) and _is_folder(o.remote.node)]
        for fo in sorted(folders, key=lambda o: o.path.count("/")):
            self._guard(result, fo.path, self._make_folder, fo)
        for op in ops:
            if isinstance(op, pl.MoveLocal):
                self._guard(result, op.dst, self._move_local, op, result)
        deletes = [o for o in ops if isinstance(o, pl.DeleteLocal)]
        for do in sorted(deletes, key=lambda o: o.path.count("/"), reverse=True):
            self._guard(result, do.path, self._delete_local, do, result)
        downloads = [o for o in ops if isinstance(o, pl.Download) and not _is_folder(o.remote.node)]
        gate = asyncio.Semaphore(DOWNLOAD_CONCURRENCY)

        total = sum(o.remote.node.size for o in downloads if o.remote.node)
        done = 0

        async def one(op: pl.Download) -> None:
            nonlocal done
            async with gate:
                await self._aguard(result, op.path, self._download(op, result))
            done += op.remote.node.size if op.remote.node else 0
            self.progress("download", done, total)

        for group in self._groups(downloads):
            await self._prefetch(group)
            await asyncio.gather(*(one(op) for op in group))
            self.chunks.pool.clear()
        for op in ops:
            if isinstance(op, pl.Merge):
                await self._aguard(result, op.path, self._merge(op, result))
            elif isinstance(op, pl.Conflict):
                await self._aguard(result, op.path, self._conflict(op, result))
            elif isinstance(op, pl.Record):
                self._record(op.path, op.remote)
        commits = [o for o in ops if isinstance(o, (pl.Upload, pl.DeleteRemote, pl.MoveRemote))]
        if commits:
            await self._commit(commits, result)
        self.index.cache_trim(CACHE_MAX_BYTES)

    @staticmethod
    def _groups(downloads: list[pl.Download]) -> list[list[pl.Download]]:
        """Downloads in groups of at most GROUP_BYTES of file content."""
        groups: list[list[pl.Download]] = [[]]
        size = 0
        for op in downloads:
            n = op.remote.node.size if op.remote.node else 0
            if groups[-1] and size + n > GROUP_BYTES:
                groups.append([])
                size = 0
            groups[-1].append(op)
            size += n
        return [g for g in groups if g]

    async def _prefetch(self, group: list[pl.Download]) -> None:
        """Fetch what a group of downloads lacks in a few big batches at once."""
        ids: list[ChunkId] = []
        bases: dict[ChunkId, ChunkId] = {}
        for op in group:
            node = op.remote.node
            if node is None or node.kind is not Kind.FILE or node.chash is None:
                continue
            new = self.index.blocklist(node.chash) or []
            ids.extend(new)
            old = op.local.node.chash if op.local is not None else None
            old_ids = self.index.blocklist(old) if old else None
            if old_ids:
                for cid, base in inline.replaced_bases(old_ids, bl.diff(old_ids, new)):
                    if base:
                        bases[cid] = base[0]
        try:
            await self.chunks.prefetch(ids, bases)
        except LinesyncError as exc:
            log.info("prefetch failed (%s); files fetch their own chunks", exc)

    def _guard(
        self, result: SyncResult, path: str, fn: Callable[..., object], *args: object
    ) -> None:
        try:
            with self.index.transaction():
                fn(*args)
        except (Changed, OSError) as exc:
            result.problems.append(f"{path}: {exc}; retried next round")

    async def _aguard(
        self, result: SyncResult, path: str, work: Coroutine[object, object, None]
    ) -> None:
        try:
            await work
        except (Changed, OSError) as exc:
            result.problems.append(f"{path}: {exc}; retried next round")

    def _record(self, path: str, remote: Version | None) -> None:
        self.index.set_synced(path, remote)

    # -- local changes ---------------------------------------------------------

    def _make_folder(self, op: pl.Download) -> None:
        if op.local is not None and op.local.node.kind is not Kind.DIRECTORY:
            self.fs.remove(op.path, op.local.stat)
        self.fs.mkdir(op.path)
        found = self.fs.lstat(op.path)
        assert found is not None
        self.index.set_local(op.path, Local(found[0], found[1]))
        self.index.set_synced(op.path, op.remote)

    def _move_local(self, op: pl.MoveLocal, result: SyncResult) -> None:
        self._ensure_parent(op.dst)
        stat = self.fs.rename(op.src, op.dst, op.local.stat, None)
        node = op.remote.node
        assert node is not None
        local_node = op.local.node
        if node.kind is Kind.FILE and (node.mtime_ns, node.exec) != (
            local_node.mtime_ns,
            local_node.exec,
        ):  # the move came with a touch or a chmod: take those too
            stat = self.fs.touch(op.dst, node.mtime_ns, node.exec, stat)
            local_node = Node(Kind.FILE, stat.size, stat.mtime_ns, node.exec, chash=node.chash)
        self.index.set_local(op.dst, Local(local_node, stat))
        self.index.set_synced(op.dst, op.remote)
        self.index.set_local(op.src, None)
        self.index.set_synced(op.src, op.src_remote)
        ids = self.index.blocklist(node.chash) if node.chash else None
        sizes = self.index.chunk_sizes(node.chash) if node.chash else None
        if ids is not None and sizes is not None:
            self.index.set_layout(op.dst, ids, sizes)
        result.moved += 1

    def _delete_local(self, op: pl.DeleteLocal, result: SyncResult) -> None:
        if op.local.node.kind is Kind.DIRECTORY:
            if not self.fs.rmdir(op.path) and not self._rmdir_junk(op.path):
                # Files this folder keeps are ignored ones: the folder stays here.
                self.index.set_synced(op.path, op.remote)
                return
        else:
            self.fs.remove(op.path, op.local.stat)
        self.index.set_local(op.path, None)
        self.index.set_synced(op.path, op.remote)
        result.deleted_local += 1

    def _rmdir_junk(self, path: str) -> bool:
        """Remove a folder that holds nothing but OS and editor leftovers
        (.DS_Store, Thumbs.db, swap files): they go with it. Anything else
        (including files the user's own rules ignore) keeps the folder."""
        junk = IgnoreRules.default()
        entries = self.fs.list_names(path)
        if entries is None or not all(
            not is_dir and junk.ignored(f"{path}/{name}", False) for name, is_dir in entries
        ):
            return False
        for name, _ in entries:
            self.fs.unlink_plain(f"{path}/{name}")
        return self.fs.rmdir(path)

    def _ensure_parent(self, path: str) -> None:
        for anc in paths.ancestors(path):
            found = self.fs.lstat(anc)
            if found is None:
                self.fs.mkdir(anc)
            elif found[0].kind is not Kind.DIRECTORY:
                raise Changed(f"{anc} is not a folder")

    async def _file_bytes(
        self, node: Node, old: Local | None
    ) -> tuple[list[ChunkId], dict[ChunkId, bytes]]:
        assert node.chash is not None
        ids = self.index.blocklist(node.chash)
        if ids is None:
            raise LinesyncError(Code.BAD_REQUEST, "unknown blocklist")
        bases: dict[ChunkId, ChunkId] = {}
        if old is not None and old.node.chash is not None:
            old_ids = self.index.blocklist(old.node.chash)
            if old_ids:
                for cid, base in inline.replaced_bases(old_ids, bl.diff(old_ids, ids)):
                    if base:
                        bases[cid] = base[0]
        have = await self.chunks.get(ids, bases)
        return ids, have

    async def _download(self, op: pl.Download, result: SyncResult) -> None:
        node = op.remote.node
        assert node is not None
        old = op.local
        with self.index.transaction():
            if old is not None and old.node.kind is Kind.DIRECTORY:
                if not self.fs.rmdir(op.path):
                    raise Changed("folder is not empty")
                self.index.set_local(op.path, None)
                old = None
        self._ensure_parent(op.path)
        expect = old.stat if old is not None else None
        if node.kind is Kind.SYMLINK:
            assert node.target is not None
            stat = self.fs.symlink(op.path, node.target, expect)
            local_node = node
        elif old is not None and old.node.kind is Kind.FILE and old.node.chash == node.chash:
            stat = self.fs.touch(op.path, node.mtime_ns, node.exec, expect)  # same bytes
            local_node = Node(Kind.FILE, node.size, node.mtime_ns, node.exec, chash=node.chash)
        else:
            ids, have = await self._file_bytes(node, old)
            pieces = assemble(ids, have)
            stat = await asyncio.to_thread(
                self.fs.write_file,
                op.path,
                pieces,
                mtime_ns=node.mtime_ns,
                exec=node.exec,
                expect=expect,
            )
            local_node = Node(Kind.FILE, stat.size, stat.mtime_ns, node.exec, chash=node.chash)
            with self.index.transaction():
                self.index.set_layout(op.path, ids, [len(p) for p in pieces])
                self._cache_version(ids, have, stat.size)
        with self.index.transaction():
            self.index.set_local(op.path, Local(local_node, stat))
            self.index.set_synced(op.path, op.remote)
        result.downloaded += 1

    def _cache_version(self, ids: list[ChunkId], have: dict[ChunkId, bytes], size: int) -> None:
        if size <= CACHE_MAX_FILE:
            self.index.cache_put((c, have[c]) for c in dict.fromkeys(ids))

    async def _remote_bytes(self, v: Version | None) -> bytes | None:
        if v is None or v.node is None or v.node.chash is None:
            return None
        ids, have = await self._file_bytes(v.node, None)
        return b"".join(assemble(ids, have))

    async def _merge(self, op: pl.Merge, result: SyncResult) -> None:
        local_bytes, stat = self.fs.read(op.path)
        if stat != op.local.stat:
            raise Changed("changed while merging")
        theirs = await self._remote_bytes(op.remote)
        base = await self._remote_bytes(op.synced)
        merged = None
        if theirs is not None and base is not None and is_text(local_bytes) and is_text(theirs):
            merged = merge3(base, local_bytes, theirs)
        if merged is None:
            await self._conflict(pl.Conflict(op.path, op.remote, op.local), result)
            return
        node = op.remote.node
        assert node is not None
        new_stat = self.fs.write_file(
            op.path, [merged], mtime_ns=time.time_ns(), exec=op.local.node.exec, expect=stat
        )
        ids, chunks = split(merged)
        chash = bl.content_hash(ids)
        with self.index.transaction():
            self.index.put_blocklist(chash, ids, [len(chunks[c]) for c in ids])
            self.index.set_layout(op.path, ids, [len(chunks[c]) for c in ids])
            self.index.set_local(
                op.path,
                Local(Node(Kind.FILE, new_stat.size, new_stat.mtime_ns, op.local.node.exec,
                           chash=chash), new_stat),
            )  # fmt: skip
            self.index.set_synced(op.path, op.remote)  # the merge goes up next round
        result.merged += 1

    def _free_name(self, path: str, what: str = "conflict") -> str:
        for n in range(1, 100):
            name = conflict_name(path, self.config.device, what, n=n)
            if not self.fs.exists(name):
                return name
        raise Changed("no free name for a conflict copy")

    async def _conflict(self, op: pl.Conflict, result: SyncResult) -> None:
        copy = self._free_name(op.path)
        folder = op.local.node.kind is Kind.DIRECTORY
        with self.index.transaction():
            self.fs.rename(op.path, copy, None if folder else op.local.stat, None)
            for p, s in self.index.states().items():
                if s.local is not None and (p == op.path or paths.is_under(p, op.path)):
                    self.index.set_local(p, None)  # found again under the copy's name
        result.conflicts.append(copy)
        if op.remote is not None and op.remote.node is not None:
            download = pl.Download(op.path, op.remote, None)
            if _is_folder(op.remote.node):
                with self.index.transaction():
                    self._make_folder(download)
            else:
                await self._download(download, result)
                result.downloaded -= 1

    # -- remote changes ----------------------------------------------------------

    async def _commit(
        self, ops: list[pl.Upload | pl.DeleteRemote | pl.MoveRemote], result: SyncResult
    ) -> None:
        def order(op: pl.Upload | pl.DeleteRemote | pl.MoveRemote) -> tuple[int, int, str]:
            if isinstance(op, pl.DeleteRemote):
                return (2, -op.path.count("/"), op.path)
            path = op.dst if isinstance(op, pl.MoveRemote) else op.path
            if op.node.kind is not Kind.DIRECTORY and _is_folder(
                self.index.state(path).remote_node
            ):
                return (3, path.count("/"), path)  # a folder becomes a file: after its children go
            return (0 if op.node.kind is Kind.DIRECTORY else 1, path.count("/"), path)

        ops = sorted(ops, key=order)
        for i in range(0, len(ops), COMMIT_BATCH):
            await self._commit_batch(ops[i : i + COMMIT_BATCH], result)

    async def _commit_batch(
        self, ops: list[pl.Upload | pl.DeleteRemote | pl.MoveRemote], result: SyncResult
    ) -> None:
        wire: list[CommitOp] = []
        chunks: list[InlineChunk] = []
        bodies: dict[int, dict[ChunkId, bytes]] = {}
        kept: list[pl.Upload | pl.DeleteRemote | pl.MoveRemote] = []
        budget = INLINE_BUDGET
        for op in ops:
            try:
                built = self._wire_op(op, budget)
            except (Changed, OSError) as exc:
                result.problems.append(f"{getattr(op, 'path', '')}: {exc}; retried next round")
                continue
            if built is None:
                continue
            commit_op, inl, body = built
            budget -= sum(len(c.data) * 3 // 4 for c in inl)
            chunks.extend(inl)
            bodies[len(wire)] = body
            wire.append(commit_op)
            kept.append(op)
        if not wire:
            return
        for _attempt in range(3):
            # A folder move writes entries we cannot predict: list them afterwards.
            folder_move = any(
                isinstance(o, pl.MoveRemote) and o.node.kind is Kind.DIRECTORY for o in kept
            )
            since = None if folder_move else self.index.get("cursor")
            try:
                resp = await self.remote.commit_full(
                    self.ns, wire, chunks, journal=None if since else self.journal, since=since
                )
            except LinesyncError as exc:
                if exc.code is not Code.CURSOR_INVALID:
                    raise
                self.need_pull = True  # the journal was reset: the next pull re-syncs
                return
            results = resp.results
            if resp.changes is None:
                self._follow(resp, kept)
            chunks = []
            missing: dict[ChunkId, bytes] = {}
            retry: list[int] = []
            with self.index.transaction():
                for i, r in enumerate(results):
                    if r.status == "missing":
                        for cid in unpack_ids(r.missing or ""):
                            missing[cid] = bodies[i][cid]
                        retry.append(i)
                    else:
                        self._committed(kept[i], wire[i], r, bodies[i], result)
            if resp.changes is not None:  # the server's own word on every entry
                await self._apply_page(resp.changes)
                self.need_pull = resp.changes.more
            if not retry:
                return
            await self._upload(missing)
            wire = [wire[i] for i in retry]
            kept = [kept[i] for i in retry]
            bodies = {n: bodies[i] for n, i in enumerate(retry)}
        result.problems.append("chunks went missing while committing; retried next round")

    def _follow(
        self, resp: CommitResponse, ops: list[pl.Upload | pl.DeleteRemote | pl.MoveRemote]
    ) -> None:
        """Move the cursor past our own commit when nobody else committed in
        between and every entry it wrote is known here; else list next round."""
        cursor = self.index.get("cursor")
        at = int(cursor.split(".")[1]) if cursor else -1
        written = 0  # entries the commit wrote, when we can tell
        for r, op in zip(resp.results, ops, strict=True):
            if r.status == "conflict" or (
                isinstance(op, pl.MoveRemote) and op.node.kind is Kind.DIRECTORY
            ):
                written = -(10**9)  # a folder move writes an entry per descendant
            elif r.status == "ok" and r.jid and r.jid > resp.head_before:
                written += 2 if isinstance(op, pl.MoveRemote) else 1  # a move: entry + tombstone
        head = int(resp.cursor.split(".")[1]) if resp.cursor else -1
        if resp.head_before == at and head == at + written:
            with self.index.transaction():
                self.index.set("cursor", resp.cursor)
        else:
            self.need_pull = True

    def _wire_op(
        self, op: pl.Upload | pl.DeleteRemote | pl.MoveRemote, budget: int
    ) -> tuple[CommitOp, list[InlineChunk], dict[ChunkId, bytes]] | None:
        if isinstance(op, pl.DeleteRemote):
            return CommitOp(path=op.path, kind=Kind.TOMBSTONE, base_jid=op.base_jid), [], {}
        if isinstance(op, pl.MoveRemote):
            n = op.node
            size = n.size if n.kind is Kind.FILE else 0
            return (
                CommitOp(path=op.dst, kind=n.kind, base_jid=op.dst_base, size=size,
                         mtime_ns=n.mtime_ns if n.kind is Kind.FILE else 0, exec=n.exec,
                         target=n.target, move_from=op.src, move_base=op.src_jid),
                [], {},
            )  # fmt: skip
        n = op.node
        if n.kind is not Kind.FILE:
            return (
                CommitOp(path=op.path, kind=n.kind, base_jid=op.base_jid, target=n.target),
                [],
                {},
            )
        data, stat = self.fs.read(op.path)
        state = self.index.state(op.path)
        ids, chunks = self._chunks_of(data, stat, state, n)
        base_ver = state.remote if state.remote and state.remote.jid == op.base_jid else None
        base_ids = None
        if base_ver is not None and base_ver.node is not None and base_ver.node.chash:
            base_ids = self.index.blocklist(base_ver.node.chash)
        prep = prepare_file(
            op.path, ids, chunks, size=len(data), mtime_ns=n.mtime_ns, exec=n.exec,
            base_jid=op.base_jid if base_ids is not None else 0,
            base_ids=base_ids, base_chunks=self.chunks.local, inline_budget=max(budget, 0),
        )  # fmt: skip
        commit_op = prep.op
        if base_ids is None:
            commit_op = CommitOp(
                path=op.path, kind=Kind.FILE, base_jid=op.base_jid, size=len(data),
                mtime_ns=n.mtime_ns, exec=n.exec, content=prep.op.content,
            )  # fmt: skip
        return commit_op, prep.inline, chunks

    def _chunks_of(
        self, data: bytes, stat: Stat, state: PathState, node: Node
    ) -> tuple[list[ChunkId], dict[ChunkId, bytes]]:
        """The file's chunks: cut where the scan cut them when the file is as the
        scan saw it (the server checks every chunk's bytes against its id anyway),
        else cut and hashed again."""
        assert node.chash is not None
        ids = self.index.blocklist(node.chash)
        sizes = self.index.chunk_sizes(node.chash)
        if state.local is not None and state.local.stat == stat and ids and sizes:
            chunks: dict[ChunkId, bytes] = {}
            offset = 0
            for cid, size in zip(ids, sizes, strict=True):
                chunks.setdefault(cid, data[offset : offset + size])
                offset += size
            if offset == len(data):
                return ids, chunks
        ids, chunks = split(data)
        if bl.content_hash(ids) != node.chash:
            raise Changed("changed since it was scanned")
        return ids, chunks

    async def _upload(self, chunks: dict[ChunkId, bytes]) -> None:
        """Upload chunks in batches of about UPLOAD_BATCH_BYTES, a few at once."""
        batches: list[list[Frame]] = [[]]
        size = 0
        for cid, data in chunks.items():
            kind, payload = codec.encode(data)
            if batches[-1] and size + len(payload) > UPLOAD_BATCH_BYTES:
                batches.append([])
                size = 0
            batches[-1].append(Frame(cid, kind, None, payload))
            size += len(payload)
        gate = asyncio.Semaphore(UPLOAD_CONCURRENCY)
        total = sum(len(d) for d in chunks.values())
        done = 0

        async def one(batch: list[Frame]) -> None:
            nonlocal done
            async with gate:
                await self.remote.upload(self.ns, batch)
            done += sum(len(chunks[f.chunk_id]) for f in batch)
            self.progress("upload", done, total)

        await asyncio.gather(*(one(b) for b in batches if b))

    def _committed(
        self,
        op: pl.Upload | pl.DeleteRemote | pl.MoveRemote,
        wire: CommitOp,
        r: CommitResult,
        body: dict[ChunkId, bytes],
        result: SyncResult,
    ) -> None:
        with self.index.transaction():
            if r.status == "conflict":
                self._on_conflict(op, r, result)
                return
            assert r.jid is not None
            if isinstance(op, pl.DeleteRemote):
                v = Version(r.jid, None)
                self.index.set_remote(op.path, v)
                self.index.set_synced(op.path, v)
                result.deleted_remote += 1
                return
            if isinstance(op, pl.MoveRemote):
                v = Version(r.jid, op.node, op.src)
                self.index.set_remote(op.dst, v)
                self.index.set_synced(op.dst, v)
                if op.node.kind is not Kind.DIRECTORY:
                    gone = Version(r.jid + 1, None)  # the server writes the source's tombstone next
                    self.index.set_remote(op.src, gone)
                    self.index.set_synced(op.src, gone)
                    result.moved += 1
                    return
                self.index.set("must_pull", "1")
                for p, s in self.index.states().items():
                    if p == op.src or paths.is_under(p, op.src):
                        if p != op.src and s.synced is not None and s.synced.node is not None:
                            # What we agreed on travels with the file: its next edit
                            # is then a plain upload, not a conflict with itself.
                            # Its JID is -1 until a list confirms the server carried
                            # it; one that did not come was deleted there meanwhile.
                            dst = paths.rebase(p, op.src, op.dst)
                            self.index.set_synced(dst, Version(CARRIED, s.synced.node))
                        self.index.set_synced(p, None)
                        self.index.set_remote(p, Version(s.remote.jid if s.remote else 0, None))
                result.moved += 1
                return
            v = Version(r.jid, op.node)
            self.index.put_version(r.jid, op.node.chash)
            self.index.set_remote(op.path, v)
            self.index.set_synced(op.path, v)
            if op.node.kind is Kind.FILE and body and op.node.size <= CACHE_MAX_FILE:
                self.index.cache_put(body.items())
            result.uploaded += 1

    def _on_conflict(
        self, op: pl.Upload | pl.DeleteRemote | pl.MoveRemote, r: CommitResult, result: SyncResult
    ) -> None:
        """The server moved on: learn its current entry; the next round re-plans
        (a refused move as plain changes). A name that clashes by case becomes a
        conflict copy here."""
        if isinstance(op, pl.MoveRemote):
            self.refused_moves.add((op.src, op.dst))
        cur = r.current
        if cur is not None and cur.path == r.path:
            chash = None
            if cur.kind is Kind.FILE and cur.content is not None:
                ids = resolve_content(cur.content, self.index.version_blocklist)
                if ids is not None:
                    chash = bl.content_hash(ids)
                    self.index.put_blocklist(chash, ids, None)
            self.index.set_remote(cur.path, Version(cur.jid, _node_of(cur, chash), cur.moved_from))
        if r.reason == "case_collision" and isinstance(op, (pl.Upload, pl.MoveRemote)):
            path = op.dst if isinstance(op, pl.MoveRemote) else op.path
            copy = self._free_name(path, "case conflict")
            found = self.fs.lstat(path)
            try:
                if found is not None:
                    folder = found[0].kind is Kind.DIRECTORY
                    self.fs.rename(path, copy, None if folder else found[1], None)
                    self.index.set_local(path, None)
                    result.conflicts.append(copy)
            except (Changed, OSError) as exc:
                result.problems.append(f"{path}: {exc}; retried next round")
        log.info("%s: conflict (%s)", r.path, r.reason)


def open_folder(folder: Path) -> tuple[FolderConfig, Index]:
    config = FolderConfig.load(folder)
    index = Index.open(folder / STATE_DIR / INDEX_FILE)
    return config, index
