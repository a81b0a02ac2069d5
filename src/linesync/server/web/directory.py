"""Who owns a namespace and who else may use it, for the sharing page.

The stores answer that only for all namespaces at once (``list_namespaces``),
which costs in proportion to the whole server: here it is loaded at most once
every few seconds per server process, by one request at a time, and shared.
A namespace's name and owner never change; its members may be a few seconds
old on the page (a change made here is seen at once)."""

from __future__ import annotations

import asyncio
import time

from linesync.protocol.errors import Code, LinesyncError
from linesync.server.model import NamespaceRecord
from linesync.server.stores.base import AdminStore

TTL = 5.0


class Directory:
    def __init__(self, meta: AdminStore, ttl: float = TTL) -> None:
        self.meta = meta
        self.ttl = ttl
        self._records: dict[int, NamespaceRecord] = {}
        self._loaded = float("-inf")
        self._lock = asyncio.Lock()

    async def record(self, ns_id: int) -> NamespaceRecord:
        """The namespace's record (the caller checked that the user is a member:
        one missing here is new, and the records are loaded again)."""
        async with self._lock:
            stale = time.monotonic() - self._loaded > self.ttl
            if stale or ns_id not in self._records:
                self._records = {r.id: r for r in await self.meta.list_namespaces()}
                self._loaded = time.monotonic()
            found = self._records.get(ns_id)
        if found is None:
            raise LinesyncError(Code.NOT_FOUND, "namespace not found")
        return found

    def forget(self) -> None:
        """Load again at the next look (after a change made here)."""
        self._loaded = float("-inf")


_BY_STORE: dict[int, Directory] = {}


def of(meta: AdminStore) -> Directory:
    """The directory of this store (one per store object, per process)."""
    d = _BY_STORE.get(id(meta))
    if d is None or d.meta is not meta:
        d = _BY_STORE[id(meta)] = Directory(meta)
    return d
