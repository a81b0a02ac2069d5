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
MAX_LOCKS_PER_USER = 500  # held at once by one user (others can still lock)
# Locks covering any one path at most: shared locks stack, and a listing shows
# every lock covering each child in its lockdiscovery (owner included).
MAX_COVERING = 16


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


def _self_and_above(path: str) -> list[str]:
    """``path``, the folders above it, and the namespace's root ("")."""
    out = [path]
    while path:
        path = paths.parent(path)
        out.append(path)
    return out


class LockManager:
    """The locks, indexed by token, and by namespace and root: what covers a
    path is found by looking at the path and its folders, whatever the number
    of locks held elsewhere (a PROPFIND asks it for every child it lists)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.locks: dict[str, Lock] = {}
        self._at: dict[int, dict[str, dict[str, Lock]]] = {}  # ns -> root -> token -> lock
        self._held: dict[int, int] = {}  # user -> locks held (expired ones until swept)

    def _add(self, lk: Lock) -> None:
        self.locks[lk.token] = lk
        self._at.setdefault(lk.ns_id, {}).setdefault(lk.root, {})[lk.token] = lk
        self._held[lk.user_id] = self._held.get(lk.user_id, 0) + 1

    def _drop(self, lk: Lock) -> None:
        if self.locks.pop(lk.token, None) is None:
            return
        roots = self._at.get(lk.ns_id, {})
        at = roots.get(lk.root, {})
        at.pop(lk.token, None)
        if not at:
            roots.pop(lk.root, None)
        if not roots:
            self._at.pop(lk.ns_id, None)
        left = self._held.get(lk.user_id, 1) - 1
        if left > 0:
            self._held[lk.user_id] = left
        else:
            self._held.pop(lk.user_id, None)

    def _sweep(self) -> None:
        """Forget every expired lock."""
        now = self.clock()
        for lk in [lk for lk in self.locks.values() if lk.expires <= now]:
            self._drop(lk)

    def _rooted(self, ns_id: int, root: str) -> list[Lock]:
        """The live locks rooted at ``root`` (expired ones are forgotten)."""
        at = self._at.get(ns_id, {}).get(root)
        if not at:
            return []
        now = self.clock()
        out = []
        for lk in list(at.values()):
            if lk.expires <= now:
                self._drop(lk)
            else:
                out.append(lk)
        return out

    def get(self, token: str) -> Lock | None:
        lk = self.locks.get(token)
        if lk is not None and lk.expires <= self.clock():
            self._drop(lk)
            return None
        return lk

    def covering(self, ns_id: int, path: str) -> list[Lock]:
        """The locks on ``path`` or on a folder above it at depth infinity."""
        if ns_id not in self._at:
            return []
        return [
            lk
            for root in _self_and_above(path)
            for lk in self._rooted(ns_id, root)
            if lk.covers(path)
        ]

    def within(self, ns_id: int, path: str) -> list[Lock]:
        """The locks rooted strictly under ``path``."""
        roots = [r for r in self._at.get(ns_id, {}) if _under(r, path)]
        return [lk for r in roots for lk in self._rooted(ns_id, r)]

    def on(self, ns_id: int, path: str) -> list[Lock]:
        """The locks rooted at ``path`` itself."""
        return self._rooted(ns_id, path)

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
        # Every path this lock covers is covered by at most MAX_COVERING locks:
        # those covering its root, those under it (depth infinity), and itself.
        if len(clash) >= MAX_COVERING:
            raise DavError(503, f"{MAX_COVERING} locks cover this resource already")
        if len(self.locks) >= MAX_LOCKS or self._held.get(user_id, 0) >= MAX_LOCKS_PER_USER:
            self._sweep()
        if self._held.get(user_id, 0) >= MAX_LOCKS_PER_USER:
            raise DavError(503, f"you hold {MAX_LOCKS_PER_USER} locks: unlock some first")
        if len(self.locks) >= MAX_LOCKS:
            raise DavError(503, "too many locks are held on this server; try again later")
        token = f"opaquelocktoken:{uuid.uuid4()}"
        lk = Lock(token, ns_id, root, depth, scope, owner, timeout, self.clock() + timeout, user_id)
        self._add(lk)
        return lk

    def refresh(self, lk: Lock, timeout: int) -> None:
        lk.timeout = timeout
        lk.expires = self.clock() + timeout

    def remove(self, token: str) -> None:
        lk = self.locks.get(token)
        if lk is not None:
            self._drop(lk)

    def drop_under(self, ns_id: int, path: str) -> None:
        """Forget the locks on ``path`` and under it (the resource is gone)."""
        for lk in self.on(ns_id, path) + self.within(ns_id, path):
            self._drop(lk)

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
