"""What every metadata store shares: token hashing, the blocklist cache, and
how deep a chain of blocklist deltas may grow."""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from linesync.core.ids import ChunkId
from linesync.protocol.schemas import Kind
from linesync.server.model import Row

# An entry's columns, in the order ``entry_row`` reads them.
ENTRY_COLUMNS = (
    "jid, path, kind, size, mtime_ns, exec, target, device, base_jid, moved_from, chash, created"
)


# What a folder listing finds conflict copies by (linesync.client.naming).
CONFLICT_MARK = " (conflict from "


def folder_range(folder: str) -> tuple[str, str | None]:
    """The path range of everything under ``folder`` ("" for the top): every
    such path starts with the prefix and sorts before the end (byte order of
    UTF-8, which SQLite's BINARY and PostgreSQL's "C" collation compare by:
    "/" + 1 is "0"). None: no end."""
    return (f"{folder}/", f"{folder}0") if folder else ("", None)


def child_of(prefix: str, path: str) -> str:
    """The child of the folder with ``prefix`` that ``path`` is, or is under."""
    rest = path[len(prefix) :]
    slash = rest.find("/")
    return path if slash < 0 else prefix + rest[:slash]


class Columns(Protocol):
    """A database row: a tuple (SQLite) or a Record (asyncpg)."""

    def __getitem__(self, i: int, /) -> Any: ...


def entry_row(r: Columns) -> Row:
    """A row of ``ENTRY_COLUMNS`` (from either database) as a ``Row``."""
    return Row(
        jid=r[0],
        path=r[1],
        kind=Kind(r[2]),
        size=r[3],
        mtime_ns=r[4],
        exec=bool(r[5]),
        target=r[6],
        device=r[7],
        base_jid=r[8],
        moved_from=r[9],
        chash=r[10],
        created=r[11],
    )


# A file version's blocklist is stored as a delta against an older version's
# when that is at most half the size, up to this many deltas deep.
MAX_DELTA_DEPTH = 32


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token() -> str:
    return "lst_" + secrets.token_urlsafe(24)  # 192 random bits


@dataclass
class CacheStats:
    hits: int = 0  # served from the cache
    misses: int = 0  # looked up and not there
    fills: int = 0  # put in
    evictions: int = 0  # dropped to stay within max_bytes
    bytes: int = 0  # what it holds now (records: payload bytes plus a fixed cost each)
    entries: int = 0
    max_bytes: int = 0


@runtime_checkable
class ReportsCache(Protocol):
    """A store with a cache whose counters ``/metrics`` reports."""

    @property
    def cache_stats(self) -> CacheStats: ...


class BlocklistCache:
    """Resolved blocklists by (ns, journal, jid), bounded by the number of ids
    held. A version's blocklist never changes, and a reset mints a new journal
    id, so entries never go stale, also across server processes."""

    def __init__(self, max_ids: int) -> None:
        self.data: OrderedDict[tuple[int, str, int], list[ChunkId]] = OrderedDict()
        self.max_ids = max_ids
        self.size = 0
        self.stats = CacheStats()

    def get(self, key: tuple[int, str, int]) -> list[ChunkId] | None:
        ids = self.data.get(key)
        if ids is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
            self.data.move_to_end(key)
        return ids

    def put(self, key: tuple[int, str, int], ids: list[ChunkId]) -> None:
        if key in self.data or len(ids) > self.max_ids // 4:
            return
        self.data[key] = ids
        self.size += len(ids)
        while self.size > self.max_ids:
            _, old = self.data.popitem(last=False)
            self.size -= len(old)
