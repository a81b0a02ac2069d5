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
import errno
import functools
import json
import os
from collections.abc import Callable, Coroutine
from pathlib import Path

from linesync.client import planner as pl
from linesync.client import rail, selective, status
from linesync.client.base import (  # re-exported: the engine's public names
    CACHE_MAX_BYTES,
    CACHE_MAX_FILE,
    CARRIED,
    DOWNLOAD_CONCURRENCY,
    GROUP_BYTES,
    GROUP_FILES,
    LIST_INLINE,
    MAX_ROUNDS,
    RACY_NS,
    MassDelete,
    Placing,
    SyncResult,
    is_folder,
    log,
)
from linesync.client.bigfiles import STREAM_MIN, WINDOW_BYTES, cut_file
from linesync.client.chunksource import assemble
from linesync.client.committing import Committing
from linesync.client.config import INDEX_FILE, FolderConfig
from linesync.client.cutting import POOL_FILE_MIN, POOL_MIN_BYTES, Cut, Cutter
from linesync.client.ignore import IgnoreRules
from linesync.client.index import Index
from linesync.client.localfs import STATE_DIR, Changed, Walk
from linesync.client.merge import merge3
from linesync.client.metrics import METRICS
from linesync.client.model import Local, Node, PathState, Stat, Version
from linesync.client.tasks import gather_all
from linesync.client.transfer import split
from linesync.core import blocklist as bl
from linesync.core import paths
from linesync.core.chunking import is_text
from linesync.core.ids import ChunkId, file_hash
from linesync.protocol import cursor as cursors
from linesync.protocol import inline
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.schemas import Kind, ListResponse

# A long-poll's answer: the cursor it was listed from, and the page.
News = tuple[str | None, ListResponse]

GIT_TOLD_MAX = 1000  # .git folders remembered as told about
# A sync told which paths changed looks at those alone, up to so many of them.
FOCUS_MAX = 4096
INLINE_WRITE = 256 * 1024  # a group's files up to this size are written on the loop's thread

__all__ = ["CARRIED", "Engine", "MassDelete", "SyncResult", "open_folder"]


class Engine(Committing):
    path_errors: dict[str, str]  # this sync's paths it could not read or write: why
    _files_up: list[int]  # this round's files uploaded, and to upload (progress)
    excluded: frozenset[str] = frozenset()  # folders left out here (selective sync)

    # -- the loop ----------------------------------------------------------

    async def sync_once(
        self, touched: set[str] | None = None, news: News | None = None, pull: bool = True
    ) -> SyncResult:
        """One sync. ``touched``: the only paths that may have changed on disk
        since the last scan (a watcher's events): only they (and what lies below
        them) are looked at on disk, and only paths whose views disagree are
        planned. None: the whole folder is scanned. ``news``: a page of the
        server's changes and the cursor it was listed from (a long-poll's
        answer), taken in place of the first list request when that cursor is
        still the index's. ``pull`` False: a long-poll is armed at the index's
        cursor (a watcher's), so the server has nothing new unless ``news``
        says so: no list request unless the news could not be taken whole."""
        with self.fs.lock():
            self.path_errors = {}
            self.excluded = selective.excluded_in(self.folder, self.config)
            done = self._excluded_applied()
            if not done <= self.excluded:  # taken back in: planned whole if left out again
                self._excluded_applied(done & self.excluded)
            try:
                result = await self._sync_once(touched, news, pull)
            except Exception as exc:
                status.record_error(self.index, exc, self.clock())
                raise
            if result.converged:
                self._excluded_applied(self.excluded)
            status.record_result(self.index, result, self.path_errors, self.clock())
            return result

    def _excluded_applied(self, done: frozenset[str] | None = None) -> frozenset[str]:
        """The left-out folders a sync converged with: every path below them was
        planned once with the folder left out (what was here as synced is gone
        here, what was gone here is no longer recorded as synced), so a round
        needs only the few there that still have a synced view
        (:meth:`Index.dirty`). ``done``: record these instead."""
        if done is not None:
            value = json.dumps(sorted(done)) if done else None
            if self.index.get("excluded_done") != value:
                with self.index.transaction():
                    self.index.set("excluded_done", value)
            return done
        try:
            return frozenset(str(p) for p in json.loads(self.index.get("excluded_done") or "[]"))
        except (ValueError, TypeError):
            return frozenset()

    async def _sync_once(
        self, touched: set[str] | None, news: News | None, pull: bool
    ) -> SyncResult:
        result = SyncResult()
        if touched is not None and (len(touched) > FOCUS_MAX or ".linesyncignore" in touched
                                    or "" in touched):  # fmt: skip
            touched = None  # the rules changed, or too much did: look at everything
        self.need_pull = pull
        self.refused_moves: set[tuple[str, str]] = set()
        self.skipped = self._load_skipped()
        if news is not None and news[0] == self.index.get("cursor"):
            self.need_pull = not await self._apply_page(news[1]) or news[1].more
        elif news is not None:
            self.need_pull = True  # listed from an older cursor: list from ours
        # Our last folder move was not listed yet: its carried files wait for it.
        must_pull = self.index.get("must_pull") == "1"
        self.need_pull = self.need_pull or must_pull
        for rnd in range(1, MAX_ROUNDS + 1):
            result.rounds = rnd
            focus = None if touched is None else touched | set(self.index.dirty(self.excluded))
            self.scan(result, focus)
            plan, verdict, _ = self._plan()
            if self.need_pull and (must_pull or not (rnd == 1 and self._pushes(plan))):
                got = await self.pull()
                self.need_pull = must_pull = False
                if got:  # (else the views, and so the plan, are as they were)
                    del plan, verdict  # a big folder's plan: not two at once
                    plan, verdict, _ = self._plan()
            self._keep_verdict(verdict, result)
            result.kept_locally = plan.kept_locally
            if not plan.ops:
                result.converged = not self.unstable and result.held is None
                if self.unstable:
                    result.problems.append(
                        "still changing, synced next time: " + ", ".join(sorted(self.unstable))
                    )
                break
            await self.execute(plan, result)
        else:
            result.problems.append(f"did not settle in {MAX_ROUNDS} rounds")
        result.skipped = {p: why for p, (_, why) in self.skipped.items()}
        held = result.held
        if held is not None and held.refused:
            raise MassDelete(
                held.count, held.total, recent=held.recent, result=result, folder=str(self.folder)
            )
        return result

    def wants_streamed(self, path: str, size: int) -> bool:
        """Whether a file another device is uploading is worth fetching while it
        goes up: a big one this folder does not ignore."""
        ignore = getattr(self, "ignore", None)
        return (
            size >= STREAM_MIN
            and (ignore is None or not ignore.ignored(path, False))
            and not pl.is_excluded(path, self.excluded)
        )

    def _pushes(self, plan: pl.Plan) -> bool:
        """Local changes to commit, on a folder that has listed before: the commit
        itself brings the server's news (``since``), so no list is needed first.
        A stale remote view is safe here: the server refuses any op whose base
        moved on, and the next round re-plans with what it said."""
        return self.index.get("cursor") is not None and any(
            isinstance(op, (pl.Upload, pl.DeleteRemote, pl.MoveRemote)) for op in plan.ops
        )

    def _visible_states(self) -> tuple[dict[str, PathState], bool]:
        """The states to plan, and whether they are only some paths' (partial):
        those of the paths whose views disagree (and of the entries this folder
        could not hold), with what lies below them and their folders; every
        path's when more than ``FOCUS_MAX`` disagree (one read of the whole
        index then costs less than a query per path). The planner decides
        nothing for a path whose views agree, so both plans are the same.
        Below a left-out folder: everything until a sync converged with it
        left out, then only what still has a synced view there (the planner
        leaves the rest alone), and the folder itself (it keeps the folders
        above it alive)."""
        applied = self._excluded_applied() & self.excluded
        fresh = self.excluded - applied
        dirty = [*self.index.dirty(self.excluded), *self.skipped, *fresh]
        partial = len(dirty) <= FOCUS_MAX
        if partial:
            states = self.index.states_at(dirty)
            folders = {a for p in [*dirty, *applied] for a in paths.ancestors(p)}
            folders |= applied
            states.update(self.index.states_at(folders - states.keys(), below=False))
        else:
            states = self.index.states()
        visible = {
            p: s
            for p, s in states.items()
            if not self.ignore.ignored(p, self._is_dir(s)) and p not in self.unstable
        }
        return visible, partial

    @staticmethod
    def _is_dir(s: PathState) -> bool:
        n = s.local_node or s.remote_node or s.synced_node
        return n is not None and n.kind is Kind.DIRECTORY

    async def preview(self) -> tuple[pl.Plan, list[pl.Op], rail.Hold | None, SyncResult]:
        """What a sync would do now (for ``linesync status``): the plan, the ops
        the rail would hold back and why, and the scan's problems and the entries
        skipped. Nothing is sent and no file is changed."""
        result = SyncResult()
        self.refused_moves = set()
        self.path_errors = {}
        self.excluded = selective.excluded_in(self.folder, self.config)
        self.skipped = self._load_skipped()
        await self.pull()
        self.scan(result)
        plan, verdict, held = self._plan()
        result.skipped = {p: why for p, (_, why) in self.skipped.items()}
        return plan, held, verdict.hold if held else None, result

    def _plan(self) -> tuple[pl.Plan, rail.Verdict, list[pl.Op]]:
        """The plan for the views as they are, without what this folder cannot
        hold and what the rail holds back; the rail's verdict on its deletions;
        and the ops it holds back."""
        states, partial = self._visible_states()
        self._prune_skipped(states)
        plan = pl.plan(states, read_only=self.config.read_only, avoid=frozenset(self.refused_moves),
                       excluded=self.excluded)  # fmt: skip
        if partial:
            plan.synced_files = self.index.synced_files()  # the rail weighs the whole folder
        plan.ops = [op for op in plan.ops if not self._skips(op)]
        deletes = [op.path for op in plan.ops if isinstance(op, pl.DeleteRemote)]
        now = self.clock()
        recent = rail.prune(self._recent(), now, self.rail.window_ns)
        verdict = rail.judge(
            rail.Hold.loads(self.index.get("deletes_held")),
            pending=rail.digest(deletes),
            paths=len(deletes),
            files=plan.remote_deletes,
            synced_files=plan.synced_files,
            recent=sum(n for _, n in recent),
            now_ns=now,
            rail=self.rail,
            confirmed=self.allow_mass_delete,
        )
        held: list[pl.Op] = []
        if verdict.action in (rail.Action.WAIT, rail.Action.REFUSE):
            held = [op for op in plan.ops if self._waits_for_deletes(op, states)]
            plan.ops = [op for op in plan.ops if not self._waits_for_deletes(op, states)]
        return plan, verdict, held

    def _waits_for_deletes(self, op: pl.Op, states: dict[str, PathState]) -> bool:
        """A deletion on the server, or a change that needs one first (a file in
        place of a folder whose contents go)."""
        if isinstance(op, pl.DeleteRemote):
            return True
        if isinstance(op, (pl.Upload, pl.MoveRemote)) and op.node.kind is not Kind.DIRECTORY:
            path = op.dst if isinstance(op, pl.MoveRemote) else op.path
            s = states.get(path)
            return s is not None and is_folder(s.remote_node)
        return False

    def _keep_verdict(self, verdict: rail.Verdict, result: SyncResult) -> None:
        """Record the rail's verdict: the pending set lives on in the index."""
        with self.index.transaction():
            self.index.set("deletes_held", verdict.hold.dumps() if verdict.hold else None)
            if verdict.action is rail.Action.SEND and self.allow_mass_delete:
                self.index.set("recent_deletes", None)  # the user saw them all
        held = verdict.action in (rail.Action.WAIT, rail.Action.REFUSE)
        result.held = verdict.hold if held else None
        result.wake_ns = verdict.wake_ns if verdict.action is rail.Action.WAIT else None

    # -- pull: the remote view -----------------------------------------------

    async def pull(self, wait: int = 0) -> bool:
        """Bring the remote view up to the server's head; True if anything came."""
        got = False
        fold = True
        began = _jid_of(self.index.get("cursor"))
        while True:
            cursor = self.index.get("cursor")
            try:
                resp = await self.remote.list_changes(
                    self.ns, cursor, wait=wait, inline=LIST_INLINE, fold=fold
                )
            except LinesyncError as exc:
                if exc.code is not Code.CURSOR_INVALID:
                    raise
                self.report("the server's journal was reset or restored: re-syncing from scratch")
                with self.index.transaction():
                    self.index.forget_remote()
                got = True
                continue
            wait = 0
            if not await self._apply_page(resp):
                fold = False  # (a folder move this view cannot unfold: the page again)
                continue
            got = got or bool(resp.entries)
            if not resp.more:
                METRICS.lag.set(max(0, _jid_of(self.index.get("cursor")) - began))
                return got

    # -- scan: the local view --------------------------------------------------

    def scan(self, result: SyncResult, focus: set[str] | None = None) -> None:
        """Bring the local view up to the disk: the whole folder, or only the
        paths in ``focus`` and below them."""
        self.ignore = self._load_ignore(result)
        now = self.clock()
        # A file the last scan read in the same tick of the file system's clock
        # as its last change may have changed again since with the same size
        # and times ("racy", as git says): its stat proves nothing; read it.
        last = self.index.get("scanned_ns")
        self.racy = (int(last) - RACY_NS if last else 0, now)
        if focus is None:
            walk, look = self._walk_changed()
            states = self.index.states_of(look)
        else:
            walk = self.fs.walk_paths(focus, self.ignore)
            states = self.index.states_at(focus)
        if focus is not None and (came := self._moved_here_from(focus, walk, states)):
            # Events named where something moved to, not where from (a watch is
            # added too late to pair them): that source is looked at too, so the
            # move is committed as a move, not as new content and a deletion.
            focus = focus | came
            walk = self.fs.walk_paths(focus, self.ignore)
            states = self.index.states_at(focus)
        result.problems.extend(walk.skipped)
        if walk.repositories:
            self._tell_repositories(walk.repositories, result)
        for disk in walk.stale:  # we hold the folder: no one else is writing them
            self.fs.remove_stale(disk)
        for dup in walk.duplicates:  # an NFD twin of an NFC name: keep both
            new = self._free_name(dup.path, "name clash")
            try:
                self.fs.rename_disk(dup.disk, new)
                result.conflicts.append(new)
            except OSError as exc:
                result.problems.append(f"{dup.disk}: {exc}")
        self.unstable = set()

        def record(path: str, local: Local | None) -> None:
            prev = states.get(path)
            if local is not None and (prev is None or local != prev.local):
                self.index.set_local(path, local)

        # Many big files to cut into chunks (a first sync): worker processes do it.
        todo = sum(
            e.stat.size
            for p, e in walk.entries.items()
            if e.node.kind is Kind.FILE
            and POOL_FILE_MIN <= e.stat.size < STREAM_MIN
            and ((s := states.get(p)) is None or s.local is None or s.local.stat != e.stat)
        )
        cutter = Cutter(lambda c, ids, sizes: record(c.path, self._cut_local(c, ids, sizes)),
                        parallel=todo >= POOL_MIN_BYTES)  # fmt: skip
        with self.index.transaction():
            try:
                for path, entry in walk.entries.items():
                    local = self._local_of(path, entry.node, entry.stat, states.get(path), result)
                    if isinstance(local, Cut):
                        cutter.add(local)
                    else:
                        record(path, local)
                cutter.finish()
            finally:
                cutter.close()
            for path, s in states.items():
                if s.local is not None and path not in walk.entries:
                    self.index.set_local(path, None)
            if focus is None:  # (a partial scan leaves the racy window wider: safe)
                self.index.set("scanned_ns", str(now))

    def _walk_changed(self) -> tuple[Walk, set[str]]:
        """A walk of the whole folder without the files whose stat and
        executable bit are as the index last saw them, outside the racy window
        (:meth:`_local_of` would keep those as they are); and the paths to look
        at: those it found, and those the index saw that it did not find. An
        unchanged folder costs a walk and one query, not a state per path."""
        seen = self.index.file_stats()
        lo, hi = self.racy

        def unchanged(path: str, s: os.stat_result) -> bool:
            key = (s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino, bool(s.st_mode & 0o100))
            return not lo <= s.st_mtime_ns <= hi and seen.pop(path, None) == key

        walk = self.fs.walk(self.ignore, unchanged)
        return walk, {*walk.entries, *seen, *self.index.local_others()}

    def _moved_here_from(
        self, focus: set[str], walk: Walk, states: dict[str, PathState]
    ) -> set[str]:
        """Paths outside ``focus`` whose inode a new entry of this walk has."""
        inos = [
            e.stat.ino
            for p, e in walk.entries.items()
            if (s := states.get(p)) is None or s.local is None or s.local.stat.ino != e.stat.ino
        ]
        if not inos:
            return set()
        return {
            p
            for p in self.index.paths_of_inodes(inos)
            if p not in focus and not any(a in focus for a in paths.ancestors(p))
        }

    def _tell_repositories(self, found: list[str], result: SyncResult) -> None:
        """Say once, on first sight of each, that a .git folder is left out."""
        try:
            told = set(json.loads(self.index.get("git_told") or "[]"))
        except (ValueError, TypeError):
            told = set()
        new = [p for p in found if p not in told]
        if not new:
            return
        for p in new:
            result.problems.append(
                f"{p}: a git repository's .git folder is not synced (two devices writing one "
                "repository's .git corrupt it); the repository's files are. Sync the "
                "repository with git itself (push/pull), or add a line `!.git` to "
                ".linesyncignore to sync .git folders anyway"
            )
        keep = sorted(told | set(new))[-GIT_TOLD_MAX:]
        with self.index.transaction():
            self.index.set("git_told", json.dumps(keep))

    def _local_of(
        self, path: str, node: Node, stat: Stat, prev: PathState | None, result: SyncResult
    ) -> Local | Cut | None:
        """What the scan records for a path: its local view (as before, when its
        stat says it did not change), or a file read that is still to be cut
        into chunks; None: left alone this round."""
        if node.kind is not Kind.FILE:
            return Local(node, stat)
        old = prev.local if prev else None
        racy = self.racy[0] <= stat.mtime_ns <= self.racy[1]
        if old is not None and old.stat == stat and old.node.kind is Kind.FILE and not racy:
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
            if stat.size < STREAM_MIN:
                data, stat2 = self.fs.read(path)
                fhash = file_hash([data])
                same = self.index.read_before(path, fhash)
                if same is None and old is None:
                    same = self._moved_bytes(path, stat2.ino, fhash)
                if same is not None:  # the bytes the index last read here
                    return Local(Node(Kind.FILE, stat2.size, stat2.mtime_ns, node.exec,
                                      chash=same), stat2)  # fmt: skip
                return Cut(path, data, fhash, stat2, node.exec)
            ids, sizes, stat2 = cut_file(self.fs, path)
        except (Changed, OSError) as exc:
            self.unstable.add(path)
            self._path_error(path, f"could not read it: {exc}")
            return None
        return self._cut_local(Cut(path, b"", b"", stat2, node.exec), ids, sizes)

    def _cut_local(self, c: Cut, ids: list[ChunkId], sizes: list[int]) -> Local:
        """Record a file's chunks (and the hash of the bytes read, when it was
        read whole); its local view."""
        chash = bl.content_hash(ids)
        self.index.put_blocklist(chash, ids, sizes)
        self.index.set_layout(c.path, ids, sizes, c.fhash or None)
        return Local(Node(Kind.FILE, c.stat.size, c.stat.mtime_ns, c.exec, chash=chash), c.stat)

    def _moved_bytes(self, path: str, ino: int, fhash: bytes) -> bytes | None:
        """The content hash of a file new at ``path`` whose bytes (``fhash``) are
        those the index last read at another path with its inode (a rename
        keeps it), recorded here too: a moved file is not cut into chunks again."""
        for src in self.index.paths_of_inodes([ino]):
            same = self.index.read_before(src, fhash) if src != path else None
            if same is None:
                continue
            ids, sizes = self.index.blocklist(same), self.index.chunk_sizes(same)
            if ids is not None and sizes is not None and len(sizes) == len(ids):
                self.index.set_layout(path, ids, sizes, fhash)
                return same
        return None

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
        folders = [o for o in ops if isinstance(o, pl.Download) and is_folder(o.remote.node)]
        for fo in sorted(folders, key=lambda o: o.path.count("/")):
            self._guard(result, fo.path, self._make_folder, fo, remote=fo.remote)
        for op in ops:
            if isinstance(op, pl.MoveLocal):
                self._guard(result, op.dst, self._move_local, op, result, remote=op.remote)
        deletes = [o for o in ops if isinstance(o, pl.DeleteLocal)]
        for do in sorted(deletes, key=lambda o: o.path.count("/"), reverse=True):
            self._guard(result, do.path, self._delete_local, do, result)
        downloads = [o for o in ops if isinstance(o, pl.Download) and not is_folder(o.remote.node)]
        self.folders_seen = set()  # (after the deletions, which may take folders away)
        gate = asyncio.Semaphore(DOWNLOAD_CONCURRENCY)

        total = sum(o.remote.node.size for o in downloads if o.remote.node)
        done = files = 0

        async def one(op: pl.Download) -> None:
            nonlocal done, files
            async with gate:
                await self._aguard(
                    result, op.path, self._download(op, result, defer=True), remote=op.remote
                )
            done += op.remote.node.size if op.remote.node else 0
            files += 1
            self.progress("download", done, total)
            self.progress("download files", files, len(downloads))

        for group in self._groups(downloads):
            await self._prefetch(group)
            try:
                await gather_all(*(one(op) for op in group))
            finally:
                await self._settle(result)
            self.chunks.clear()
        for op in ops:
            if isinstance(op, pl.Merge):
                await self._aguard(result, op.path, self._merge(op, result))
            elif isinstance(op, pl.Conflict):
                await self._aguard(result, op.path, self._conflict(op, result), remote=op.remote)
            elif isinstance(op, pl.Record):
                self._record(op.path, op.remote)
        commits = [o for o in ops if isinstance(o, (pl.Upload, pl.DeleteRemote, pl.MoveRemote))]
        if commits:
            self._files_up = [0, sum(1 for o in commits if isinstance(o, pl.Upload)
                                     and o.node.kind is not Kind.DIRECTORY)]  # fmt: skip
            await self._commit(commits, result)
        self.index.cache_trim(CACHE_MAX_BYTES)

    async def _commit_batch(
        self, ops: list[pl.Upload | pl.DeleteRemote | pl.MoveRemote], result: SyncResult
    ) -> list[pl.Upload | pl.DeleteRemote | pl.MoveRemote]:
        before = result.uploaded
        rest = await super()._commit_batch(ops, result)
        up = getattr(self, "_files_up", None)
        if up is not None and result.uploaded > before:  # (files up, for progress bars)
            up[0] += result.uploaded - before
            self.progress("upload files", up[0], max(up))
        return rest

    @staticmethod
    def _groups(downloads: list[pl.Download]) -> list[list[pl.Download]]:
        """Downloads in groups of at most GROUP_BYTES of file content and
        GROUP_FILES files."""
        groups: list[list[pl.Download]] = [[]]
        size = 0
        for op in downloads:
            n = op.remote.node.size if op.remote.node else 0
            if groups[-1] and (size + n > GROUP_BYTES or len(groups[-1]) >= GROUP_FILES):
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
            if node.size >= STREAM_MIN:
                continue  # fetched window by window as it is written
            old = op.local.node.chash if op.local is not None else None
            if old == node.chash:
                continue  # the same bytes: only its time or mode changes
            new = self.index.blocklist(node.chash) or []
            ids.extend(new)
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
        self,
        result: SyncResult,
        path: str,
        fn: Callable[..., object],
        *args: object,
        remote: Version | None = None,
    ) -> None:
        if self._below_skipped(path):
            return  # its folder cannot be made here: skipped with it
        try:
            with self.index.transaction():
                fn(*args)
        except (Changed, OSError) as exc:
            self._failed(result, path, exc, remote)

    async def _aguard(
        self,
        result: SyncResult,
        path: str,
        work: Coroutine[object, object, None],
        remote: Version | None = None,
    ) -> None:
        if self._below_skipped(path):
            work.close()  # its folder cannot be made here: skipped with it
            return
        try:
            await work
        except (Changed, OSError) as exc:
            self._failed(result, path, exc, remote)

    def _failed(
        self, result: SyncResult, path: str, exc: Exception, remote: Version | None
    ) -> None:
        """A local change failed. One the file system can never make (a name or
        a symlink target it cannot hold) skips the server's entry until it
        changes; anything else is tried again next round."""
        if remote is not None and isinstance(exc, OSError) and unrepresentable(exc, remote):
            why = exc.strerror or str(exc)
            self.skipped[path] = (remote.jid, why)
            with self.index.transaction():
                self._save_skipped()
            result.problems.append(
                f"{path}: this folder's file system cannot hold it ({why}); skipped until it "
                "changes on the server"
            )
            return
        result.problems.append(f"{path}: {exc}; retried next round")
        self._path_error(path, f"could not write it: {exc}")

    def _path_error(self, path: str, why: str) -> None:
        """Note why a path could not be read or written (``linesync status``)."""
        errors = getattr(self, "path_errors", None)
        if errors is not None:
            errors[path] = why

    # -- entries this folder cannot hold -------------------------------------------

    def _load_skipped(self) -> dict[str, tuple[int, str]]:
        raw = self.index.get("unwritable")
        try:
            data = json.loads(raw) if raw else {}
            return {str(p): (int(j), str(why)) for p, (j, why) in data.items()}
        except (ValueError, TypeError, AttributeError):
            return {}

    def _save_skipped(self) -> None:
        data = {p: [j, why] for p, (j, why) in sorted(self.skipped.items())}
        self.index.set("unwritable", json.dumps(data) if data else None)

    def _prune_skipped(self, states: dict[str, PathState]) -> None:
        """An entry changed on the server (or is gone, or now ignored): try again.
        (``states`` holds every skipped path's that is still there and visible.)"""
        gone = [
            p
            for p, (jid, _) in self.skipped.items()
            if (s := states.get(p)) is None or s.remote is None or s.remote.jid != jid
        ]
        if gone:
            for p in gone:
                del self.skipped[p]
            with self.index.transaction():
                self._save_skipped()

    def _below_skipped(self, path: str) -> bool:
        return any(paths.is_under(path, s) for s in self.skipped)

    def _skips(self, op: pl.Op) -> bool:
        """An op on an entry this folder cannot hold, or below one: left out, so
        that it is neither retried every round nor ever read as deleted here."""
        if not self.skipped:
            return False
        p = op.dst if isinstance(op, (pl.MoveLocal, pl.MoveRemote)) else op.path
        return any(p == s or paths.is_under(p, s) for s in self.skipped)

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
        fhash = self.index.file_hash_at(op.src)  # the same bytes, renamed
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
            self.index.set_layout(op.dst, ids, sizes, fhash)
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
        if op.local.node.kind is not Kind.DIRECTORY and not isinstance(op, pl.Exclude):
            result.deleted_local += 1  # (folders are not counted, nor files left out)

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
            if anc in self.folders_seen:
                continue
            found = self.fs.lstat(anc)
            if found is None:
                self.fs.mkdir(anc)
            elif found[0].kind is not Kind.DIRECTORY:
                raise Changed(f"{anc} is not a folder")
            self.folders_seen.add(anc)

    def _ids_and_bases(
        self, node: Node, old: Local | None
    ) -> tuple[list[ChunkId], dict[ChunkId, ChunkId]]:
        """A version's blocklist, and for its new chunks the old chunks they
        replace (to be fetched as deltas against them)."""
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
        return ids, bases

    async def _file_bytes(
        self, node: Node, old: Local | None
    ) -> tuple[list[ChunkId], dict[ChunkId, bytes]]:
        ids, bases = self._ids_and_bases(node, old)
        have = await self.chunks.get(ids, bases)
        return ids, have

    async def _download_big(
        self, path: str, node: Node, old: Local | None, expect: Stat | None, sync_dir: bool
    ) -> tuple[Stat, list[ChunkId], list[int]]:
        """A big file, fetched a window of about WINDOW_BYTES at a time (the
        next while the last is written): never in memory whole."""
        ids, bases = self._ids_and_bases(node, old)
        step = max(16, WINDOW_BYTES * len(ids) // max(node.size, 1))
        windows = [ids[i : i + step] for i in range(0, len(ids), step)]
        sizes: list[int] = []
        w = self.fs.create(path, node.exec)
        ahead: asyncio.Future[dict[ChunkId, bytes]] | None = None
        try:
            for n, window in enumerate(windows):
                have = await (ahead or self.chunks.get(window, bases, for_cache=False))
                ahead = None
                if n + 1 < len(windows):
                    ahead = asyncio.ensure_future(
                        self.chunks.get(windows[n + 1], bases, for_cache=False)
                    )
                pieces = [have[c] for c in window]
                del have
                await asyncio.to_thread(w.write, pieces)
                sizes += map(len, pieces)
        except BaseException:
            if ahead is not None:
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)
            w.abort()
            raise
        stat = await asyncio.to_thread(w.finish, node.mtime_ns, expect, sync_dir)
        return stat, ids, sizes

    async def _download(self, op: pl.Download, result: SyncResult, defer: bool = False) -> None:
        """Put the server's version of a file or symlink in place. ``defer``: the
        new name is made durable and recorded with the rest of its group, by
        :meth:`_settle` (one folder fsync and one index transaction for many)."""
        node = op.remote.node
        assert node is not None
        old = op.local
        if old is not None and old.node.kind is Kind.DIRECTORY:
            with self.index.transaction():
                if not self.fs.rmdir(op.path):
                    raise Changed("folder is not empty")
                self.index.set_local(op.path, None)
                old = None
        self._ensure_parent(op.path)
        expect = old.stat if old is not None else None
        layout: tuple[list[ChunkId], list[int], dict[ChunkId, bytes], bytes | None] | None = None
        if node.kind is Kind.SYMLINK:
            assert node.target is not None
            stat = self.fs.symlink(op.path, node.target, expect)
            local_node: Node | None = node
        elif old is not None and old.node.kind is Kind.FILE and old.node.chash == node.chash:
            stat = self.fs.touch(op.path, node.mtime_ns, node.exec, expect)  # same bytes
            local_node = Node(Kind.FILE, node.size, node.mtime_ns, node.exec, chash=node.chash)
        elif node.size >= STREAM_MIN:
            stat, ids, sizes = await self._download_big(op.path, node, old, expect, not defer)
            local_node = None  # as written: see _recorder
            layout = (ids, sizes, {}, None)
        else:
            ids, have = await self._file_bytes(node, old)
            pieces = assemble(ids, have)
            local_node = None
            layout = (ids, [len(p) for p in pieces], have, file_hash(pieces))
            if defer:  # durable and in place with the rest of its group
                tmp = await self._write_temp(op.path, pieces, node)
                record = self._recorder(op, local_node, layout)
                self.settling.append(Placing(op.path, record, op.remote, tmp, expect))
                return
            stat = await asyncio.to_thread(
                self.fs.write_file,
                op.path,
                pieces,
                mtime_ns=node.mtime_ns,
                exec=node.exec,
                expect=expect,
            )
        record = self._recorder(op, local_node, layout)
        if defer and layout is not None:
            self.settling.append(Placing(op.path, record, op.remote, stat=stat))
            return
        result.downloaded += 1
        with self.index.transaction():
            record(stat)

    async def _write_temp(self, path: str, pieces: list[bytes], node: Node) -> Path:
        """A group's file, not yet durable nor in place: a small one written
        here (a thread's hand-off costs more than the write), others in a thread."""
        write = functools.partial(
            self.fs.write_temp, path, pieces, mtime_ns=node.mtime_ns, exec=node.exec
        )
        return write() if node.size <= INLINE_WRITE else await asyncio.to_thread(write)

    def _recorder(
        self,
        op: pl.Download,
        local_node: Node | None,
        layout: tuple[list[ChunkId], list[int], dict[ChunkId, bytes], bytes | None] | None,
    ) -> Callable[[Stat], None]:
        """What records a download once it is in place with ``stat``
        (``local_node`` None: the server's file as written, ``stat`` its size
        and time)."""
        remote = op.remote.node
        assert remote is not None

        def record(stat: Stat) -> None:
            node = local_node or Node(
                Kind.FILE, stat.size, stat.mtime_ns, remote.exec, chash=remote.chash
            )
            if layout is not None:
                self.index.set_layout(op.path, layout[0], layout[1], layout[3])
                if layout[2]:
                    self._cache_version(layout[0], layout[2], stat.size)
            self.index.set_local(op.path, Local(node, stat))
            self.index.set_synced(op.path, op.remote)

        return record

    async def _settle(self, result: SyncResult) -> None:
        """Make the group's new files durable (their fsyncs together), put each
        in place if its path is still as the index saw it, make the new names
        durable (each folder once), then record them all in one transaction: a
        file counts as synced only once it is durable. (Unrecorded, a file the
        server also has is recognised by its content next round.)"""
        settling, self.settling = self.settling, []
        if not settling:
            return
        tmps = [p.tmp for p in settling if p.tmp is not None]
        try:
            await asyncio.to_thread(self.fs.sync_files, tmps)
        except OSError as exc:
            for tmp in tmps:
                self.fs.discard(tmp)
            result.problems.append(f"{exc}; written again next round")
            return
        placed: list[tuple[Placing, Stat]] = []
        for p in settling:
            if p.tmp is None:
                assert p.stat is not None
                placed.append((p, p.stat))
                continue
            try:
                placed.append((p, self.fs.put_in_place(p.tmp, p.path, p.expect)))
            except (Changed, OSError) as exc:
                self._failed(result, p.path, exc, p.remote)
        try:
            self.fs.sync_parents(p.path for p, _ in placed)
        except OSError as exc:
            result.problems.append(f"{exc}; recorded next round")
            return
        with self.index.transaction():
            for p, stat in placed:
                p.record(stat)
        result.downloaded += len(placed)

    def _cache_version(self, ids: list[ChunkId], have: dict[ChunkId, bytes], size: int) -> None:
        if size <= CACHE_MAX_FILE:
            self.index.cache_put({c: have[c] for c in ids}, self.chunks.packed)

    async def _remote_bytes(self, v: Version | None) -> bytes | None:
        if v is None or v.node is None or v.node.chash is None:
            return None
        ids, have = await self._file_bytes(v.node, None)
        return b"".join(assemble(ids, have))

    async def _merge(self, op: pl.Merge, result: SyncResult) -> None:
        remote_size = op.remote.node.size if op.remote.node else 0
        if max(op.local.node.size, remote_size) >= STREAM_MIN:  # too big to merge in memory
            await self._conflict(pl.Conflict(op.path, op.remote, op.local), result)
            return
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
            op.path, [merged], mtime_ns=self.clock(), exec=op.local.node.exec, expect=stat
        )
        ids, chunks = split(merged)
        chash = bl.content_hash(ids)
        with self.index.transaction():
            self.index.put_blocklist(chash, ids, [len(chunks[c]) for c in ids])
            self.index.set_layout(op.path, ids, [len(chunks[c]) for c in ids], file_hash([merged]))
            self.index.set_local(
                op.path,
                Local(Node(Kind.FILE, new_stat.size, new_stat.mtime_ns, op.local.node.exec,
                           chash=chash), new_stat),
            )  # fmt: skip
            self.index.set_synced(op.path, op.remote)  # the merge goes up next round
        result.merged += 1

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
            if is_folder(op.remote.node):
                with self.index.transaction():
                    self._make_folder(download)
            else:
                await self._download(download, result)
                result.downloaded -= 1


# What a file system answers when it cannot hold a name, a path or a symlink
# target at all (as opposed to a full disk or a file that changed meanwhile).
_NEVER = frozenset({errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL})
_NO_SYMLINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def unrepresentable(exc: OSError, remote: Version) -> bool:
    """Whether ``exc`` says this folder can never hold the server's entry."""
    if exc.errno in _NEVER:
        return True
    node = remote.node
    return node is not None and node.kind is Kind.SYMLINK and exc.errno in _NO_SYMLINKS


def open_folder(folder: Path) -> tuple[FolderConfig, Index]:
    config = FolderConfig.load(folder)
    index = Index.open(folder / STATE_DIR / INDEX_FILE)
    return config, index


def _jid_of(cursor: str | None) -> int:
    """The JID a cursor stands at (0: none, or not one this client can read)."""
    try:
        return cursors.parse(cursor).jid if cursor else 0
    except LinesyncError:
        return 0
