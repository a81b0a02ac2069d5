"""Uploads in progress, announced so that other devices can fetch a big file's
chunks while it is still being uploaded (streaming sync): a downloader has the
file about one transfer after the upload began, not two.

An announcement is a hint, never a journal entry: it names a path, a size and
a blocklist, lasts until a commit writes that path or ``ttl`` seconds pass,
and can be dropped at any time (the file then comes the usual way, after its
commit). Kept in memory, in one process, within bounds: ``per_ns``
announcements a namespace and ``max_bytes`` of ids in all.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from linesync.protocol.errors import Code, LinesyncError


@dataclass(frozen=True)
class Announced:
    seq: int
    path: str
    size: int
    ids: bytes  # the blocklist, 32 bytes an id
    device: str
    until: float  # when it lapses (monotonic seconds)


@dataclass
class Pending:
    per_ns: int = 4
    max_bytes: int = 64 * 2**20
    ttl: float = 600.0
    clock: Callable[[], float] = time.monotonic
    _by_ns: dict[int, dict[int, Announced]] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _bytes: int = 0

    def announce(self, ns_id: int, path: str, size: int, ids: bytes, device: str) -> Announced:
        """Record an upload in progress (in place of an earlier one of the same
        path). A namespace's oldest announcement makes room for its newest; past
        ``max_bytes`` in all, a new one is refused (RATE_LIMITED)."""
        self._expire(ns_id)
        for old in [a for a in self.current(ns_id) if a.path == path]:
            self._drop(ns_id, old.seq)
        while len(held := self.current(ns_id)) >= self.per_ns:
            self._drop(ns_id, held[0].seq)
        if self._bytes + _cost(path, ids) > self.max_bytes:
            for other in list(self._by_ns):
                self._expire(other)
        if self._bytes + _cost(path, ids) > self.max_bytes:
            raise _full()
        a = Announced(next(self._seq), path, size, ids, device, self.clock() + self.ttl)
        self._by_ns.setdefault(ns_id, {})[a.seq] = a
        self._bytes += _cost(path, ids)
        return a

    def current(self, ns_id: int) -> list[Announced]:
        """The namespace's announcements, oldest first."""
        self._expire(ns_id)
        return sorted(self._by_ns.get(ns_id, {}).values(), key=lambda a: a.seq)

    def get(self, ns_id: int, seq: int) -> Announced | None:
        self._expire(ns_id)
        return self._by_ns.get(ns_id, {}).get(seq)

    def settled(self, ns_id: int, paths: Iterable[str]) -> None:
        """A commit wrote these paths: what was announced for them is done."""
        mine = self._by_ns.get(ns_id)
        if not mine:
            return
        written = set(paths)
        for a in [a for a in mine.values() if a.path in written]:
            self._drop(ns_id, a.seq)

    def check_room(self, body_bytes: int) -> None:
        """Refuse (before it is read) an announcement whose body, as ids (3/4
        of its base64), could not fit."""
        if self._bytes + body_bytes * 3 // 4 > self.max_bytes:
            for other in list(self._by_ns):
                self._expire(other)
        if self._bytes + body_bytes * 3 // 4 > self.max_bytes:
            raise _full()

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def _drop(self, ns_id: int, seq: int) -> None:
        mine = self._by_ns[ns_id]
        a = mine.pop(seq)
        self._bytes -= _cost(a.path, a.ids)
        if not mine:
            del self._by_ns[ns_id]

    def _expire(self, ns_id: int) -> None:
        now = self.clock()
        for a in [a for a in self._by_ns.get(ns_id, {}).values() if a.until <= now]:
            self._drop(ns_id, a.seq)


def _full() -> LinesyncError:
    return LinesyncError(
        Code.RATE_LIMITED, "too many uploads announced at once; commit as usual",
        retry_after=60,  # (uploads end, or their announcements lapse)
    )  # fmt: skip


def _cost(path: str, ids: bytes) -> int:
    """What an announcement is counted as: its ids, its path and the rest."""
    return len(ids) + len(path) + 256
