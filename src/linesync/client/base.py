"""What every part of the sync engine shares: its collaborators, results,
limits, and taking the server's news into the remote view."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from linesync.client import rail
from linesync.client.chunksource import ChunkSource
from linesync.client.config import FolderConfig
from linesync.client.filesystem import FileSystem
from linesync.client.ignore import IgnoreRules
from linesync.client.index import Index
from linesync.client.localfs import Changed, LocalFS
from linesync.client.model import Node, Stat, Version
from linesync.client.naming import conflict_name
from linesync.client.rail import Hold, Rail
from linesync.client.remote import Remote
from linesync.client.transfer import resolve_content
from linesync.core import blocklist as bl
from linesync.core.ids import ChunkId
from linesync.protocol import folding, inline
from linesync.protocol.schemas import (
    Entry,
    Kind,
    ListResponse,
)

log = logging.getLogger("linesync.client")

MAX_ROUNDS = 8
COMMIT_BATCH = 500
# One commit's ops stop growing past this many bytes of JSON (the server takes
# bodies of up to 48 MiB: a batch of big new files' blocklists must fit).
COMMIT_BODY_BYTES = 16 * 2**20
# ... and past this many bytes of the files it uploads, which it holds in
# memory until the server answers (a big file is read as it is sent, not held).
COMMIT_CONTENT_BYTES = 32 * 2**20
# One upload request: about this many bytes of payload, and within the
# server's budget per request: 32 MiB once decompressed, and so many chunks.
UPLOAD_BATCH_BYTES = 8 * 2**20
UPLOAD_BATCH_RAW = 32 * 2**20
UPLOAD_BATCH_FRAMES = 4096
INLINE_BUDGET = 64 * 2**10
CACHE_MAX_BYTES = 256 * 2**20
CACHE_MAX_FILE = 16 * 2**20  # files bigger than this keep no cached chunks
LIST_INLINE = 256 * 2**10
CARRIED = -1  # the synced JID of a file our own folder move carried, until listed
GROUP_BYTES = 32 * 2**20  # file bytes prefetched and written at a time
GROUP_FILES = 2048  # and files: what a group holds until it settles stays bounded
DOWNLOAD_CONCURRENCY = 4
UPLOAD_CONCURRENCY = 3
# Coarsest file-time tick we allow for (FAT: 2 s): a file changed this close
# to the last scan is read again rather than trusted by its stat.
RACY_NS = 2 * 10**9


@dataclass
class SyncResult:
    """What one sync did. Counts are of files and symlinks; folders are not
    counted (both sides then report the same numbers for the same change)."""

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
    # Deletions the mass-delete rail holds back (waiting to settle, or refused).
    held: Hold | None = None
    wake_ns: int | None = None  # held to settle: judged again at this wall-clock time
    # Entries of the server this folder cannot hold (path: why), skipped.
    skipped: dict[str, str] = field(default_factory=dict)


class MassDelete(Exception):
    """The mass-delete rail refused to send a deletion. The rest of the sync
    was done: ``result`` says what (``None`` only where no sync ran)."""

    def __init__(
        self,
        count: int,
        total: int,
        *,
        recent: int = 0,
        result: SyncResult | None = None,
        folder: str = "FOLDER",
    ) -> None:
        also = f" (besides {recent} deleted there just before)" if recent else ""
        super().__init__(
            f"refusing to delete {count} of {total} files on the server{also}: most of the "
            "folder vanished; everything else was synced. If you really deleted them, run "
            f"`linesync sync {folder} --confirm-deletes`; if not, put them back."
        )
        self.count = count
        self.total = total
        self.recent = recent
        self.result = result


def is_folder(node: Node | None) -> bool:
    return node is not None and node.kind is Kind.DIRECTORY


class _Unfoldable(Exception):
    """a folded folder move whose source the remote view holds otherwise"""


def node_of(e: Entry, chash: bytes | None) -> Node | None:
    if e.kind is Kind.TOMBSTONE:
        return None
    return Node(e.kind, e.size, e.mtime_ns, e.exec, e.target, chash)


@dataclass(slots=True)
class Placing:
    """A download written but not yet durable by name nor recorded: ``tmp``, a
    temporary file still to make durable and put in place (None: in place
    already, as ``stat`` says); ``record`` writes the index rows for the stat
    the file has in place."""

    path: str
    record: Callable[[Stat], None]
    remote: Version
    tmp: Path | None = None
    expect: Stat | None = None
    stat: Stat | None = None


class EngineBase:
    def __init__(
        self,
        folder: Path,
        config: FolderConfig,
        remote: Remote,
        index: Index,
        *,
        allow_mass_delete: bool = False,
        report: Callable[[str], None] | None = None,
        fs: FileSystem | None = None,
        clock: Callable[[], int] = time.time_ns,
        rail: Rail | None = None,
    ) -> None:
        """``fs``: the folder's file system, and ``clock``: the wall clock in
        nanoseconds; tests pass fault-injecting or deterministic ones.
        ``rail``: the mass-delete rail's settings (a watcher lets deletions
        settle; a one-shot sync judges at once)."""
        self.folder = folder
        self.config = config
        self.remote = remote
        self.index = index
        self.fs: FileSystem = fs or LocalFS(folder)
        self.clock = clock
        self.chunks = ChunkSource(index, self.fs, remote, config.namespace)
        self.allow_mass_delete = allow_mass_delete
        self.rail = rail or Rail()
        # Entries of the server this folder cannot hold: path -> (their JID, why).
        self.skipped: dict[str, tuple[int, str]] = {}
        self.report = report or (lambda _: None)
        # progress(what, done, total): "download" and "upload" count bytes.
        self.progress: Callable[[str, int, int], None] = lambda what, done, total: None
        self.ignore = IgnoreRules.default()
        self.unstable: set[str] = set()
        self.racy = (0, 0)  # file times in this range are not trusted (see scan)
        # False once the remote view is known to match the server's head (our own
        # commits carried it there): the next round then skips a list request.
        self.need_pull = True
        self.refused_moves: set[tuple[str, str]] = set()
        # Downloads written but not yet durable nor recorded (Engine._settle).
        self.settling: list[Placing] = []
        # Folders this execute found or made (each looked at once, not per file).
        self.folders_seen: set[str] = set()

    @property
    def ns(self) -> int:
        return self.config.namespace

    @property
    def journal(self) -> str | None:
        cursor = self.index.get("cursor")
        return cursor.split(".")[0] if cursor else None

    async def _apply_page(self, resp: ListResponse) -> bool:
        """Take a page of the server's changes into the remote view, and move the
        cursor past it, in one transaction. False (nothing taken) when it folds a
        folder move whose source this view does not hold as the server moved it:
        list it again without folding."""
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
                    chash = self._held_chash(e, at)
                    ids = self.index.blocklist(chash) if chash else None
                else:
                    ids = resolve_content(e.content, self.index.version_blocklist)
                if ids is None:
                    full = await self.remote.entry(self.ns, e.jid)
                    assert full.content is not None
                    ids = resolve_content(full.content, self.index.version_blocklist)
            resolved.append((e, ids))
        received = inline.decode(resp.chunks, self.chunks.local) if resp.chunks else {}
        try:
            with self.index.transaction():
                for e, ids in resolved:
                    chash = bl.content_hash(ids) if ids is not None else None
                    if ids is not None and chash is not None:
                        self.index.put_blocklist(chash, ids, None)
                    self.index.put_version(e.jid, chash)
                    self.index.set_remote(e.path, Version(e.jid, node_of(e, chash), e.moved_from))
                    if e.implied:
                        self._take_implied(self._unfold(e))
                if received:
                    self.index.cache_put(received)
                self.index.set("cursor", resp.cursor)
                self.index.set("cursor_clean", "0" if resp.more else "1")
                if not resp.more:
                    self.index.set("must_pull", None)
        except _Unfoldable as exc:
            log.info("%s: %s; listed again without folding", exc, exc.__doc__)
            return False
        return True

    def _take_implied(self, entries: list[folding.Implied[Node]]) -> None:
        """Entries a move wrote that were not listed, into the remote view."""
        for v in entries:
            self.index.put_version(v.jid, v.node.chash if v.node else None)
            self.index.set_remote(v.path, Version(v.jid, v.node, v.moved_from))

    def _held_chash(self, e: Entry, at: int) -> bytes | None:
        """The content of the version we hold (as of our cursor, ``at``) that
        an entry listed without content has the bytes of: the path's file, or
        else the move source's (PROTOCOL §4.6.3, §4.16). None: not known here."""
        for path in (e.path, e.moved_from):
            held = self.index.state(path).remote if path is not None else None
            if held is not None and held.jid > at:
                return None  # one of our own commits past the cursor: not what it meant
            if held is not None and held.node is not None and held.node.kind is Kind.FILE:
                return held.node.chash
        return None

    def _unfold(self, e: Entry) -> list[folding.Implied[Node]]:
        """The entries a folded move stands for: a file's, its source's
        tombstone; a folder's, from the remote view as the page so far left it
        (the source folder's and everything below it)."""
        src = e.moved_from
        if src is None:
            raise _Unfoldable(e.path)
        if e.kind is not Kind.DIRECTORY:
            if e.implied != folding.implied_count(0):
                raise _Unfoldable(e.path)
            return folding.layout(e.jid, src, e.path, [])
        below = self.index.states_at([src])
        top = below.pop(src, None)
        held = sorted(
            ((p, s.remote.jid, s.remote.node) for p, s in below.items()
             if s.remote is not None and s.remote.node is not None),
            key=lambda t: t[0],
        )  # fmt: skip
        out = None
        if top is not None and top.remote is not None and top.remote_node is not None:
            out = folding.unfold(
                e.jid, src, e.path, e.implied, e.digest or "", top.remote.jid, held
            )
        if out is None:
            raise _Unfoldable(e.path)
        return out

    def _recent(self) -> list[tuple[int, int]]:
        raw = self.index.get("recent_deletes")
        try:
            return [(int(t), int(n)) for t, n in json.loads(raw)] if raw else []
        except (ValueError, TypeError):
            return []

    def _note_deleted(self, files: int) -> None:
        """Count files this folder deleted on the server (inside the commit's
        transaction), for the rail's window; a confirmed sync counts none."""
        if files <= 0 or self.allow_mass_delete:
            return
        now = self.clock()
        recent = rail.prune(self._recent(), now, self.rail.window_ns)
        if recent and now - recent[-1][0] < rail.SECOND:
            recent[-1] = (recent[-1][0], recent[-1][1] + files)
        else:
            recent.append((now, files))
        self.index.set("recent_deletes", json.dumps(recent))

    def _free_name(self, path: str, what: str = "conflict") -> str:
        for n in range(1, 100):
            name = conflict_name(path, self.config.device, what, when=self.clock() / 1e9, n=n)
            if not self.fs.exists(name):
                return name
        raise Changed("no free name for a conflict copy")
