"""A deterministic in-memory model of one linesync client and its server, at the
level of the planner, for CanopyCheck-style tests of ``linesync.client.planner``.

What is modelled, and how:

- **Content.** A file's content is a set of *lines*, each a unique token such
  as ``b"L7"``; its bytes are the sorted lines joined with ``\\n`` and those
  bytes are also its ``chash``. A version is therefore never confused with
  another one, and "this version survived" means "some live file holds all of
  its lines".
- **Merges.** The engine merges two edits of a text file with ``merge3`` and
  falls back to a conflict copy when they overlap. Here an edit either *adds*
  lines to the base (``append``) or replaces them (``rewrite``): two edits
  merge (to the union of their lines) exactly when both only added lines,
  which is what a non-overlapping three-way merge of such edits gives;
  anything else is an overlapping edit and becomes a conflict copy, as in
  ``Engine._merge``. ``Sim(merges=False)`` treats every merge as overlapping.
- **Server** (:class:`Server`): ``path -> Row(jid, node | None, moved_from)``
  and a JID counter. ``commit`` mirrors ``linesync.server.commit.plan_commit``
  for what a client sends: a stale ``base_jid`` is a conflict ("changed") and
  leaves the server unchanged, a move's source must still be at ``move_base``,
  a live entry's parent must be a live folder, a folder with live children
  cannot be replaced or deleted, and a move writes the new entry (for a folder,
  every live entry below it too) and tombstones the old ones. Case collisions
  are not modelled (the test alphabet is lower case). A batch the real server
  would refuse as a whole (a move whose source has another kind) raises
  :class:`Crash`.
- **Disk** (:class:`Disk`): ``path -> Local`` with POSIX semantics for the
  few calls ``LocalFS`` makes (``mkdir`` needs its parent, ``rmdir`` only
  empties, every change checks the ``Stat`` the index saw, raising
  :class:`Changed` like ``LocalFS``).
- **Client** (:class:`Sim`): the remote and synced views of the index plus the
  disk (the local view is the disk: every round starts with a scan).
  ``sync_once`` runs rounds as ``Engine.sync_once`` does: plan; unless the
  remote view is known current, pull and plan again, except in the first round
  when the plan commits something (the commit's answer then carries the
  server's changes since the cursor, as ``commit`` with ``since`` does, less
  the entries the commit wrote; a batch with a folder move has no ``since``
  and the next round pulls). ``execute`` runs the ops the way
  ``Engine.execute`` does: folder downloads by depth, local moves, local
  deletions deepest first, file downloads, then merges / conflicts / records
  in plan order, then one commit of the remote ops in the engine's order.
  Every op records exactly what the engine records (``set_synced`` /
  ``set_remote``, including the file-less entry a conflict answer carries); an
  op that fails with ``Changed`` or an ``OSError`` records nothing and is
  retried next round, and a place where the engine would crash (an assertion)
  raises :class:`Crash`. Conflict copies are named by
  ``conflict_name(path, device, when=0, n=n)``. Not modelled: list answers
  that leave unchanged content out (the sim always knows an entry's content),
  ignore rules and OS junk files, symlinks, case collisions, and the disk
  changing while a round runs.

The two sides of a scenario are built with :class:`Tree`: a base tree, then a
copy of it changed by a few user operations. A tree records the entries a
device committing its changes one by one would write to the server, so the
remote side reaches the server as real journal entries (moves included).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from linesync.client import planner as pl
from linesync.client.model import Local, Node, PathState, Stat, Version
from linesync.client.naming import conflict_name
from linesync.core import paths
from linesync.protocol.schemas import Kind

MAX_ROUNDS = 8  # as linesync.client.engine.MAX_ROUNDS
DIR = Node(Kind.DIRECTORY)

Lines = frozenset[bytes]
MergeFn = Callable[[Lines, Lines, Lines], Lines | None]


class Changed(Exception):
    """What ``LocalFS`` raises when the disk is not what the index saw."""


class Crash(Exception):
    """Where the real engine or server would fail the whole sync (an assertion,
    or a batch the server refuses)."""


class MassDelete(Exception):
    """The engine's mass-delete guard tripped."""


# -- content ---------------------------------------------------------------------


def content(lines: Iterable[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in sorted(set(lines)))


def lines_of(node: Node | None) -> Lines | None:
    if node is None or node.kind is not Kind.FILE or node.chash is None:
        return None
    return frozenset(x for x in node.chash.split(b"\n") if x)


def file_node(lines: Iterable[bytes], mtime_ns: int, exec: bool = False) -> Node:
    data = content(lines)
    return Node(Kind.FILE, len(data), mtime_ns, exec, chash=data)


def union_merge(base: Lines, ours: Lines, theirs: Lines) -> Lines | None:
    """Two edits that only added lines merge; any other pair overlaps."""
    if base <= ours and base <= theirs:
        return ours | theirs
    return None


def show(node: Node | None) -> str:
    if node is None:
        return "-"
    if node.kind is Kind.DIRECTORY:
        return "dir"
    if node.kind is Kind.FILE:
        body = b",".join(sorted(lines_of(node) or ())).decode()
        return f"file[{body}]{'x' if node.exec else ''}@{node.mtime_ns}"
    return f"{node.kind.value}->{node.target}"


def strip(v: Version | None) -> Version | None:
    """What the index keeps as synced: no ``moved_from``."""
    return Version(v.jid, v.node) if v is not None else None


# -- user trees ------------------------------------------------------------------


class Fresh:
    """Unique tokens, times and inode numbers for one scenario."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n

    def line(self) -> bytes:
        return b"L%d" % self.next()

    def mtime(self) -> int:
        return 1_000_000 + self.next()


@dataclass(frozen=True)
class Item:
    node: Node
    fid: int = 0  # a file's identity through moves (0 for folders)
    ino: int = 0


@dataclass(frozen=True)
class Event:
    """An entry that a device committing its changes writes to the server."""

    path: str
    node: Node | None
    moved_from: str | None = None


class Tree:
    """A user's tree and the user operations that change it."""

    def __init__(self, fresh: Fresh, items: Mapping[str, Item] | None = None) -> None:
        self.fresh = fresh
        self.items: dict[str, Item] = dict(items or {})
        self.events: list[Event] = []
        self.log: list[str] = []

    def copy(self) -> Tree:
        return Tree(self.fresh, self.items)

    def __repr__(self) -> str:
        body = ", ".join(f"{p}: {show(i.node)}" for p, i in sorted(self.items.items()))
        return "{" + body + "}"

    # -- queries

    def files(self) -> list[str]:
        return sorted(p for p, i in self.items.items() if i.node.kind is Kind.FILE)

    def dirs(self) -> list[str]:
        return sorted(p for p, i in self.items.items() if i.node.kind is Kind.DIRECTORY)

    def below(self, path: str) -> list[str]:
        return sorted(p for p in self.items if paths.is_under(p, path))

    def height(self, path: str) -> int:
        """Levels in the subtree at ``path`` (1 for a file or an empty folder)."""
        d = path.count("/")
        return 1 + max((p.count("/") - d for p in self.below(path)), default=0)

    def free_paths(self, names: Iterable[str], max_depth: int) -> list[str]:
        parents = [""] + [d for d in self.dirs() if d.count("/") + 1 < max_depth]
        out = []
        for par in parents:
            for name in names:
                p = f"{par}/{name}" if par else name
                if p not in self.items:
                    out.append(p)
        return out

    def _ok_parent(self, path: str) -> bool:
        par = paths.parent(path)
        return par == "" or (par in self.items and self.items[par].node.kind is Kind.DIRECTORY)

    # -- operations

    def _put(self, path: str, item: Item, moved_from: str | None = None) -> None:
        assert self._ok_parent(path), path
        self.items[path] = item
        self.events.append(Event(path, item.node, moved_from))

    def _tomb(self, path: str) -> None:
        del self.items[path]
        self.events.append(Event(path, None))

    def mkdir(self, path: str) -> None:
        self.log.append(f"mkdir {path}")
        self._put(path, Item(DIR, ino=self.fresh.next()))

    def create(self, path: str, lines: Iterable[bytes] | None = None, exec: bool = False) -> None:
        lines = frozenset(lines) if lines is not None else frozenset({self.fresh.line()})
        node = file_node(lines, self.fresh.mtime(), exec)
        self.log.append(f"create {path} {show(node)}")
        self._put(path, Item(node, fid=self.fresh.next(), ino=self.fresh.next()))

    def set_lines(self, path: str, lines: Iterable[bytes], what: str = "edit") -> None:
        it = self.items[path]
        node = file_node(lines, self.fresh.mtime(), it.node.exec)
        self.log.append(f"{what} {path} {show(node)}")
        self._put(path, replace(it, node=node))

    def append(self, path: str) -> None:
        self.set_lines(path, (lines_of(self.items[path].node) or set()) | {self.fresh.line()})

    def rewrite(self, path: str) -> None:
        self.set_lines(path, {self.fresh.line()}, "rewrite")

    def same_edit(self, path: str) -> None:
        """An edit both sides can make alike: the content depends on the file only."""
        self.set_lines(path, {b"S%d" % self.items[path].fid}, "same-edit")

    def toggle_exec(self, path: str) -> None:
        it = self.items[path]
        self.log.append(f"chmod {path}")
        self._put(path, replace(it, node=replace(it.node, exec=not it.node.exec)))

    def touch(self, path: str) -> None:
        it = self.items[path]
        self.log.append(f"touch {path}")
        self._put(path, replace(it, node=replace(it.node, mtime_ns=self.fresh.mtime())))

    def delete(self, path: str, log: bool = True) -> None:
        if log:
            self.log.append(f"delete {path}")
        for p in reversed(self.below(path)):
            self._tomb(p)
        self._tomb(path)

    def move(self, src: str, dst: str) -> None:
        """A rename, committed as the server does (new entries, then tombstones)."""
        assert dst not in self.items and not paths.is_under(dst, src)
        self.log.append(f"move {src} -> {dst}")
        below = self.below(src)
        self._put(dst, self.items[src], src)
        for p in below:
            self._put(paths.rebase(p, src, dst), self.items[p], p)
        for p in reversed(below):
            self._tomb(p)
        self._tomb(src)

    def file_to_dir(self, path: str) -> None:
        self.log.append(f"file->dir {path}")
        self.delete(path, log=False)
        self._put(path, Item(DIR, ino=self.fresh.next()))

    def dir_to_file(self, path: str) -> None:
        self.log.append(f"dir->file {path}")
        self.delete(path, log=False)
        node = file_node({self.fresh.line()}, self.fresh.mtime())
        self._put(path, Item(node, fid=self.fresh.next(), ino=self.fresh.next()))


# -- the server --------------------------------------------------------------------


# A server row has the shape of the client's Version: JID, node (None for a
# tombstone) and where it moved from.
Row = Version


@dataclass(frozen=True)
class Wire:
    """One op of a commit, as ``Engine._wire_op`` builds it."""

    path: str
    kind: Kind
    base_jid: int
    node: Node | None = None  # what the entry will hold (size, mtime, exec, chash)
    move_from: str | None = None
    move_base: int = 0


@dataclass(frozen=True)
class Result:
    status: str  # "ok" or "conflict"
    jid: int = 0
    reason: str = ""
    current: tuple[str, Row] | None = None


class Server:
    def __init__(self) -> None:
        self.head = 0
        self.rows: dict[str, Row] = {}

    def write(self, path: str, node: Node | None, moved_from: str | None = None) -> int:
        self.head += 1
        self.rows[path] = Row(self.head, node, moved_from)
        return self.head

    def apply(self, events: Iterable[Event]) -> None:
        """Another device's commits."""
        for e in events:
            self.write(e.path, e.node, e.moved_from)

    def live(self) -> dict[str, Node]:
        return {p: r.node for p, r in self.rows.items() if r.node is not None}

    def _live_under(self, path: str) -> list[str]:
        return sorted(p for p, r in self.rows.items() if r.live and paths.is_under(p, path))

    def _conflict(self, reason: str, path: str | None) -> Result:
        row = self.rows.get(path) if path is not None else None
        cur = (path, row) if path is not None and row is not None else None
        return Result("conflict", reason=reason, current=cur)

    def commit(self, ops: Iterable[Wire]) -> list[Result]:
        return [self._one(op) for op in ops]

    def _one(self, op: Wire) -> Result:
        source = self.rows.get(op.move_from) if op.move_from is not None else None
        cur = self.rows.get(op.path)
        cur_jid = cur.jid if cur else 0
        if cur_jid != op.base_jid:
            return self._conflict("changed", op.path)
        if op.move_from is not None and (
            source is None or not source.live or source.jid != op.move_base
        ):
            return self._conflict("source_changed", op.move_from)
        if source is not None and source.node is not None and source.node.kind is not op.kind:
            raise Crash(f"server refuses the batch: {op.move_from} is not a {op.kind.value}")
        if op.kind is Kind.TOMBSTONE and (cur is None or not cur.live):
            return Result("ok", cur_jid)
        if op.kind is not Kind.TOMBSTONE:
            par = paths.parent(op.path)
            if par:
                prow = self.rows.get(par)
                if prow is None or prow.node is None or prow.node.kind is not Kind.DIRECTORY:
                    return self._conflict("parent", par)
        cur_is_dir = cur is not None and cur.node is not None and cur.node.kind is Kind.DIRECTORY
        if cur_is_dir and op.kind is not Kind.DIRECTORY:
            children = self._live_under(op.path)
            if children:
                return self._conflict("not_empty", children[0])
        if op.kind is Kind.TOMBSTONE:
            return Result("ok", self.write(op.path, None))
        if op.kind is Kind.DIRECTORY and source is not None:
            if self._live_under(op.path):
                return self._conflict("not_empty", op.path)
            src = op.move_from
            assert src is not None
            moved = self._live_under(src)
            first = self.write(op.path, DIR, src)
            for child in moved:
                self.write(paths.rebase(child, src, op.path), self.rows[child].node, child)
            for child in reversed(moved):
                self.write(child, None)
            self.write(src, None)
            return Result("ok", first)
        assert op.node is not None
        node = op.node
        if source is not None and source.node is not None:
            if source.node.kind is Kind.FILE and source.node.size != node.size:
                raise Crash(f"server refuses the batch: {op.path}: size mismatch")
            node = replace(node, chash=source.node.chash, target=source.node.target)
        jid = self.write(op.path, node, op.move_from)
        if op.move_from is not None:
            self.write(op.move_from, None)
        return Result("ok", jid)


# -- the disk ------------------------------------------------------------------------


class Disk:
    def __init__(self, fresh: Fresh) -> None:
        self.fresh = fresh
        self.entries: dict[str, Local] = {}

    @classmethod
    def of(cls, tree: Tree) -> Disk:
        disk = cls(tree.fresh)
        for p, it in tree.items.items():
            n = it.node
            stat = Stat(n.size, n.mtime_ns, n.mtime_ns, it.ino)
            disk.entries[p] = Local(Node(Kind.DIRECTORY) if n.kind is Kind.DIRECTORY else n, stat)
        return disk

    def nodes(self) -> dict[str, Node]:
        return {p: loc.node for p, loc in self.entries.items()}

    def lstat(self, path: str) -> Local | None:
        return self.entries.get(path)

    def exists(self, path: str) -> bool:
        return path in self.entries

    def _parent_ok(self, path: str) -> None:
        par = paths.parent(path)
        if not par:
            return
        p = self.entries.get(par)
        if p is None:
            raise FileNotFoundError(par)
        if p.node.kind is not Kind.DIRECTORY:
            raise NotADirectoryError(par)

    def _has_children(self, path: str) -> bool:
        return any(paths.is_under(p, path) for p in self.entries)

    def _expect(self, path: str, expect: Stat | None) -> None:
        cur = self.entries.get(path)
        if cur is None:
            if expect is not None:
                raise Changed(f"{path} vanished")
            return
        if expect is None:
            raise Changed(f"{path} appeared")
        if cur.node.kind is Kind.DIRECTORY:
            raise Changed(f"{path} is now a folder")
        if cur.stat != expect:
            raise Changed(f"{path} changed")

    def read(self, path: str) -> Local:
        cur = self.entries.get(path)
        if cur is None:
            raise FileNotFoundError(path)
        if cur.node.kind is Kind.DIRECTORY:
            raise IsADirectoryError(path)
        return cur

    def mkdir(self, path: str) -> None:
        cur = self.entries.get(path)
        if cur is not None:
            if cur.node.kind is not Kind.DIRECTORY:
                raise Changed(f"{path} exists and is not a folder")
            return
        self._parent_ok(path)
        self.entries[path] = Local(Node(Kind.DIRECTORY), Stat(0, 0, 0, self.fresh.next()))

    def rmdir(self, path: str) -> bool:
        cur = self.entries.get(path)
        if cur is None:
            return True
        if cur.node.kind is not Kind.DIRECTORY or self._has_children(path):
            return False
        del self.entries[path]
        return True

    def remove(self, path: str, expect: Stat) -> None:
        self._expect(path, expect)
        del self.entries[path]

    def rename(self, src: str, dst: str, expect: Stat | None) -> Stat:
        if expect is not None:
            self._expect(src, expect)
        if dst in self.entries:
            raise Changed(f"{dst} appeared")
        if src not in self.entries:
            raise FileNotFoundError(src)
        self._parent_ok(dst)
        for p in [src, *sorted(p for p in self.entries if paths.is_under(p, src))]:
            self.entries[paths.rebase(p, src, dst)] = self.entries.pop(p)
        old = self.entries[dst]
        stat = replace(old.stat, ctime_ns=self.fresh.mtime())
        self.entries[dst] = Local(old.node, stat)
        return stat

    def write_file(self, path: str, node: Node, expect: Stat | None) -> Stat:
        self._parent_ok(path)
        self._expect(path, expect)
        stat = Stat(node.size, node.mtime_ns, self.fresh.mtime(), self.fresh.next())
        self.entries[path] = Local(node, stat)
        return stat

    def touch(self, path: str, mtime_ns: int, exec: bool, expect: Stat | None) -> Stat:
        self._expect(path, expect)
        old = self.entries[path]
        stat = replace(old.stat, mtime_ns=mtime_ns, ctime_ns=self.fresh.mtime())
        self.entries[path] = Local(replace(old.node, mtime_ns=mtime_ns, exec=exec), stat)
        return stat


# -- the client ------------------------------------------------------------------------


@dataclass
class Round:
    plan: pl.Plan
    executed: list[pl.Op]  # in the order handed to execute (maybe shuffled)
    problems: list[str] = field(default_factory=list)
    pulled: bool = False  # the plan was made after a pull
    first: bool = False  # the first round of a sync_once


@dataclass
class Outcome:
    converged: bool
    rounds: list[Round]

    def ops(self) -> Iterator[pl.Op]:
        for r in self.rounds:
            yield from r.plan.ops

    def describe(self) -> str:
        out = []
        sync = i = 0
        for r in self.rounds:
            if r.first:
                sync, i = sync + 1, 0
            i += 1
            out.append(f"sync {sync} round {i}:{'' if r.pulled else ' (planned without a pull)'}")
            out.extend(f"  {describe_op(op)}" for op in r.executed)
            if r.plan.kept_locally:
                out.append(f"  kept locally: {r.plan.kept_locally}")
            out.extend(f"  ! {p}" for p in r.problems)
        return "\n".join(out)


def describe_op(op: pl.Op) -> str:
    name = type(op).__name__
    if isinstance(op, pl.Upload):
        return f"{name} {op.path} {show(op.node)} base={op.base_jid}"
    if isinstance(op, pl.DeleteRemote):
        return f"{name} {op.path} base={op.base_jid}"
    if isinstance(op, pl.MoveRemote):
        return f"{name} {op.src} -> {op.dst} {show(op.node)}"
    if isinstance(op, pl.MoveLocal):
        return f"{name} {op.src} -> {op.dst}"
    if isinstance(op, (pl.Download, pl.Merge)):
        return f"{name} {op.path} {show(op.remote.node)}"
    if isinstance(op, pl.Conflict):
        return f"{name} {op.path} remote={show(op.remote.node if op.remote else None)}"
    if isinstance(op, pl.DeleteLocal):
        return f"{name} {op.path}"
    return f"{name} {op.path} {show(op.remote.node if op.remote else None)}"


RemoteOp = pl.Upload | pl.DeleteRemote | pl.MoveRemote


class Sim:
    """One client (its index's remote and synced views, and its disk) and the server."""

    def __init__(
        self,
        base: Tree,
        *,
        device: str = "dev",
        read_only: bool = False,
        allow_mass_delete: bool = True,
        merges: bool = True,
    ) -> None:
        self.fresh = base.fresh
        self.device = device
        self.read_only = read_only
        self.allow_mass_delete = allow_mass_delete
        self.merge: MergeFn = union_merge if merges else (lambda b, o, t: None)
        self.server = Server()
        for p in sorted(base.items):
            self.server.write(p, base.items[p].node)
        self.cursor = self.server.head
        self.remote: dict[str, Version] = {
            p: Version(r.jid, r.node, r.moved_from) for p, r in self.server.rows.items()
        }
        self.synced: dict[str, Version] = {
            p: Version(v.jid, v.node) for p, v in self.remote.items()
        }
        self.disk = Disk.of(base)
        self.problems: list[str] = []
        self.rounds: list[Round] = []
        self.need_pull = True
        self.must_pull = False  # as the engine's index flag: a folder move not yet listed
        self.refused_moves: set[tuple[str, str]] = set()  # as the engine, per sync

    @classmethod
    def scenario(
        cls,
        base: Tree,
        local: Tree,
        remote_events: Iterable[Event] = (),
        *,
        read_only: bool = False,
        allow_mass_delete: bool = True,
        merges: bool = True,
    ) -> Sim:
        """synced = base = the remote view as of the cursor; then the server gets
        the other device's commits (pulled next round) and the disk is ``local``."""
        sim = cls(base, read_only=read_only, allow_mass_delete=allow_mass_delete, merges=merges)
        sim.server.apply(remote_events)
        sim.disk = Disk.of(local)
        return sim

    # -- the three views

    def states(self) -> dict[str, PathState]:
        out = {}
        for p in set(self.remote) | set(self.synced) | set(self.disk.entries):
            out[p] = PathState(p, self.remote.get(p), self.synced.get(p), self.disk.lstat(p))
        return out

    def _set_synced(self, path: str, v: Version | None) -> None:
        if v is None:
            self.synced.pop(path, None)
        else:
            self.synced[path] = Version(v.jid, v.node)

    def _set_remote(self, path: str, v: Version) -> None:
        self.remote[path] = v

    def pull(self, skip: range = range(0)) -> None:
        """The current entry of every path changed after the cursor (but those
        in ``skip``: a commit's own entries), into the remote view."""
        for p, r in sorted(self.server.rows.items(), key=lambda x: x[1].jid):
            if r.jid > self.cursor and r.jid not in skip:
                self.remote[p] = Version(r.jid, r.node, r.moved_from)
        self.cursor = self.server.head

    # -- the loop: Engine.sync_once

    def _pushes(self, plan: pl.Plan) -> bool:
        return any(isinstance(op, (pl.Upload, pl.DeleteRemote, pl.MoveRemote)) for op in plan.ops)

    def sync_round(
        self,
        first: bool,
        rng: random.Random | None = None,
        before_execute: Callable[[], None] | None = None,
    ) -> Round:
        """One round: scan (the disk is the local view), plan; pull and plan again
        unless the remote view is current or (first round) the plan pushes, in
        which case the commit brings the server's news; execute."""
        plan = pl.plan(self.states(), read_only=self.read_only, avoid=frozenset(self.refused_moves))
        pulled = False
        if self.need_pull and (self.must_pull or not (first and self._pushes(plan))):
            self.pull()
            self.need_pull = self.must_pull = False
            pulled = True
            plan = pl.plan(
                self.states(), read_only=self.read_only, avoid=frozenset(self.refused_moves)
            )
        ops = list(plan.ops)
        if rng is not None:
            rng.shuffle(ops)
        rnd = Round(plan, ops, pulled=pulled, first=first)
        if not plan.ops:
            return rnd
        if plan.mass_delete() and not self.allow_mass_delete:
            raise MassDelete(f"{plan.remote_deletes} of {plan.synced_files}")
        if before_execute is not None:
            before_execute()
        self.problems = rnd.problems
        self.execute(ops)
        return rnd

    def sync_once(
        self,
        rng: random.Random | None = None,
        before_execute: Callable[[], None] | None = None,
        max_rounds: int = MAX_ROUNDS,
        after_round: Callable[[Sim], None] | None = None,
    ) -> bool:
        """Rounds until the plan is empty (True) or ``max_rounds`` (False)."""
        self.need_pull = True
        self.refused_moves = set()
        for i in range(max_rounds):
            r = self.sync_round(i == 0, rng, before_execute if i == 0 else None)
            self.rounds.append(r)
            if after_round is not None:
                after_round(self)
            if not r.plan.ops:
                return True
        return False

    def run(
        self,
        rng: random.Random | None = None,
        late: Iterable[Event] | None = None,
        max_rounds: int = MAX_ROUNDS,
        after_round: Callable[[Sim], None] | None = None,
        max_syncs: int = 3,
    ) -> Outcome:
        """``sync_once`` until one finds nothing to do. ``late``: other commits
        that reach the server during the first round (after its plan)."""
        self.rounds = []
        pending = list(late or ())

        def land() -> None:
            self.server.apply(pending)
            pending.clear()

        for _ in range(max_syncs):
            before = len(self.rounds)
            if not self.sync_once(rng, land if pending else None, max_rounds, after_round):
                return Outcome(False, self.rounds)
            if pending:
                land()  # nothing was executed: they land before the next sync
            elif len(self.rounds) - before == 1 and self.rounds[-1].pulled:
                return Outcome(True, self.rounds)  # a sync that found nothing to do
        return Outcome(False, self.rounds)

    def describe(self) -> str:
        return Outcome(False, self.rounds).describe()

    # -- execute: Engine.execute

    def execute(self, ops: list[pl.Op]) -> None:
        folders = [o for o in ops if isinstance(o, pl.Download) and _is_folder(o.remote.node)]
        for fo in sorted(folders, key=lambda o: o.path.count("/")):
            self._guard(fo.path, self._make_folder, fo)
        for op in ops:
            if isinstance(op, pl.MoveLocal):
                self._guard(op.dst, self._move_local, op)
        deletes = [o for o in ops if isinstance(o, pl.DeleteLocal)]
        for do in sorted(deletes, key=lambda o: o.path.count("/"), reverse=True):
            self._guard(do.path, self._delete_local, do)
        for op in ops:  # (the engine runs these a few at a time)
            if isinstance(op, pl.Download) and not _is_folder(op.remote.node):
                self._guard(op.path, self._download, op)
        for op in ops:
            if isinstance(op, pl.Merge):
                self._guard(op.path, self._merge_op, op)
            elif isinstance(op, pl.Conflict):
                self._guard(op.path, self._conflict, op)
            elif isinstance(op, pl.Record):
                self._set_synced(op.path, op.remote)
        commits = [o for o in ops if isinstance(o, (pl.Upload, pl.DeleteRemote, pl.MoveRemote))]
        if commits:
            self._commit(commits)

    def apply(self, op: pl.Op) -> None:
        """One op on its own, as ``execute`` would run it."""
        self.execute([op])

    def _guard(self, path: str, fn: Callable[..., None], *args: object) -> None:
        """A failed op records nothing (the engine's index transaction rolls back)."""
        remote, synced = dict(self.remote), dict(self.synced)
        try:
            fn(*args)
        except (Changed, OSError) as exc:
            self.remote, self.synced = remote, synced
            self.problems.append(f"{path}: {type(exc).__name__}: {exc}; retried next round")

    def _make_folder(self, op: pl.Download) -> None:
        if op.local is not None and op.local.node.kind is not Kind.DIRECTORY:
            self.disk.remove(op.path, op.local.stat)
        self.disk.mkdir(op.path)
        self._set_synced(op.path, op.remote)

    def _move_local(self, op: pl.MoveLocal) -> None:
        self._ensure_parent(op.dst)
        stat = self.disk.rename(op.src, op.dst, op.local.stat)
        node = op.remote.node
        assert node is not None
        if node.kind is Kind.FILE and (node.mtime_ns, node.exec) != (
            op.local.node.mtime_ns,
            op.local.node.exec,
        ):  # as the engine: the move came with a touch or a chmod
            self.disk.touch(op.dst, node.mtime_ns, node.exec, stat)
        self._set_synced(op.dst, op.remote)
        self._set_synced(op.src, op.src_remote)

    def _delete_local(self, op: pl.DeleteLocal) -> None:
        if op.local.node.kind is Kind.DIRECTORY:
            if not self.disk.rmdir(op.path):
                # (The engine first removes OS junk; there is none here.) The
                # folder stays, recorded as synced with the tombstone.
                self._set_synced(op.path, op.remote)
                return
        else:
            self.disk.remove(op.path, op.local.stat)
        self._set_synced(op.path, op.remote)

    def _ensure_parent(self, path: str) -> None:
        for anc in paths.ancestors(path):
            found = self.disk.lstat(anc)
            if found is None:
                self.disk.mkdir(anc)
            elif found.node.kind is not Kind.DIRECTORY:
                raise Changed(f"{anc} is not a folder")

    def _download(self, op: pl.Download) -> None:
        node = op.remote.node
        if node is None:
            raise Crash(f"Download {op.path}: assert node is not None")
        old = op.local
        if old is not None and old.node.kind is Kind.DIRECTORY:
            if not self.disk.rmdir(op.path):
                raise Changed("folder is not empty")
            old = None
        self._ensure_parent(op.path)
        expect = old.stat if old is not None else None
        if node.kind is Kind.SYMLINK:
            self.disk.write_file(op.path, node, expect)
        elif old is not None and old.node.kind is Kind.FILE and old.node.chash == node.chash:
            self.disk.touch(op.path, node.mtime_ns, node.exec, expect)
        else:
            if node.chash is None:
                raise Crash(
                    f"Download {op.path} of a {node.kind.value}: "
                    "Engine._file_bytes asserts node.chash is not None"
                )
            self.disk.write_file(op.path, node, expect)
        self._set_synced(op.path, op.remote)

    def _merge_op(self, op: pl.Merge) -> None:
        local = self.disk.read(op.path)
        if local.stat != op.local.stat:
            raise Changed("changed while merging")
        theirs = lines_of(op.remote.node)
        base = lines_of(op.synced.node) if op.synced is not None else None
        ours = lines_of(local.node)
        merged = None
        if theirs is not None and base is not None and ours is not None:
            merged = self.merge(base, ours, theirs)
        if merged is None:
            self._conflict(pl.Conflict(op.path, op.remote, op.local))
            return
        node = file_node(merged, self.fresh.mtime(), op.local.node.exec)
        self.disk.write_file(op.path, node, local.stat)
        self._set_synced(op.path, op.remote)  # the merge goes up next round

    def _free_name(self, path: str, what: str = "conflict") -> str:
        for n in range(1, 100):
            name = conflict_name(path, self.device, what, when=0, n=n)
            if not self.disk.exists(name):
                return name
        raise Changed("no free name for a conflict copy")

    def _conflict(self, op: pl.Conflict) -> None:
        copy = self._free_name(op.path)
        folder = op.local.node.kind is Kind.DIRECTORY  # a folder moves whole
        self.disk.rename(op.path, copy, None if folder else op.local.stat)
        if op.remote is not None and op.remote.node is not None:
            download = pl.Download(op.path, op.remote, None)
            if _is_folder(op.remote.node):
                self._make_folder(download)
            else:
                self._download(download)

    # -- commit: Engine._commit

    def _commit(self, ops: list[RemoteOp]) -> None:
        def order(op: RemoteOp) -> tuple[int, int, str]:
            if isinstance(op, pl.DeleteRemote):
                return (2, -op.path.count("/"), op.path)
            path = op.dst if isinstance(op, pl.MoveRemote) else op.path
            r = self.remote.get(path)
            if op.node.kind is not Kind.DIRECTORY and r is not None and _is_folder(r.node):
                return (3, path.count("/"), path)  # as the engine: after the children go
            return (0 if op.node.kind is Kind.DIRECTORY else 1, path.count("/"), path)

        wire: list[Wire] = []
        kept: list[RemoteOp] = []
        for op in sorted(ops, key=order):
            try:
                wire.append(self._wire_op(op))
            except (Changed, OSError) as exc:
                self.problems.append(f"{getattr(op, 'path', '')}: {exc}; retried next round")
                continue
            kept.append(op)
        if not wire:
            return
        # A folder move writes entries the client cannot predict: no "since".
        folder_move = any(
            isinstance(o, pl.MoveRemote) and o.node.kind is Kind.DIRECTORY for o in kept
        )
        since = None if folder_move else self.cursor
        head_before = self.server.head
        results = self.server.commit(wire)
        own = range(head_before + 1, self.server.head + 1)
        if since is None:
            self._follow(results, kept, head_before)
        for op, r in zip(kept, results, strict=True):
            self._committed(op, r)
        if since is not None:  # the answer carries the server's changes since the cursor
            self.pull(skip=own)

    def _follow(self, results: list[Result], ops: list[RemoteOp], head_before: int) -> None:
        """Engine._follow: skip the next list when the commit's own entries are
        all the server has beyond the cursor."""
        written = 0
        for r, op in zip(results, ops, strict=True):
            if r.status == "conflict" or (
                isinstance(op, pl.MoveRemote) and op.node.kind is Kind.DIRECTORY
            ):
                written = -(10**9)
            elif r.status == "ok" and r.jid and r.jid > head_before:
                written += 2 if isinstance(op, pl.MoveRemote) else 1
        if head_before == self.cursor and self.server.head == self.cursor + written:
            self.cursor = self.server.head
        else:
            self.need_pull = True

    def _wire_op(self, op: RemoteOp) -> Wire:
        if isinstance(op, pl.DeleteRemote):
            return Wire(op.path, Kind.TOMBSTONE, op.base_jid)
        n = op.node
        if isinstance(op, pl.MoveRemote):
            node = n if n.kind is Kind.FILE else Node(n.kind, exec=n.exec, target=n.target)
            return Wire(op.dst, n.kind, op.dst_base, node, op.src, op.src_jid)
        if n.kind is not Kind.FILE:
            return Wire(op.path, n.kind, op.base_jid, Node(n.kind, target=n.target))
        local = self.disk.read(op.path)
        if local.node.chash != n.chash:
            raise Changed("changed since it was scanned")
        node = Node(Kind.FILE, local.node.size, n.mtime_ns, n.exec, chash=local.node.chash)
        return Wire(op.path, Kind.FILE, op.base_jid, node)

    def _committed(self, op: RemoteOp, r: Result) -> None:
        if r.status == "conflict":
            if isinstance(op, pl.MoveRemote):
                self.refused_moves.add((op.src, op.dst))
            path = op.dst if isinstance(op, pl.MoveRemote) else op.path
            self.problems.append(f"{path}: conflict ({r.reason})")
            if r.current is not None and r.current[0] == path:
                row = r.current[1]
                node = row.node
                if node is not None and node.kind is Kind.FILE:
                    node = replace(node, chash=None)  # a conflict answer carries no content
                self._set_remote(path, Version(row.jid, node, row.moved_from))
            return
        if isinstance(op, pl.DeleteRemote):
            v = Version(r.jid, None)
            self._set_remote(op.path, v)
            self._set_synced(op.path, v)
            return
        if isinstance(op, pl.MoveRemote):
            v = Version(r.jid, op.node, op.src)
            self._set_remote(op.dst, v)
            self._set_synced(op.dst, v)
            if op.node.kind is not Kind.DIRECTORY:
                gone = Version(r.jid + 1, None)  # the source's tombstone comes next
                self._set_remote(op.src, gone)
                self._set_synced(op.src, gone)
                return
            self.must_pull = True
            for p, s in self.states().items():
                if p == op.src or paths.is_under(p, op.src):
                    if p != op.src and s.synced is not None and s.synced.node is not None:
                        # as the engine: the synced base travels with the child
                        self._set_synced(
                            paths.rebase(p, op.src, op.dst), Version(-1, s.synced.node)
                        )
                    self._set_synced(p, None)
                    self._set_remote(p, Version(s.remote.jid if s.remote else 0, None))
            return
        v = Version(r.jid, op.node)
        self._set_remote(op.path, v)
        self._set_synced(op.path, v)


def _is_folder(node: Node | None) -> bool:
    return node is not None and node.kind is Kind.DIRECTORY


# -- checks ------------------------------------------------------------------------


def tree_errors(nodes: Mapping[str, Node], side: str) -> list[str]:
    """Live paths whose parent is not a live folder."""
    out = []
    for p in sorted(nodes):
        par = paths.parent(p)
        if par and (par not in nodes or nodes[par].kind is not Kind.DIRECTORY):
            out.append(f"{side}: {p} lives under {par!r}, which is {show(nodes.get(par))}")
    return out


def view(nodes: Mapping[str, Node]) -> dict[str, tuple[Kind, bytes | None, bool, int]]:
    """What must agree between two trees: kind, content, exec bit, file mtime."""
    return {
        p: (n.kind, n.chash, n.exec, n.mtime_ns if n.kind is Kind.FILE else 0)
        for p, n in nodes.items()
    }


def tree_nodes(tree: Tree) -> dict[str, Node]:
    return {p: it.node for p, it in tree.items.items()}


def protected_versions(base: Tree, local: Tree, remote: Tree) -> list[tuple[str, str, Lines]]:
    """(side, path, lines) of every file version that must survive a sync.

    A version a side created or edited must survive (an edit beats a concurrent
    delete); a version neither side edited must survive unless a side deleted
    it. Only a base version that one side deleted, or that the other side
    rewrote, may vanish."""
    base_lines = {it.fid: lines_of(it.node) for it in base.items.values() if it.fid}

    def files(t: Tree) -> dict[int, tuple[str, Lines]]:
        return {
            it.fid: (p, lines_of(it.node) or frozenset())
            for p, it in t.items.items()
            if it.node.kind is Kind.FILE
        }

    sides = {"local": files(local), "remote": files(remote)}
    out = []
    for side, other in (("local", "remote"), ("remote", "local")):
        for fid, (path, lines) in sides[side].items():
            created_or_edited = fid not in base_lines or lines != base_lines[fid]
            kept_there = fid in sides[other] and sides[other][fid][1] == lines
            if created_or_edited or kept_there:
                out.append((side, path, lines))
    return out


def lost_versions(
    versions: Iterable[tuple[str, str, Lines]], final: Mapping[str, Node]
) -> list[str]:
    held = [lines_of(n) for n in final.values() if n.kind is Kind.FILE]
    return [
        f"{side} version of {path} {sorted(lines)}"
        for side, path, lines in versions
        if not any(h is not None and lines <= h for h in held)
    ]
