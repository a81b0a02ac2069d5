"""The planner: a pure function from the three views of every path to the
operations that bring disk and server into agreement.

For each path it compares the local and the remote side with the synced
base. A side that still equals the base did not change; the other side's
change is applied to it. When both changed, equal results are just recorded,
an edit beats a delete, two edits of a text file are merged, and anything else
keeps the remote version at the path and the local one as a conflict copy.

Then the tree is made whole: a folder that keeps a child is not deleted, and
moves are recognised on both sides so that no content travels again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from linesync.client.model import Local, Node, PathState, Version
from linesync.core import paths
from linesync.protocol.schemas import Kind

# -- operations ---------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """Commit the local node at ``path`` (based on ``base_jid``)."""

    path: str
    node: Node
    base_jid: int


@dataclass(frozen=True)
class DeleteRemote:
    path: str
    base_jid: int


@dataclass(frozen=True)
class MoveRemote:
    """A local move: commit ``dst`` as a move of ``src`` (no content travels)."""

    src: str
    dst: str
    node: Node
    src_jid: int
    dst_base: int


@dataclass(frozen=True)
class Download:
    """Make the local ``path`` the remote version (replacing ``local``)."""

    path: str
    remote: Version
    local: Local | None


@dataclass(frozen=True)
class DeleteLocal:
    path: str
    local: Local
    remote: Version | None  # recorded as synced once done


@dataclass(frozen=True)
class Exclude(DeleteLocal):
    """A path this device leaves out (selective sync), unchanged since it was
    last synced: removed here only, and recorded as never synced (``remote``
    None), so that nothing is deleted on the server because it is gone here,
    and including its folder again downloads it."""


@dataclass(frozen=True)
class MoveLocal:
    """A remote move: rename the local ``src`` (unchanged) to ``dst``."""

    src: str
    dst: str
    remote: Version
    local: Local
    src_remote: Version | None


@dataclass(frozen=True)
class Merge:
    """Both sides edited a file: merge them against the synced base."""

    path: str
    remote: Version
    synced: Version | None
    local: Local


@dataclass(frozen=True)
class Conflict:
    """Keep the remote version at ``path``, the local one as a conflict copy."""

    path: str
    remote: Version | None
    local: Local


@dataclass(frozen=True)
class Record:
    """Both sides already agree: record it as synced."""

    path: str
    remote: Version | None


Op = (
    Upload
    | DeleteRemote
    | MoveRemote
    | Download
    | DeleteLocal
    | Exclude
    | MoveLocal
    | Merge
    | Conflict
    | Record
)


@dataclass
class Plan:
    ops: list[Op] = field(default_factory=list)
    kept_locally: list[str] = field(default_factory=list)  # read-only: not uploaded
    remote_deletes: int = 0  # files the plan deletes on the server
    synced_files: int = 0

    def mass_delete(self, ratio: float = 0.5, floor: int = 10) -> bool:
        """Would this plan delete most of the synced tree on the server?"""
        return self.remote_deletes >= floor and self.remote_deletes > ratio * self.synced_files


# -- the decision for one path ---------------------------------------------------


def _local_changed(s: PathState) -> bool:
    ln, sn = s.local_node, s.synced_node
    if ln is None or sn is None:
        return (ln is None) != (sn is None)
    return not ln.same(sn)


def _remote_changed(s: PathState) -> bool:
    r_jid = s.remote.jid if s.remote else 0
    s_jid = s.synced.jid if s.synced else 0
    return r_jid != s_jid and not (s.remote_node is None and s.synced_node is None)


def _mergeable(s: PathState) -> bool:
    ln, rn = s.local_node, s.remote_node
    return (
        ln is not None
        and rn is not None
        and ln.kind is Kind.FILE
        and rn.kind is Kind.FILE
        and s.synced_node is not None
        and s.synced_node.kind is Kind.FILE
    )


def decide(s: PathState) -> Op | None:
    """The operation for one path, before the tree and moves are considered."""
    lchanged, rchanged = _local_changed(s), _remote_changed(s)
    r_jid = s.remote.jid if s.remote else 0
    ln, rn = s.local_node, s.remote_node
    if not lchanged and not rchanged:
        return None
    if not lchanged:  # only the remote side moved on
        if rn is not None and rn.same(s.synced_node):
            return Record(s.path, s.remote)  # a new entry for the same bytes and time
        if rn is None:
            if s.local is None:
                return Record(s.path, s.remote)
            return DeleteLocal(s.path, s.local, s.remote)
        assert s.remote is not None
        return Download(s.path, s.remote, s.local)
    if not rchanged:  # only the local side moved on
        if ln is None:
            return DeleteRemote(s.path, r_jid) if rn is not None else Record(s.path, s.remote)
        return Upload(s.path, ln, r_jid)
    if rn is not None and rn.same(s.synced_node):
        # The remote "change" kept every byte and the time (a folder move carried
        # the file, or our own commit came back): only the local side changed.
        return Upload(s.path, ln, r_jid) if ln is not None else DeleteRemote(s.path, r_jid)
    # Both sides changed.
    if ln is None and rn is None:
        return Record(s.path, s.remote)
    if ln is not None and ln.same_content(rn):
        if ln.kind is Kind.FILE and rn is not None and ln.mtime_ns != rn.mtime_ns:
            assert s.remote is not None
            return Download(s.path, s.remote, s.local)  # adopt the remote time only
        return Record(s.path, s.remote)
    if ln is None:  # deleted here, edited there: the edit wins
        assert s.remote is not None
        return Download(s.path, s.remote, None)
    if rn is None:  # deleted there, edited here: the edit wins
        return Upload(s.path, ln, r_jid)
    assert s.local is not None and s.remote is not None
    if _mergeable(s):
        return Merge(s.path, s.remote, s.synced, s.local)
    if ln.kind is Kind.DIRECTORY and rn.kind is Kind.DIRECTORY:
        return Record(s.path, s.remote)
    return Conflict(s.path, s.remote, s.local)


# -- the whole plan -----------------------------------------------------------------


def _present_after(op: Op | None, s: PathState) -> bool:
    """Will the path exist (locally and remotely) once ``op`` is done?"""
    if op is None:
        return s.local_node is not None or s.remote_node is not None
    if isinstance(op, (DeleteRemote, DeleteLocal)):
        return False
    if isinstance(op, Record):
        return op.remote is not None and op.remote.node is not None
    return True


def _kind_of(op: Op | None, s: PathState) -> Kind | None:
    node = s.local_node or s.remote_node
    if isinstance(op, (Download, Merge)):
        node = op.remote.node
    elif isinstance(op, Upload):
        node = op.node
    return node.kind if node else None


def plan(
    states: Mapping[str, PathState],
    *,
    read_only: bool = False,
    avoid: frozenset[tuple[str, str]] = frozenset(),
    excluded: frozenset[str] = frozenset(),
) -> Plan:
    """``avoid``: (source, destination) moves the server refused this sync; they
    go up as plain changes instead, so a refused move is never retried forever.
    ``excluded``: folders this device leaves out (selective sync): nothing at
    or below them is downloaded, uploaded or deleted on the server; what is here
    unchanged since it was synced is removed here (:class:`Exclude`), anything
    else here is kept (and not uploaded)."""
    ops: dict[str, Op | None] = {p: decide(s) for p, s in states.items()}
    left_out = {p for p in states if excluded and is_excluded(p, excluded)}
    _keep_needed_folders(states, ops, left_out)
    for p in left_out:
        ops[p] = _left_out(states[p])
    _match_remote_moves(states, ops)
    _match_local_moves(states, ops, avoid, excluded)
    out = Plan(synced_files=sum(1 for s in states.values() if _is_file(s.synced_node)))
    for path in sorted(ops):
        op = ops[path]
        if op is None:
            continue
        if read_only and isinstance(op, (Upload, DeleteRemote, MoveRemote)):
            out.kept_locally.append(path)
            continue
        if isinstance(op, DeleteRemote) and _is_file(states[path].synced_node):
            out.remote_deletes += 1
        out.ops.append(op)
    return out


def is_excluded(path: str, excluded: frozenset[str]) -> bool:
    """Is ``path`` one of the ``excluded`` folders or below one?"""
    return path in excluded or any(a in excluded for a in paths.ancestors(path))


def _left_out(s: PathState) -> Op | None:
    """The op for a path this device leaves out: never one that reaches the
    server or brings the server's version here. What is here as it was last
    synced goes (its bytes are on the server); what is gone here is forgotten
    as synced (so it is never deleted on the server, and comes back when the
    folder is included again); anything made or changed here stays."""
    if s.local is None:
        return Record(s.path, None) if s.synced is not None else None
    sn = s.synced_node
    if sn is not None and s.local.node.same(sn):
        return Exclude(s.path, s.local, None)
    return None


def _is_folder(node: Node | None) -> bool:
    return node is not None and node.kind is Kind.DIRECTORY


def _is_file(node: Node | None) -> bool:
    return node is not None and node.kind is not Kind.DIRECTORY


def _keep_needed_folders(
    states: Mapping[str, PathState], ops: dict[str, Op | None], left_out: Collection[str] = ()
) -> None:
    """A folder that will still hold something is not deleted on either side;
    a path whose parent will be a file or absent must get that parent. (A path
    left out stays on the server whatever happens here.)"""
    by_depth = sorted(states, key=lambda p: -p.count("/"))
    alive: dict[str, bool] = {}
    for path in by_depth:  # deepest first, so children are known before parents
        s = states[path]
        op = ops[path]
        present = _present_after(op, s) or (path in left_out and s.remote_node is not None)
        if present:
            for anc in paths.ancestors(path):
                alive[anc] = True
        if not alive.get(path):
            continue
        # Something below stays: this path must stay a folder.
        r_jid = s.remote.jid if s.remote else 0
        if isinstance(op, DeleteLocal) and op.local.node.kind is Kind.DIRECTORY:
            ops[path] = Upload(path, op.local.node, r_jid)  # deleted there, needed here
        elif isinstance(op, DeleteRemote) and s.remote is not None and s.remote.node is not None:
            ops[path] = Download(path, s.remote, None)  # deleted here, needed there
        elif (
            isinstance(op, Record)
            and (op.remote is None or op.remote.node is None)
            and s.local is not None
            and s.local.node.kind is Kind.DIRECTORY
        ):
            ops[path] = Upload(path, s.local.node, r_jid)
        elif _makes_non_folder(op) and s.local is not None:
            # One side turned the folder into a file while the other changed
            # something inside: keep the local side as a conflict copy (a folder
            # moves whole, children and all) and the remote side at the path.
            ops[path] = Conflict(path, s.remote, s.local)


def _makes_non_folder(op: Op | None) -> bool:
    if isinstance(op, Upload):
        return op.node.kind is not Kind.DIRECTORY
    if isinstance(op, (Download, Merge)):
        return op.remote.node is not None and op.remote.node.kind is not Kind.DIRECTORY
    return isinstance(op, Conflict) and (
        op.remote is not None and op.remote.node is not None
        and op.remote.node.kind is not Kind.DIRECTORY
    )  # fmt: skip


def _same_bytes(a: Node, b: Node) -> bool:
    """Same kind and bytes (a file's time and exec bit may differ)."""
    if a.kind is not b.kind:
        return False
    return a.chash == b.chash if a.kind is Kind.FILE else a.target == b.target


def _match_remote_moves(states: Mapping[str, PathState], ops: dict[str, Op | None]) -> None:
    """A remote move whose source we hold unchanged becomes a local rename: the
    source it names, or else (a file moved twice since we looked) any path we are
    about to delete that holds the same bytes."""
    deleting: dict[tuple[Kind, bytes | None, str | None], list[str]] = defaultdict(list)
    for path in sorted(ops):
        op = ops[path]
        if isinstance(op, DeleteLocal) and op.local.node.kind is not Kind.DIRECTORY:
            n = op.local.node
            deleting[(n.kind, n.chash, n.target)].append(path)
    for path, op in sorted(ops.items()):
        if not isinstance(op, Download) or op.local is not None:
            continue
        node = op.remote.node
        if node is None or node.kind is Kind.DIRECTORY:
            continue
        candidates = deleting.get((node.kind, node.chash, node.target), [])
        src = op.remote.moved_from if op.remote.moved_from in candidates else None
        if src is None and candidates:
            src = candidates[0]
        if src is None:
            continue
        s = states[src]
        src_op = ops.get(src)
        if s.local is None or not isinstance(src_op, DeleteLocal):
            continue
        if not _same_bytes(node, s.local.node):
            continue
        candidates.remove(src)
        ops[path] = MoveLocal(src, path, op.remote, s.local, s.remote)
        ops[src] = None


Key = tuple[Kind, bytes | None, str | None]


def _key(n: Node) -> Key:
    return (n.kind, n.chash, n.target)


def _match_local_moves(
    states: Mapping[str, PathState],
    ops: dict[str, Op | None],
    avoid: frozenset[tuple[str, str]] = frozenset(),
    excluded: frozenset[str] = frozenset(),
) -> None:
    """A path whose bytes vanished here and reappeared elsewhere in the same scan
    is a move: committed as one, so no content is uploaded again. A chain of
    moves that needs one step first (a folder moved, then a file out of it, or
    into a name another file left) takes a round per step: what waits is put off,
    never uploaded."""
    fresh_keys = {
        _key(op.node)
        for p, op in ops.items()
        if isinstance(op, Upload) and op.node.kind is not Kind.DIRECTORY
        and states[p].synced_node is None
    }  # fmt: skip
    gone: dict[Key, list[str]] = defaultdict(list)
    for path in sorted(ops):
        op = ops[path]
        s = states[path]
        n = s.synced_node
        if n is None or n.kind is Kind.DIRECTORY:
            continue
        if s.remote_node is None or not s.remote_node.same(n):
            continue  # the server moved on there: a move from it would conflict
        # Gone from here: deleted, replaced by another kind, or replaced by other
        # bytes while its own bytes turn up as a new file elsewhere. (The
        # replacement then waits a round, until the move took the file away.)
        if (
            isinstance(op, DeleteRemote)
            or (isinstance(op, Upload) and op.node.kind is not n.kind)
            or (isinstance(op, Upload) and _key(n) in fresh_keys and not _same_bytes(n, op.node))
        ):
            gone[_key(n)].append(path)
    wanted: set[Key] = set()  # bytes of uploads put off: not to be deleted meanwhile

    def put_off(p: str) -> None:
        op_p = ops[p]
        if isinstance(op_p, Upload) and op_p.node.kind is not Kind.DIRECTORY:
            wanted.add(_key(op_p.node))
        ops[p] = None

    _match_folder_moves(states, ops, gone, put_off, avoid, excluded)
    for path in sorted(ops):
        op = ops[path]
        if not isinstance(op, Upload) or op.node.kind is Kind.DIRECTORY:
            continue
        here = states[path].synced_node
        if here is not None and here.kind is op.node.kind:
            continue  # an edit in place, not something moved here
        n = op.node
        # (A file cannot move under its own old path, nor onto a folder holding it,
        # in one commit: that one goes up.)
        candidates = [
            c
            for c in gone.get(_key(n), [])
            if not paths.is_under(path, c)
            and not paths.is_under(c, path)
            and (c, path) not in avoid
        ]
        if not candidates:
            continue
        src = candidates[0]
        gone[_key(n)].remove(src)
        ops[path] = MoveRemote(src, path, n, _move_base(states[src]), op.base_jid)
        put_off(src)
    for path, op in list(ops.items()):  # keep what a put-off upload will move
        n = states[path].synced_node
        if isinstance(op, DeleteRemote) and n is not None and _key(n) in wanted:
            ops[path] = None


def _match_folder_moves(
    states: Mapping[str, PathState],
    ops: dict[str, Op | None],
    gone: dict[Key, list[str]],
    put_off: Callable[[str], None],
    avoid: frozenset[tuple[str, str]],
    excluded: frozenset[str] = frozenset(),
) -> None:
    """A new folder here that is a synced folder moved: one move commit carries
    everything below it (only worth looking when a synced folder vanished). A
    folder holding one left out, or moved to where one is, is not moved whole:
    the server would move what this device leaves out, or put things there."""
    if not any(
        isinstance(op, DeleteRemote) and _is_folder(states[p].synced_node) for p, op in ops.items()
    ):
        return
    # Every (new folder, vanished folder) pair with its score; the best pairs win,
    # a folder that kept its name first (moved into another folder, say).
    pairs = []
    for dst, op in ops.items():
        s = states[dst]
        if not isinstance(op, Upload) or op.node.kind is not Kind.DIRECTORY:
            continue
        if s.synced_node is not None or s.remote_node is not None:
            continue
        for score, src in _folder_scores(states, ops, dst):
            same_name = src.rsplit("/", 1)[-1] == dst.rsplit("/", 1)[-1]
            pairs.append((-score, not same_name, dst.count("/"), dst, src))
    for *_, path, src in sorted(pairs):
        op = ops[path]
        if not isinstance(op, Upload) or not isinstance(ops[src], DeleteRemote):
            continue  # one of them was taken by a better pair
        if (src, path) in avoid or paths.is_under(path, src) or states[src].synced is None:
            continue
        if any(e in (src, path) or paths.is_under(e, src) or paths.is_under(e, path)
               for e in excluded):  # fmt: skip
            continue
        if not _fits(states, src, path):
            continue  # the server would refuse the move whole: plain uploads and deletes
        ops[path] = MoveRemote(src, path, op.node, _move_base(states[src]), op.base_jid)
        ops[src] = None
        # What the move brings along: each synced thing below the source lands at
        # its rebased path (where, here, something of the same kind now is).
        carried = set()
        for p, st in states.items():
            if not paths.is_under(p, src) or st.synced_node is None:
                continue
            there = states.get(paths.rebase(p, src, path))
            if (
                there is None
                or there.local_node is None
                or (there.local_node.kind is st.synced_node.kind)
            ):
                carried.add(paths.rebase(p, src, path))
        # Files the move carries to places where they no longer are: moved on
        # elsewhere here. Uploads of those bytes wait a round to become moves.
        left_behind: set[Key] = set()
        for p, st in states.items():
            sn = st.synced_node
            if not paths.is_under(p, src) or sn is None or sn.kind is Kind.DIRECTORY:
                continue
            there = states.get(paths.rebase(p, src, path))
            if there is None or there.local_node is None or not _same_bytes(sn, there.local_node):
                left_behind.add(_key(sn))
        for p in list(ops):
            op_p = ops[p]
            if paths.is_under(p, src):
                ops[p] = None
                _drop_from(gone, p)
            elif p in carried:
                put_off(p)  # the move brings them; edits go up on the next round
            elif isinstance(op_p, Upload) and _key(op_p.node) in left_behind:
                put_off(p)  # moved out of the moved folder: a move, next round


def _move_base(s: PathState) -> int:
    """The JID a move of this path is based on: the server's version when it is
    the synced one under another number (a move carried it), else the synced."""
    if s.remote is not None and s.remote.node is not None and s.remote.node.same(s.synced_node):
        return s.remote.jid
    return s.synced.jid if s.synced else 0


def _drop_from(gone: dict[tuple[Kind, bytes | None, str | None], list[str]], path: str) -> None:
    for lst in gone.values():
        if path in lst:
            lst.remove(path)


def _fits(states: Mapping[str, PathState], src: str, dst: str) -> bool:
    """Does everything below ``src`` have a valid path below ``dst``? (A longer
    name can take a deep path past the limit.)"""
    try:
        for p in states:
            if paths.is_under(p, src):
                paths.normalize(paths.rebase(p, src, dst))
    except paths.PathError:
        return False
    return True


def _folder_scores(
    states: Mapping[str, PathState], ops: Mapping[str, Op | None], dst: str
) -> list[tuple[int, str]]:
    """The folders deleted here that ``dst`` may be, moved, each scored by how
    many of its synced contents reappear under ``dst`` (same place, same bytes);
    only those with at least half. What did not follow is sorted out later."""
    local_below = {
        p[len(dst) + 1 :]: n
        for p in states
        if paths.is_under(p, dst) and (n := states[p].local_node) is not None
    }
    if not local_below:
        return []
    found = []
    for src, op in ops.items():
        if not isinstance(op, DeleteRemote) or not _is_folder(states[src].synced_node):
            continue
        below = [
            st for p, st in states.items() if paths.is_under(p, src) and ops.get(p) is not None
        ]
        if any(_remote_changed(st) or st.local_node is not None for st in below):
            continue
        synced_below = {
            st.path[len(src) + 1 :]: n for st in below if (n := st.synced_node) is not None
        }
        score = sum(
            1
            for rel, n in synced_below.items()
            if rel in local_below and _same_bytes(n, local_below[rel])
        )
        if score > 0 and 2 * score >= len(synced_below):
            found.append((score, src))
    return found
