"""Turning file versions into commit ops and back, with the least on the wire.

Pure functions: they take bytes and lookups and return wire structs. An edit
is sent as a blocklist delta against the version it was based on, and each
new chunk as zstd with the chunk it replaces as dictionary, inline in the
commit when small: a one-line edit is one small request.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from linesync.core import blocklist as bl
from linesync.core.chunking import chunk
from linesync.core.ids import ChunkId, chunk_id, pack_ids, unpack_ids
from linesync.protocol import inline
from linesync.protocol.schemas import CommitOp, Content, InlineChunk, Kind

INLINE_BUDGET = 64 * 2**10
# What the server takes inline in one commit (its per-request budget): chunks
# by count and decompressed bytes, and the base chunks they are decoded against.
MAX_INLINE_CHUNKS = 1024
MAX_INLINE_RAW = 16 * 2**20
MAX_INLINE_BASES = 16 * 2**20


@dataclass(frozen=True)
class InlineRoom:
    """What one commit may still carry inline: ``bytes`` of compressed
    payload (our own budget, to keep commits small), and the server's limits
    on ``chunks``, their decompressed ``raw`` bytes and their ``bases``' bytes."""

    bytes: int = INLINE_BUDGET
    chunks: int = MAX_INLINE_CHUNKS
    raw: int = MAX_INLINE_RAW
    bases: int = MAX_INLINE_BASES

    def less(self, prep: PreparedFile) -> InlineRoom:
        return InlineRoom(
            self.bytes - sum(len(c.data) * 3 // 4 for c in prep.inline),
            self.chunks - len(prep.inline),
            self.raw - prep.inline_raw,
            self.bases - prep.inline_bases,
        )


def split(data: bytes) -> tuple[list[ChunkId], dict[ChunkId, bytes]]:
    """The blocklist of ``data`` and the bytes of each chunk."""
    ids: list[ChunkId] = []
    chunks: dict[ChunkId, bytes] = {}
    view = memoryview(data)
    for c in chunk(data):
        piece = bytes(view[c.offset : c.offset + c.length])
        cid = chunk_id(piece)
        ids.append(cid)
        chunks[cid] = piece
    return ids, chunks


@dataclass
class PreparedFile:
    op: CommitOp
    inline: list[InlineChunk]
    new_ids: list[ChunkId]  # chunks the server may lack (inline ones included)
    inline_raw: int = 0  # what the inline chunks decompress to
    inline_bases: int = 0  # bytes of the base chunks they are decoded against


def prepare_file(
    path: str,
    ids: Sequence[ChunkId],
    chunks: Mapping[ChunkId, bytes],
    *,
    size: int,
    mtime_ns: int,
    exec: bool = False,
    base_jid: int = 0,
    base_ids: Sequence[ChunkId] | None = None,
    base_chunks: Callable[[ChunkId], bytes | None] = lambda _: None,
    inline_budget: int = INLINE_BUDGET,
    room: InlineRoom | None = None,
    on_server: Collection[ChunkId] = frozenset(),
) -> PreparedFile:
    """A commit op for a file version, as a delta against ``base_ids`` when given.
    Its new chunks go inline within ``room`` (or ``inline_budget`` bytes and the
    server's limits), but for those ``on_server`` (the server has them); the
    others are left for an upload."""
    room = room or InlineRoom(bytes=inline_budget)
    inline_budget = room.bytes
    content: Content | None
    if base_ids is not None and base_jid:
        delta = bl.diff(base_ids, ids)
        content = Content(
            base=base_jid, edits=[(e.start, e.delete, pack_ids(e.insert)) for e in delta]
        )
        pairs = inline.replaced_bases(base_ids, delta, lambda c: len(base_chunks(c) or b""))
    else:
        content = Content(ids=pack_ids(ids))
        pairs = [(c, ()) for c in dict.fromkeys(ids)]
    chosen: list[InlineChunk] = []
    seen: set[ChunkId] = set()
    raw = base_bytes = 0
    for cid, bases in pairs:
        if cid in seen or cid in on_server:
            continue
        seen.add(cid)
        if len(chosen) >= room.chunks:
            break
        if inline_budget < 64:
            continue  # (nor read it: a big file's chunks come from disk)
        data = chunks[cid]
        if not bases and len(data) > 8 * inline_budget:
            continue  # it cannot fit: do not spend the compression on it
        if raw + len(data) > room.raw:
            continue
        base = inline.join(bases, base_chunks) if bases else None
        if base is not None and base_bytes + len(base) > room.bases:
            bases, base = (), None  # on its own, then
        item = inline.encode(data, bases, base)
        cost = len(item.data) * 3 // 4
        if cost > inline_budget:
            continue
        inline_budget -= cost
        raw += len(data)
        if item.base is not None and base is not None:
            base_bytes += len(base)
        chosen.append(item)
    if content is not None and content.edits == [] and base_jid:
        content = None  # the same bytes as version base_jid: a touch or a chmod
    op = CommitOp(
        path=path, kind=Kind.FILE, base_jid=base_jid, size=size, mtime_ns=mtime_ns, exec=exec,
        content=content,
    )  # fmt: skip
    return PreparedFile(op=op, inline=chosen, new_ids=[c for c, _ in pairs], inline_raw=raw,
                        inline_bases=base_bytes)  # fmt: skip


def resolve_content(
    content: Content, blocklist_of: Callable[[int], Sequence[ChunkId] | None]
) -> list[ChunkId] | None:
    """The full blocklist a list entry describes, or None when its base is unknown
    here (then fetch the entry in full)."""
    if content.ids is not None:
        return unpack_ids(content.ids)
    if content.base is None or content.edits is None:
        return None
    base = blocklist_of(content.base)
    if base is None:
        return None
    delta = [bl.Edit(s, d, tuple(unpack_ids(i))) for s, d, i in content.edits]
    return bl.apply(base, delta)
