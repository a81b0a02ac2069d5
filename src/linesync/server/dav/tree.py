"""A namespace's current tree, read through the metadata store: one path's
entry, a folder's children and a folder's whole subtree.

A folder's children and subtree are read a page at a time in path order
(``MetadataStore.children`` / ``under``): a listing holds one page in memory
and costs in proportion to what it lists, whatever the namespace's size."""

from __future__ import annotations

from collections.abc import AsyncIterator

from linesync.protocol.schemas import Kind
from linesync.server.model import Row
from linesync.server.stores.base import MetadataStore

PAGE = 1000
# Entries a folder may hold for a WebDAV COPY or DELETE (or a web folder
# delete) in one request: past it, the request is refused (use a client).
MAX_TREE = 100_000
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


async def children(meta: MetadataStore, ns_id: int, folder: str) -> AsyncIterator[Row]:
    """The files and folders directly in ``folder``, a page at a time."""
    after = ""
    while True:
        rows = await meta.children(ns_id, folder, after, PAGE)
        for r in rows:
            if r.kind in _SHOWN:
                yield r
        if len(rows) < PAGE:
            return
        after = rows[-1].path


async def subtree(
    meta: MetadataStore, ns_id: int, folder: str, cap: int | None = None, deleted: bool = False
) -> list[Row]:
    """Every live entry under ``folder`` (tombstones too with ``deleted``),
    sorted by path (parents first); with ``cap``, at most ``cap + 1`` of them
    (more than ``cap``: too many)."""
    out: list[Row] = []
    while cap is None or len(out) <= cap:
        rows = await meta.under(ns_id, folder, out[-1].path if out else "", PAGE, deleted)
        out += rows
        if len(rows) < PAGE:
            break
    return out if cap is None else out[: cap + 1]
