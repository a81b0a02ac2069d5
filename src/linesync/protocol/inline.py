"""Chunks carried inside JSON bodies, each compressed against a base chunk.

Shared by both sides: the uploading client inlines the chunks of an edit in
its commit, the server inlines them in list answers, each as zstd with the
chunk it most likely replaces as dictionary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from linesync.core import blocklist as bl
from linesync.core.ids import ChunkId, b64decode, b64encode, chunk_id
from linesync.protocol import codec
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.schemas import InlineChunk

_CODEC_NAME = {v: k for k, v in codec.NAMES.items()}


def encode(data: bytes, base_id: ChunkId | None, base: bytes | None) -> InlineChunk:
    kind, payload = codec.encode(data, base)
    return InlineChunk(
        data=b64encode(payload),
        codec=_CODEC_NAME[kind],  # type: ignore[arg-type]
        base=base_id.hex() if kind is codec.Codec.ZSTD_DICT and base_id is not None else None,
    )


def payload(chunk: InlineChunk) -> bytes:
    try:
        return b64decode(chunk.data)
    except ValueError as exc:
        raise LinesyncError(Code.BAD_REQUEST, "inline chunk data is not base64url") from exc


def decode(
    chunks: Sequence[InlineChunk], lookup: Callable[[ChunkId], bytes | None], limit: int = 2**20
) -> dict[ChunkId, bytes]:
    """Inline chunks by id; one whose base the caller lacks is skipped (it is
    fetched in a batch instead)."""
    out: dict[ChunkId, bytes] = {}
    for c in chunks:
        base = None
        if c.base is not None:
            base = lookup(bytes.fromhex(c.base))
            if base is None:
                continue
        data = codec.decode(codec.NAMES[c.codec], payload(c), base, limit)
        out[chunk_id(data)] = data
    return out


def replaced_bases(
    base_ids: Sequence[ChunkId], delta: bl.Delta
) -> list[tuple[ChunkId, ChunkId | None]]:
    """Pair each chunk a delta adds with the old chunk it most likely replaces
    (or, for a pure insertion, the chunk just before it)."""
    pairs: list[tuple[ChunkId, ChunkId | None]] = []
    for e in delta:
        olds = base_ids[e.start : e.start + e.delete] or base_ids[max(e.start - 1, 0) : e.start]
        for i, cid in enumerate(e.insert):
            pairs.append((cid, olds[min(i, len(olds) - 1)] if olds else None))
    return pairs
