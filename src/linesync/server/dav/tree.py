"""A namespace's current tree, read through the metadata store: one path's
entry, a folder's children and a folder's whole subtree.

The store keeps the current entry of every path in JID order (what list
pages read); a folder's children are read by walking it a page at a time,
so a listing holds one page in memory whatever the namespace's size (and
costs a walk of the namespace: fine for the folders people browse)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from linesync.core import paths
from linesync.protocol.schemas import Kind
from linesync.server.model import Row
from linesync.server.stores.base import MetadataStore

PAGE = 1000
LATEST = 2**62
# What a listing shows: a symbolic link has no bytes to serve over WebDAV.
_SHOWN = (Kind.FILE, Kind.DIRECTORY)


def root_row(jid: int = 0) -> Row:
    return Row(jid=jid, path="", kind=Kind.DIRECTORY)


async def entry_at(meta: MetadataStore, ns_id: int, path: str) -> Row | None:
    """The path's latest entry, a tombstone too (None: never written)."""
    if path == "":
        return root_row()
    return await meta.version_at(ns_id, path, LATEST)


async def live(meta: MetadataStore, ns_id: int, path: str) -> Row | None:
    """The path's entry if it is there now."""
    row = await entry_at(meta, ns_id, path)
    return row if row is not None and row.live else None


async def _walk(meta: MetadataStore, ns_id: int) -> AsyncIterator[list[Row]]:
    after = 0
    while True:
        rows, _ = await meta.changes(ns_id, after, PAGE)
        if rows:
            yield rows
        if len(rows) < PAGE:
            return
        after = rows[-1].jid


async def children(meta: MetadataStore, ns_id: int, folder: str) -> AsyncIterator[Row]:
    """The files and folders directly in ``folder``, a page at a time."""
    async for rows in _walk(meta, ns_id):
        for r in rows:
            if r.kind in _SHOWN and r.path != folder and paths.parent(r.path) == folder:
                yield r


async def subtree(meta: MetadataStore, ns_id: int, folder: str) -> list[Row]:
    """Every live entry under ``folder``, sorted by path (parents first)."""
    out: list[Row] = []
    async for rows in _walk(meta, ns_id):
        out += [r for r in rows if r.live and (folder == "" or paths.is_under(r.path, folder))]
    out.sort(key=lambda r: r.path)
    return out
