"""Conversions between the server's records and the wire schemas."""

from __future__ import annotations

from collections.abc import Sequence

from linesync.core import blocklist as bl
from linesync.core.ids import ChunkId, pack_ids
from linesync.protocol.schemas import Content, Entry
from linesync.server.model import Row


def entry_out(row: Row, content: Content | None = None) -> Entry:
    return Entry(
        jid=row.jid,
        path=row.path,
        kind=row.kind,
        size=row.size,
        mtime_ns=row.mtime_ns,
        exec=row.exec,
        target=row.target,
        device=row.device,
        base_jid=row.base_jid,
        moved_from=row.moved_from,
        content=content,
    )


def full_content(ids: Sequence[ChunkId]) -> Content:
    return Content(ids=pack_ids(ids))


def delta_content(base: int, delta: Sequence[bl.Edit]) -> Content:
    return Content(base=base, edits=[(e.start, e.delete, pack_ids(e.insert)) for e in delta])
