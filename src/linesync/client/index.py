"""The client's local index: three views of every path, in SQLite.

Lives in ``FOLDER/.linesync/index.sqlite3``. Besides the views it keeps the
cursor, the blocklists of the versions it knows (by content hash), which JID
had which content, where each chunk of a local file lies, and a bounded cache
of chunk bytes (the bases that make an edit cost about one line).

The index is never the truth about deletions: a missing or unreadable index
is rebuilt from disk and server, where every file counts as present.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import zstandard

from linesync.client.localfs import fsync_dir
from linesync.client.model import Local, Node, PathState, Stat, Version
from linesync.core import paths
from linesync.core.blocklist import content_hash
from linesync.core.ids import ChunkId, join_ids, split_ids
from linesync.protocol.schemas import Kind

SCHEMA_VERSION = 5

# The paths whose views may disagree, as the planner compares them; and the
# files and symlinks both sides agree on. The same text in the partial indexes
# and the queries (SQLite uses a partial index only for its own terms).
_DIRTY = (
    "l_kind IS NOT s_kind OR r_jid IS NOT s_jid OR r_kind IS NOT s_kind "
    "OR (l_kind='file' AND (l_chash IS NOT s_chash OR l_exec IS NOT s_exec "
    "OR l_mtime IS NOT s_mtime)) OR (l_kind='symlink' AND l_target IS NOT s_target)"
)
_SYNCED_FILE = "s_kind IS NOT NULL AND s_kind<>'directory'"
# The disagreeing paths that have a synced view: below a folder this device
# leaves out, the only ones a round still acts on (see :meth:`Index.dirty`).
_BASED = f"s_jid IS NOT NULL AND ({_DIRTY})"

_MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE paths (
      path TEXT PRIMARY KEY,
      r_jid INTEGER, r_kind TEXT, r_size INTEGER, r_mtime INTEGER, r_exec INTEGER,
      r_target TEXT, r_chash BLOB, r_moved_from TEXT,
      s_jid INTEGER, s_kind TEXT, s_size INTEGER, s_mtime INTEGER, s_exec INTEGER,
      s_target TEXT, s_chash BLOB,
      l_kind TEXT, l_size INTEGER, l_mtime INTEGER, l_exec INTEGER, l_target TEXT,
      l_chash BLOB, l_ctime INTEGER, l_ino INTEGER
    );
    CREATE TABLE blocklists (chash BLOB PRIMARY KEY, ids BLOB NOT NULL, sizes BLOB NOT NULL);
    CREATE TABLE versions (jid INTEGER PRIMARY KEY, chash BLOB);
    CREATE TABLE file_chunks (
      chunk_id BLOB NOT NULL, path TEXT NOT NULL, offset INTEGER NOT NULL,
      length INTEGER NOT NULL);
    CREATE INDEX file_chunks_id ON file_chunks (chunk_id);
    CREATE INDEX file_chunks_path ON file_chunks (path);
    CREATE TABLE cache (id BLOB PRIMARY KEY, data BLOB NOT NULL, size INTEGER NOT NULL,
                        used REAL NOT NULL);
    CREATE INDEX cache_used ON cache (used);
    """,
    # 2: paths by inode (a watcher's focused scan finds where a moved thing came from)
    """
    CREATE INDEX paths_ino ON paths (l_ino) WHERE l_ino IS NOT NULL;
    """,
    # 3: the cache's sizes and age without its bytes (its total, what to trim
    # first); a local file's layout as its content hash (offsets from its
    # blocklist), so that an edit changes a few rows, not one per chunk. The
    # old rows are only hints: dropped, and made again as files are read.
    """
    DROP INDEX cache_used;
    CREATE INDEX cache_used ON cache (used, size, id);
    DROP TABLE file_chunks;
    CREATE TABLE file_chunks (chunk_id BLOB NOT NULL, path TEXT NOT NULL,
                              PRIMARY KEY (chunk_id, path)) WITHOUT ROWID;
    CREATE INDEX file_chunks_path ON file_chunks (path);
    CREATE TABLE layouts (path TEXT PRIMARY KEY, chash BLOB NOT NULL, fhash BLOB);
    """,
    # 4: the paths whose views disagree, and the count of synced files, without
    # reading every row: each round asks (a big folder's round then costs what
    # changed, not 100 ms a query)
    f"""
    CREATE INDEX paths_dirty ON paths (path) WHERE {_DIRTY};
    CREATE INDEX paths_synced_files ON paths (s_kind) WHERE {_SYNCED_FILE};
    """,
    # 5: of those, the ones with a synced view: below a folder left out
    # (selective sync) a round asks for these alone, not for every path the
    # server changed there
    f"""
    CREATE INDEX paths_based ON paths (path) WHERE {_BASED};
    """,
]

_local = threading.local()  # zstd contexts are not thread-safe: a pair per thread


def _zstd() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    pair: tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor] | None
    pair = getattr(_local, "pair", None)
    if pair is None:
        pair = _local.pair = (zstandard.ZstdCompressor(level=1), zstandard.ZstdDecompressor())
    return pair


class IndexError_(Exception):
    """The index cannot be used (unreadable, or from a newer linesync)."""


def _node(
    kind: str | None, size: Any, mtime: Any, exe: Any, target: Any, chash: Any
) -> Node | None:
    if kind is None:
        return None
    return Node(Kind(kind), size or 0, mtime or 0, bool(exe), target, chash)


def _cols(node: Node | None) -> tuple[Any, ...]:
    if node is None:
        return (None, None, None, None, None, None)
    return (node.kind.value, node.size, node.mtime_ns, int(node.exec), node.target, node.chash)


def _sizes(raw: bytes) -> list[int]:
    return list(struct.unpack(f">{len(raw) // 4}I", raw))


_T = TypeVar("_T")


def _parts(ids: Sequence[_T], size: int = 500) -> Iterator[Sequence[_T]]:
    """``ids`` in slices that fit one statement's parameters."""
    uniq = list(dict.fromkeys(ids))
    for i in range(0, len(uniq), size):
        yield uniq[i : i + size]


def _ranges(excluded: Iterable[str]) -> list[tuple[str, str]]:
    """What lies strictly below each of the ``excluded`` folders (those below
    another one dropped), as sorted, disjoint ``[start, end)`` ranges of paths:
    from ``"e/"`` up to (not including) ``"e0"`` ("0" follows "/"; SQLite
    compares text as bytes, UTF-8 in code point order, as Python does)."""
    wanted = set(excluded)
    top = {e for e in wanted if not any(a in wanted for a in paths.ancestors(e))}
    return sorted((e + "/", e + "0") for e in top)


class Index:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        # The cache's size in bytes, summed once and then kept as chunks come
        # and go (over, never under, if a transaction rolls back).
        self._cache_total: int | None = None

    @classmethod
    def open(cls, path: Path) -> Index:
        made = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        # SQLite makes its own files' names durable, not the state folder's: a
        # power cut could take ``.linesync/`` (index and configuration) away.
        for d in {path.parent, *made}:
            fsync_dir(d.parent)
        # Made 0600 before SQLite opens it: its -wal and -shm take the same mode.
        if not path.exists():
            with contextlib.suppress(OSError):
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
                fsync_dir(path.parent)
        try:
            db = sqlite3.connect(path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=10000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise IndexError_(
                    f"{path} was written by a newer linesync (schema {version}); upgrade linesync"
                )
            for v in range(version, SCHEMA_VERSION):
                db.execute("BEGIN IMMEDIATE")
                for stmt in _MIGRATIONS[v].split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute(f"PRAGMA user_version={v + 1}")
                db.execute("COMMIT")
            db.execute("SELECT COUNT(*) FROM paths").fetchone()
        except sqlite3.DatabaseError as exc:
            raise IndexError_(f"{path} is unreadable: {exc}") from exc
        return cls(db)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- meta --------------------------------------------------------------

    def get(self, key: str, default: str | None = None) -> str | None:
        r = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(r[0]) if r else default

    def set(self, key: str, value: str | None) -> None:
        if value is None:
            self.db.execute("DELETE FROM meta WHERE key=?", (key,))
        else:
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES (?,?) "
                "ON CONFLICT (key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    # -- the three views ---------------------------------------------------

    def states(self) -> dict[str, PathState]:
        out: dict[str, PathState] = {}
        for r in self.db.execute("SELECT * FROM paths"):
            out[r[0]] = self._state(r)
        return out

    def states_at(self, focus: Iterable[str], below: bool = True) -> dict[str, PathState]:
        """The states of the paths in ``focus`` (that have one) and, with
        ``below``, of every path below them."""
        out: dict[str, PathState] = {}
        for path in focus:
            if path in out:
                continue
            if not below:
                r = self.db.execute("SELECT * FROM paths WHERE path=?", (path,)).fetchone()
                if r is not None:
                    out[path] = self._state(r)
                continue
            # Below ``path``: from "path/" up to (not including) "path0" ("0" follows "/").
            for r in self.db.execute(
                "SELECT * FROM paths WHERE path=? OR (path>? AND path<?)",
                (path, path + "/", path + "0"),
            ):
                out[r[0]] = self._state(r)
        return out

    def states_of(self, wanted: Iterable[str]) -> dict[str, PathState]:
        """The states of these paths (those that have one), a few queries for many."""
        out: dict[str, PathState] = {}
        for part in _parts(list(wanted)):
            q = ",".join("?" * len(part))
            for r in self.db.execute(f"SELECT * FROM paths WHERE path IN ({q})", part):
                out[r[0]] = self._state(r)
        return out

    def file_stats(self) -> dict[str, tuple[int, int, int, int, bool]]:
        """Each local file's stat as last seen (size, mtime_ns, ctime_ns, inode)
        and its executable bit, without building a state per path."""
        return {
            r[0]: (r[1], r[2], r[3], r[4], bool(r[5]))
            for r in self.db.execute(
                "SELECT path, l_size, l_mtime, l_ctime, l_ino, l_exec FROM paths WHERE l_kind=?",
                (Kind.FILE.value,),
            )
        }

    def local_others(self) -> list[str]:
        """The paths whose local view is a folder or a symlink."""
        return [
            r[0]
            for r in self.db.execute(
                "SELECT path FROM paths WHERE l_kind IS NOT NULL AND l_kind<>?", (Kind.FILE.value,)
            )
        ]

    def paths_of_inodes(self, inos: Iterable[int]) -> list[str]:
        """The paths whose local view has one of these inode numbers."""
        out: list[str] = []
        for part in _parts(list(inos)):
            marks = ",".join("?" * len(part))
            sql = f"SELECT path FROM paths WHERE l_ino IN ({marks}) AND l_ino IS NOT NULL"
            out.extend(r[0] for r in self.db.execute(sql, part))
        return out

    def dirty(self, excluded: Iterable[str] = ()) -> list[str]:
        """The paths whose views may disagree (a superset: a path not listed has
        its local, synced and remote views equal, as the planner compares them).

        Below the folders in ``excluded`` (left out here: selective sync) only
        those with a synced view (:data:`_BASED`): the planner leaves a path
        there without one as it is (what the server changed there is neither
        downloaded nor recorded; what was made here is kept, not uploaded), so
        a round does not look at them again and again. Their rows stay as they
        are: when the folder is taken back in they are listed again, and
        synced both ways. (The excluded folders themselves are listed like any
        path.) A few range queries on partial indexes: a left-out folder costs
        nothing per round whatever the server keeps there."""
        ranges = _ranges(excluded)
        out: list[str] = []
        lo: str | None = None
        for start, end in [*ranges, (None, None)]:
            # The paths from ``lo`` up to ``start`` (outside every excluded range).
            terms, args = [_DIRTY], []
            if lo is not None:
                terms.append("path>=?")
                args.append(lo)
            if start is not None:
                terms.append("path<?")
                args.append(start)
            sql = "SELECT path FROM paths INDEXED BY paths_dirty WHERE " + " AND ".join(
                f"({t})" for t in terms
            )
            out.extend(r[0] for r in self.db.execute(sql, args))
            if start is None:
                break
            out.extend(
                r[0]
                for r in self.db.execute(
                    f"SELECT path FROM paths INDEXED BY paths_based WHERE s_jid IS NOT NULL "
                    f"AND ({_DIRTY}) AND path>=? AND path<?",
                    (start, end),
                )
            )
            lo = end
        return out

    def synced_files(self) -> int:
        """How many files and symlinks both sides agree on (as the planner counts)."""
        r = self.db.execute(f"SELECT COUNT(*) FROM paths WHERE {_SYNCED_FILE}").fetchone()
        return int(r[0])

    def state(self, path: str) -> PathState:
        r = self.db.execute("SELECT * FROM paths WHERE path=?", (path,)).fetchone()
        return self._state(r) if r else PathState(path)

    @staticmethod
    def _state(r: Sequence[Any]) -> PathState:
        remote = None
        if r[1] is not None:
            remote = Version(r[1], _node(r[2], r[3], r[4], r[5], r[6], r[7]), r[8])
        synced = None
        if r[9] is not None:
            synced = Version(r[9], _node(r[10], r[11], r[12], r[13], r[14], r[15]))
        local = None
        # l_size and l_mtime hold the stat's values; only a file's node shares them.
        is_file = r[16] == Kind.FILE.value
        lnode = _node(r[16], r[17] if is_file else 0, r[18] if is_file else 0, r[19], r[20], r[21])
        if lnode is not None:
            local = Local(lnode, Stat(r[17] or 0, r[18] or 0, r[22] or 0, r[23] or 0))
        return PathState(r[0], remote, synced, local)

    def _ensure(self, path: str) -> None:
        self.db.execute(
            "INSERT INTO paths (path) VALUES (?) ON CONFLICT (path) DO NOTHING", (path,)
        )

    def set_remote(self, path: str, v: Version | None) -> None:
        self._ensure(path)
        jid = v.jid if v else None
        moved = v.moved_from if v else None
        self.db.execute(
            "UPDATE paths SET r_jid=?, r_kind=?, r_size=?, r_mtime=?, r_exec=?, r_target=?, "
            "r_chash=?, r_moved_from=? WHERE path=?",
            (jid, *_cols(v.node if v else None), moved, path),
        )
        self._prune(path)

    def set_synced(self, path: str, v: Version | None) -> None:
        self._ensure(path)
        self.db.execute(
            "UPDATE paths SET s_jid=?, s_kind=?, s_size=?, s_mtime=?, s_exec=?, s_target=?, "
            "s_chash=? WHERE path=?",
            (v.jid if v else None, *_cols(v.node if v else None), path),
        )
        self._prune(path)

    def set_local(self, path: str, local: Local | None) -> None:
        self._ensure(path)
        stat = local.stat if local else None
        kind, _, _, exe, target, chash = _cols(local.node if local else None)
        self.db.execute(
            "UPDATE paths SET l_kind=?, l_size=?, l_mtime=?, l_exec=?, l_target=?, l_chash=?, "
            "l_ctime=?, l_ino=? WHERE path=?",
            (
                kind,
                stat.size if stat else None,
                stat.mtime_ns if stat else None,
                exe,
                target,
                chash,
                stat.ctime_ns if stat else None,
                stat.ino if stat else None,
                path,
            ),
        )
        if local is None:
            self._drop_layout(path)
        self._prune(path)

    def _prune(self, path: str) -> None:
        self.db.execute(
            "DELETE FROM paths WHERE path=? AND r_jid IS NULL AND s_jid IS NULL AND l_kind IS NULL",
            (path,),
        )

    def forget_remote(self) -> None:
        """The server's journal is not the one we followed: forget what it said,
        and what we agreed with it (every local file becomes a local addition)."""
        self.db.execute(
            "UPDATE paths SET r_jid=NULL, r_kind=NULL, r_size=NULL, r_mtime=NULL, r_exec=NULL, "
            "r_target=NULL, r_chash=NULL, r_moved_from=NULL, s_jid=NULL, s_kind=NULL, "
            "s_size=NULL, s_mtime=NULL, s_exec=NULL, s_target=NULL, s_chash=NULL"
        )
        self.db.execute("DELETE FROM paths WHERE l_kind IS NULL")
        self.db.execute("DELETE FROM versions")
        self.set("cursor", None)
        self.set("cursor_clean", None)

    # -- content -----------------------------------------------------------

    def put_blocklist(
        self, chash: bytes, ids: Sequence[ChunkId], sizes: Sequence[int] | None
    ) -> None:
        raw_sizes = b"".join(s.to_bytes(4, "big") for s in sizes) if sizes is not None else b""
        self.db.execute(
            "INSERT INTO blocklists (chash, ids, sizes) VALUES (?,?,?) ON CONFLICT (chash) "
            "DO UPDATE SET sizes=CASE WHEN length(excluded.sizes) > 0 "
            "THEN excluded.sizes ELSE sizes END",
            (chash, join_ids(ids), raw_sizes),
        )

    def blocklist(self, chash: bytes) -> list[ChunkId] | None:
        r = self.db.execute("SELECT ids FROM blocklists WHERE chash=?", (chash,)).fetchone()
        return split_ids(r[0]) if r else None

    def chunk_sizes(self, chash: bytes) -> list[int] | None:
        r = self.db.execute("SELECT sizes FROM blocklists WHERE chash=?", (chash,)).fetchone()
        return _sizes(r[0]) if r and r[0] else None

    def put_version(self, jid: int, chash: bytes | None) -> None:
        self.db.execute(
            "INSERT INTO versions (jid, chash) VALUES (?,?) ON CONFLICT (jid) DO UPDATE "
            "SET chash=excluded.chash",
            (jid, chash),
        )

    def version_blocklist(self, jid: int) -> list[ChunkId] | None:
        r = self.db.execute("SELECT chash FROM versions WHERE jid=?", (jid,)).fetchone()
        if r is None or r[0] is None:
            return None
        return self.blocklist(r[0])

    def set_layout(
        self,
        path: str,
        ids: Sequence[ChunkId],
        sizes: Sequence[int],
        fhash: bytes | None = None,
    ) -> None:
        """The file now at ``path`` holds these chunks (for :meth:`find_chunks`).
        Kept as its content hash and the set of its chunk ids: a file read
        again unchanged costs one lookup, an edit the rows of what changed.
        ``fhash``: the BLAKE3 of the file's bytes (see :meth:`read_before`)."""
        chash = content_hash(ids)
        row = self.db.execute("SELECT chash, fhash FROM layouts WHERE path=?", (path,)).fetchone()
        if row is not None and row[0] == chash:
            if fhash is not None and row[1] != fhash:
                self.db.execute("UPDATE layouts SET fhash=? WHERE path=?", (fhash, path))
            return
        self.put_blocklist(chash, ids, sizes)
        old = self.blocklist(row[0]) if row is not None else []
        if old is None:  # (its blocklist is gone: start over)
            self.db.execute("DELETE FROM file_chunks WHERE path=?", (path,))
            old = []
        was, now = set(old), set(ids)
        self.db.executemany(
            "DELETE FROM file_chunks WHERE chunk_id=? AND path=?", [(c, path) for c in was - now]
        )
        self.db.executemany(
            "INSERT OR IGNORE INTO file_chunks (chunk_id, path) VALUES (?,?)",
            [(c, path) for c in now - was],
        )
        self.db.execute(
            "INSERT INTO layouts (path, chash, fhash) VALUES (?,?,?) "
            "ON CONFLICT (path) DO UPDATE SET chash=excluded.chash, fhash=excluded.fhash",
            (path, chash, fhash),
        )

    def read_before(self, path: str, fhash: bytes) -> bytes | None:
        """The content hash of the file at ``path`` if its layout was recorded
        from exactly these bytes (``fhash``: their BLAKE3): a file read again
        unchanged (its time touched, or read again to be safe) is not cut
        into chunks again."""
        row = self.db.execute(
            "SELECT chash FROM layouts WHERE path=? AND fhash=?", (path, fhash)
        ).fetchone()
        return bytes(row[0]) if row is not None else None

    def file_hash_at(self, path: str) -> bytes | None:
        """The BLAKE3 of the bytes the layout of ``path`` was recorded from."""
        row = self.db.execute("SELECT fhash FROM layouts WHERE path=?", (path,)).fetchone()
        return bytes(row[0]) if row is not None and row[0] is not None else None

    def _drop_layout(self, path: str) -> None:
        self.db.execute("DELETE FROM file_chunks WHERE path=?", (path,))
        self.db.execute("DELETE FROM layouts WHERE path=?", (path,))

    def find_chunks(self, ids: Sequence[ChunkId]) -> dict[ChunkId, list[tuple[str, int, int]]]:
        """Where local files hold these chunks (up to 4 places each; those
        found): as the index last read the files, so check what is read there."""
        found: dict[ChunkId, list[str]] = {}
        for part in _parts(ids):
            q = ",".join("?" * len(part))
            for cid, path in self.db.execute(
                f"SELECT chunk_id, path FROM file_chunks WHERE chunk_id IN ({q})", part
            ):
                where = found.setdefault(cid, [])
                if len(where) < 4:
                    where.append(path)
        spans: dict[str, dict[ChunkId, tuple[int, int]]] = {}
        for path in {p for where in found.values() for p in where}:
            spans[path] = self._spans(path)
        out: dict[ChunkId, list[tuple[str, int, int]]] = {}
        for cid, where in found.items():
            for path in where:
                span = spans[path].get(cid)
                if span is not None:
                    out.setdefault(cid, []).append((path, *span))
        return out

    def _spans(self, path: str) -> dict[ChunkId, tuple[int, int]]:
        """Offset and length of each chunk (its first place) in the file at ``path``."""
        row = self.db.execute(
            "SELECT b.ids, b.sizes FROM layouts l JOIN blocklists b ON b.chash = l.chash "
            "WHERE l.path=?",
            (path,),
        ).fetchone()
        if row is None or not row[1]:
            return {}
        out: dict[ChunkId, tuple[int, int]] = {}
        offset = 0
        for cid, size in zip(split_ids(row[0]), _sizes(row[1]), strict=False):
            out.setdefault(cid, (offset, size))
            offset += size
        return out

    # -- chunk cache -------------------------------------------------------

    def cache_get(self, cid: ChunkId) -> bytes | None:
        r = self.db.execute("SELECT data FROM cache WHERE id=?", (cid,)).fetchone()
        return _zstd()[1].decompress(r[0]) if r else None

    def cache_get_many(self, ids: Sequence[ChunkId]) -> dict[ChunkId, bytes]:
        """The cached ones of ``ids``."""
        out: dict[ChunkId, bytes] = {}
        for part in _parts(ids):
            q = ",".join("?" * len(part))
            for cid, data in self.db.execute(f"SELECT id, data FROM cache WHERE id IN ({q})", part):
                out[cid] = _zstd()[1].decompress(data)
        return out

    def cache_put(
        self, chunks: Mapping[ChunkId, bytes], packed: Mapping[ChunkId, bytes] = {}
    ) -> None:
        """Cache chunks (those already cached are only marked as used now, and
        not read from ``chunks``); ``packed`` has some of them compressed as the
        cache keeps them (one zstd frame that names its size, as they went on
        the wire), so they are not compressed again."""
        now = time.time()
        rows = []
        for part in _parts(list(chunks)):
            q = ",".join("?" * len(part))
            self.db.execute(f"UPDATE cache SET used=? WHERE id IN ({q})", (now, *part))
            held = {r[0] for r in self.db.execute(f"SELECT id FROM cache WHERE id IN ({q})", part)}
            for cid in part:
                if cid not in held:
                    z = packed.get(cid) or _zstd()[0].compress(chunks[cid])
                    rows.append((cid, z, len(z), now))
        self.db.executemany(
            "INSERT INTO cache (id, data, size, used) VALUES (?,?,?,?) ON CONFLICT (id) DO "
            "UPDATE SET used=excluded.used",
            rows,
        )
        if self._cache_total is not None:
            self._cache_total += sum(r[2] for r in rows)

    def cache_trim(self, max_bytes: int) -> None:
        if self._cache_total is not None and self._cache_total <= max_bytes:
            return
        total = self.db.execute("SELECT COALESCE(SUM(size), 0) FROM cache").fetchone()[0]
        self._cache_total = total
        if total <= max_bytes:
            return
        drop = []
        for cid, size in self.db.execute("SELECT id, size FROM cache ORDER BY used"):
            drop.append((cid,))
            total -= size
            if total <= max_bytes * 0.9:
                break
        self.db.executemany("DELETE FROM cache WHERE id=?", drop)
        self._cache_total = None  # summed again next time
