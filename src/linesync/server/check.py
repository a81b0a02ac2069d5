"""Consistency check of a server's data: every indexed chunk reads back and
hashes to its id, and every file entry's chunks are indexed and held by its
namespace."""

from __future__ import annotations

from linesync.core.ids import chunk_id
from linesync.protocol import codec
from linesync.protocol.errors import LinesyncError
from linesync.server.stores.base import MaintenanceStore
from linesync.server.stores.packs import ChunkStore, ChunkStoreError, Location

_BATCH = 512


async def check(meta: MaintenanceStore, packs: ChunkStore) -> list[str]:
    problems: list[str] = []
    locs = await meta.all_chunks()
    for i in range(0, len(locs), _BATCH):
        batch = locs[i : i + _BATCH]
        for loc in batch:
            try:
                (payload,) = await packs.read_many([Location(loc.pack, loc.offset, loc.length)])
                data = codec.decode(loc.codec, payload, None, 1 << 30)
            except (ChunkStoreError, LinesyncError) as exc:
                problems.append(f"chunk {loc.chunk_id.hex()}: unreadable: {exc}")
                continue
            if chunk_id(data) != loc.chunk_id:
                problems.append(f"chunk {loc.chunk_id.hex()}: bytes do not match the id")
            elif len(data) != loc.raw_size:
                problems.append(f"chunk {loc.chunk_id.hex()}: size differs from the index")
    problems += await meta.check_entries()
    return problems
