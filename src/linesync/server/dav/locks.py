"""WebDAV write locks (RFC 4918 §6-7), per server process and in memory:
a restart forgets them (clients take them again), and several server
processes behind one address do not see each other's locks.

A lock covers its root and, at depth infinity, everything under it. A write
must submit (in its If header) the token of every lock that covers a path it
changes; creating or removing a member changes its parent folder too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from linesync.core import paths
from linesync.server.dav.rules import DavError

MAX_LOCKS = 10_000  # held at once, over every namespace


@dataclass
class Lock:
    token: str
    ns_id: int
    root: str  # the locked path ("" for the namespace's root)
    depth: str  # "0" or "infinity"
    scope: str  # "exclusive" or "shared"
    owner: str | None  # the client's DAV:owner element, serialized
    timeout: int
    expires: float
    user_id: int = 0  # who took it: only they may use its token

    def covers(self, path: str) -> bool:
        if path == self.root:
            return True
        return self.depth == "infinity" and _under(path, self.root)


def _under(path: str, folder: str) -> bool:
    return folder == "" and path != "" or paths.is_under(path, folder)


class LockManager:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.locks: dict[str, Lock] = {}

    def _live(self) -> Iterable[Lock]:
        now = self.clock()
        gone = [t for t, lk in self.locks.items() if lk.expires <= now]
        for t in gone:
            del self.locks[t]
        return list(self.locks.values())

    def get(self, token: str) -> Lock | None:
        lk = self.locks.get(token)
        if lk is not None and lk.expires <= self.clock():
            del self.locks[token]
            return None
        return lk

    def covering(self, ns_id: int, path: str) -> list[Lock]:
        """The locks on ``path`` or on a folder above it at depth infinity."""
        return [lk for lk in self._live() if lk.ns_id == ns_id and lk.covers(path)]

    def within(self, ns_id: int, path: str) -> list[Lock]:
        """The locks rooted strictly under ``path``."""
        return [lk for lk in self._live() if lk.ns_id == ns_id and _under(lk.root, path)]

    def on(self, ns_id: int, path: str) -> list[Lock]:
        """The locks rooted at ``path`` itself."""
        return [lk for lk in self._live() if lk.ns_id == ns_id and lk.root == path]

    def create(
        self,
        ns_id: int,
        root: str,
        depth: str,
        scope: str,
        owner: str | None,
        timeout: int,
        user_id: int = 0,
    ) -> Lock:
        clash = self.covering(ns_id, root)
        if depth == "infinity":
            clash += self.within(ns_id, root)
        if any(lk.scope == "exclusive" or scope == "exclusive" for lk in clash):
            raise DavError(423, "the resource is locked", condition="no-conflicting-lock")
        if len(self.locks) >= MAX_LOCKS:
            raise DavError(503, "too many locks are held on this server; try again later")
        token = f"opaquelocktoken:{uuid.uuid4()}"
        lk = Lock(token, ns_id, root, depth, scope, owner, timeout, self.clock() + timeout, user_id)
        self.locks[token] = lk
        return lk

    def refresh(self, lk: Lock, timeout: int) -> None:
        lk.timeout = timeout
        lk.expires = self.clock() + timeout

    def remove(self, token: str) -> None:
        self.locks.pop(token, None)

    def drop_under(self, ns_id: int, path: str) -> None:
        """Forget the locks on ``path`` and under it (the resource is gone)."""
        for lk in self.on(ns_id, path) + self.within(ns_id, path):
            del self.locks[lk.token]

    def check(
        self,
        ns_id: int,
        changed: Iterable[str],
        tree: Iterable[str],
        submitted: set[str],
    ) -> None:
        """423 unless ``submitted`` holds the token of every lock covering a path
        of ``changed``, or covering or lying under a folder of ``tree`` (a
        folder deleted or moved whole)."""
        needed: list[Lock] = []
        for p in changed:
            needed += self.covering(ns_id, p)
        for p in tree:
            needed += self.covering(ns_id, p) + self.within(ns_id, p)
        for lk in needed:
            if lk.token not in submitted:
                raise DavError(423, "the resource is locked", condition="lock-token-submitted")
