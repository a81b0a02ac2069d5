"""Chunks carried inside JSON bodies, each compressed against a base chunk.

Shared by both sides: the uploading client inlines the chunks of an edit in
its commit, the server inlines them in list answers, each as zstd with the
chunk it most likely replaces as dictionary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import zstandard

from linesync.core import blocklist as bl
from linesync.core.ids import ChunkId, b64decode, b64encode, chunk_id, pack_ids, unpack_ids
from linesync.protocol import codec
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.schemas import InlineChunk

_CODEC_NAME = {v: k for k, v in codec.NAMES.items()}


MAX_BASES = 255
MAX_DICT = 4 * 2**20


def encode(
    data: bytes,
    base_ids: Sequence[ChunkId],
    base: bytes | None,
    compressor: zstandard.ZstdCompressor | None = None,
) -> InlineChunk:
    """``base`` is the concatenation of the chunks ``base_ids`` (or None);
    ``compressor`` may be a ``codec.dict_compressor(base)`` to reuse."""
    kind, payload = codec.encode(data, base, compressor)
    return InlineChunk(
        data=b64encode(payload),
        codec=_CODEC_NAME[kind],  # type: ignore[arg-type]
        base=pack_ids(base_ids) if kind is codec.Codec.ZSTD_DICT else None,
    )


def base_ids(chunk: InlineChunk) -> tuple[ChunkId, ...] | None:
    if chunk.base is None:
        return None
    try:
        ids = tuple(unpack_ids(chunk.base))
    except ValueError as exc:
        raise LinesyncError(Code.BAD_REQUEST, f"inline chunk base: {exc}") from exc
    if not 0 < len(ids) <= MAX_BASES:
        raise LinesyncError(Code.BAD_REQUEST, f"inline chunk needs 1 to {MAX_BASES} bases")
    return ids


def join(ids: Sequence[ChunkId], lookup: Callable[[ChunkId], bytes | None]) -> bytes | None:
    """The dictionary for ``ids``: their bytes concatenated, or None if one is unknown."""
    parts = [lookup(c) for c in ids]
    if any(p is None for p in parts):
        return None
    return b"".join(p for p in parts if p is not None)


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
        ids = base_ids(c)
        if ids is not None:
            base = join(ids, lookup)
            if base is None:
                continue
        data = codec.decode(codec.NAMES[c.codec], payload(c), base, limit)
        out[chunk_id(data)] = data
    return out


def replaced_bases(
    old_ids: Sequence[ChunkId], delta: bl.Delta, sizes: Callable[[ChunkId], int] | None = None
) -> list[tuple[ChunkId, tuple[ChunkId, ...]]]:
    """Pair each chunk a delta adds with the old chunks its edit replaces (for a
    pure insertion, the chunk just before it): the dictionary it is sent against."""
    pairs: list[tuple[ChunkId, tuple[ChunkId, ...]]] = []
    for e in delta:
        olds = old_ids[e.start : e.start + e.delete] or old_ids[max(e.start - 1, 0) : e.start]
        olds = olds[:MAX_BASES]
        if sizes is not None:
            total, keep = 0, 0
            for c in olds:
                total += sizes(c)
                if total > MAX_DICT:
                    break
                keep += 1
            olds = olds[:keep]
        for cid in e.insert:
            pairs.append((cid, tuple(olds)))
    return pairs
