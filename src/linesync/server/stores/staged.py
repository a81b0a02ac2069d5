"""Small appends staged in PostgreSQL, packed into the object store later.

A one-line edit is one upload of one small chunk; written straight to S3 it
would be one PUT, and PUTs are what an object store bills. So, with shared
stores, an append of less than ``small_max`` bytes goes to the database
instead: one row holding a small pack (the same bytes a pack object would
hold, named ``s-…``), durable when the insert commits. Every so often
(``gc.drain``, under the "drain" lease) the live records of the staged packs are
appended to the object store together, a few MiB per object, and the index is
pointed at the copies; a staged pack left unused is deleted by a later drain
(or by garbage collection, like any pack).

Reads, scans and deletes go to whichever store holds the pack, by its name.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence

import asyncpg

from linesync.server.stores.common import CacheStats, ReportsCache
from linesync.server.stores.packs import (
    PACK_HEADER,
    PACK_MAGIC,
    PACK_VERSION,
    ChunkStore,
    ChunkStoreError,
    Location,
    PackInfo,
    PackScan,
    Record,
    check_record,
    encode_record_header,
    plan_reads,
)

MiB = 1 << 20
SMALL_MAX = 256 * 1024  # appends smaller than this are staged
_HEADER = PACK_HEADER.pack(PACK_MAGIC, PACK_VERSION, 0)


def staged_name(pack: str) -> bool:
    return pack.startswith("s-")


class PgStage:
    """Small packs as rows of ``staged_packs`` (name, bytes) in PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None
        self.rows_written = 0

    async def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=4)
            except (OSError, asyncpg.PostgresError) as exc:
                raise ChunkStoreError(f"staging database: {exc}") from exc
        return self._pool

    async def append(self, records: Sequence[Record]) -> list[Location]:
        name = f"s-{int(time.time()):08x}-{secrets.token_hex(6)}"
        buf = bytearray(_HEADER)
        locs: list[Location] = []
        for rec in records:
            buf += encode_record_header(rec)
            locs.append(Location(name, len(buf), len(rec.payload)))
            buf += rec.payload
        pool = await self._db()
        try:
            await pool.execute(
                "INSERT INTO staged_packs (name, data, created) VALUES ($1, $2, $3)",
                name,
                bytes(buf),
                time.time(),
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise ChunkStoreError(f"staging {len(records)} record(s): {exc}") from exc
        self.rows_written += 1
        return locs

    async def _range(self, pack: str, start: int, length: int) -> bytes:
        pool = await self._db()
        try:
            got = await pool.fetchval(
                "SELECT substring(data FROM $2 FOR $3) FROM staged_packs WHERE name=$1",
                pack,
                start + 1,
                length,
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise ChunkStoreError(f"reading staged pack {pack}: {exc}") from exc
        if got is None:
            raise ChunkStoreError(f"no staged pack {pack}")
        return bytes(got)

    async def read_many(self, locs: Sequence[Location]) -> list[bytes]:
        out = [b""] * len(locs)
        by_pack: dict[str, list[int]] = {}
        for i, loc in enumerate(locs):
            by_pack.setdefault(loc.pack, []).append(i)
        for pack, idxs in by_pack.items():
            mine = [locs[i] for i in idxs]
            size = max(loc.offset + loc.length for loc in mine)
            for start, end, members in plan_reads(mine, size):
                buf = await self._range(pack, start, end - start)
                for j in members:
                    out[idxs[j]] = check_record(buf, start, mine[j])
        return out

    async def list_packs(self) -> list[PackInfo]:
        pool = await self._db()
        rows = await pool.fetch("SELECT name, length(data) FROM staged_packs ORDER BY name")
        return [PackInfo(r[0], r[1]) for r in rows]

    def scan(self, pack: str) -> PackScan:
        async def read_at(offset: int, n: int) -> bytes:
            return await self._range(pack, offset, n)

        return PackScan(pack, read_at)

    async def delete_pack(self, pack: str) -> None:
        pool = await self._db()
        await pool.execute("DELETE FROM staged_packs WHERE name=$1", pack)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class StagedChunkStore:
    """A ``ChunkStore``: small appends to ``stage``, the rest to ``big``."""

    def __init__(self, big: ChunkStore, stage: PgStage, small_max: int = SMALL_MAX) -> None:
        self.big = big
        self.stage = stage
        self.small_max = small_max

        # Staged packs a drain emptied, and when: deleted by a later one (gc.drain).
        self.drained: dict[str, float] = {}

    @property
    def cache_stats(self) -> CacheStats:
        """The object store's record cache (``ReportsCache``)."""
        return self.big.cache_stats if isinstance(self.big, ReportsCache) else CacheStats()

    @property
    def current_pack(self) -> str | None:
        return self.big.current_pack

    async def append(self, records: Sequence[Record]) -> list[Location]:
        if sum(len(r.payload) for r in records) < self.small_max:
            return await self.stage.append(records)
        return await self.big.append(records)

    async def read(self, loc: Location) -> bytes:
        return (await self.read_many([loc]))[0]

    async def read_many(self, locs: Sequence[Location]) -> list[bytes]:
        small = [i for i, loc in enumerate(locs) if staged_name(loc.pack)]
        if not small:
            return await self.big.read_many(locs)
        big = [i for i, loc in enumerate(locs) if not staged_name(loc.pack)]
        out = [b""] * len(locs)
        for idxs, store in ((small, self.stage), (big, self.big)):
            if idxs:
                got = await store.read_many([locs[i] for i in idxs])
                for i, payload in zip(idxs, got, strict=True):
                    out[i] = payload
        return out

    async def list_packs(self) -> list[PackInfo]:
        return sorted(await self.big.list_packs() + await self.stage.list_packs())

    def scan(self, pack: str) -> PackScan:
        return (self.stage if staged_name(pack) else self.big).scan(pack)

    async def delete_pack(self, pack: str) -> None:
        await (self.stage if staged_name(pack) else self.big).delete_pack(pack)

    async def close(self) -> None:
        await self.stage.close()
        await self.big.close()
