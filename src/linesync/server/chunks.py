"""Chunk upload, download and inline transfer, verified against their ids.

A chunk enters a namespace only after its bytes hashed to its id; it is
stored zstd-compressed (or raw when that is smaller) in a pack, and indexed
as held by that namespace. Reads go through the namespace's holdings only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from linesync.core.ids import ChunkId, chunk_id
from linesync.protocol import codec, inline
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.framing import Frame
from linesync.protocol.schemas import InlineChunk
from linesync.server.metrics import Metrics
from linesync.server.model import ChunkLoc
from linesync.server.stores.base import MetadataStore
from linesync.server.stores.packs import ChunkStore, ChunkStoreError, Location, Record

ZERO_ID = bytes(32)
# Base chunks one upload may name in all (they are held in memory to decode it).
MAX_BASE_BYTES = 16 * 2**20
_READ_GROUP = 256  # chunks read from packs at a time while streaming a download


class ChunkService:
    def __init__(
        self, meta: MetadataStore, packs: ChunkStore, max_chunk: int, metrics: Metrics
    ) -> None:
        self.meta = meta
        self.packs = packs
        self.max_chunk = max_chunk
        self.metrics = metrics

    # -- reading -----------------------------------------------------------

    async def _read_locs(self, locs: Sequence[ChunkLoc]) -> list[bytes]:
        try:
            return await self.packs.read_many([Location(c.pack, c.offset, c.length) for c in locs])
        except ChunkStoreError as exc:
            raise LinesyncError(Code.UNAVAILABLE, f"chunk storage: {exc}") from exc

    async def raw(
        self, ns_id: int, ids: Sequence[ChunkId], max_bytes: int | None = None
    ) -> dict[ChunkId, bytes]:
        """Decompressed bytes of the chunks this namespace holds (others left out);
        refused when they would add up to more than ``max_bytes``."""
        found = await self.meta.locate(ns_id, list(dict.fromkeys(ids)))
        locs = list(found.values())
        if max_bytes is not None and sum(loc.raw_size for loc in locs) > max_bytes:
            raise LinesyncError(
                Code.PAYLOAD_TOO_LARGE,
                f"the base chunks of one request may add up to {max_bytes} bytes",
                limit=max_bytes,
            )
        payloads = await self._read_locs(locs)
        return {
            loc.chunk_id: codec.decode(loc.codec, p, None, self.max_chunk)
            for loc, p in zip(locs, payloads, strict=True)
        }

    async def fetch(
        self,
        ns_id: int,
        ids: Sequence[ChunkId],
        bases: Sequence[ChunkId | None],
        max_bytes: int,
    ) -> AsyncIterator[Frame]:
        """Frames for ``ids``, read from the packs a group at a time; each as a
        delta against its base where that is smaller. A chunk the namespace does
        not hold, or a total past ``max_bytes``, refuses the whole request before
        anything is sent."""
        found = await self.meta.locate(ns_id, list(dict.fromkeys(ids)))
        absent = [c for c in ids if c not in found]
        if absent:
            raise LinesyncError(
                Code.CHUNK_UNAVAILABLE, f"{len(absent)} chunk(s) not in this namespace"
            )
        locs = [found[c] for c in ids]
        total = sum(loc.length for loc in locs)
        if total > max_bytes:
            raise LinesyncError(
                Code.PAYLOAD_TOO_LARGE,
                f"these chunks add up to {total} bytes; ask for at most {max_bytes} at once",
                limit=max_bytes,
            )
        return self._frames(ns_id, locs, bases)

    async def _frames(
        self, ns_id: int, locs: Sequence[ChunkLoc], bases: Sequence[ChunkId | None]
    ) -> AsyncIterator[Frame]:
        for i in range(0, len(locs), _READ_GROUP):
            group, group_bases = locs[i : i + _READ_GROUP], bases[i : i + _READ_GROUP]
            wanted = [b for b in group_bases if b is not None]
            base_raw = await self.raw(ns_id, wanted) if wanted else {}
            payloads = await self._read_locs(group)
            for loc, payload, base in zip(group, payloads, group_bases, strict=True):
                braw = base_raw.get(base) if base is not None else None
                if braw is not None:
                    data = codec.decode(loc.codec, payload, None, self.max_chunk)
                    kind, enc = codec.encode(data, braw)
                    if kind is codec.Codec.ZSTD_DICT and base is not None:
                        yield Frame(loc.chunk_id, kind, (base,), enc)
                        continue
                yield Frame(loc.chunk_id, loc.codec, None, payload)
            self.metrics.inc("linesync_chunks_sent_total", len(group))

    # -- writing -----------------------------------------------------------

    async def verify(
        self, ns_id: int, frames: Sequence[Frame]
    ) -> list[tuple[ChunkId, bytes, Frame]]:
        """Decode every frame and check its bytes against its id; nothing is stored.
        The CPU work runs on a worker thread, so the server keeps serving others."""
        bases = [b for f in frames if f.base is not None for b in f.base]
        base_raw = await self.raw(ns_id, bases, MAX_BASE_BYTES) if bases else {}
        return await asyncio.to_thread(self._verify, frames, base_raw)

    def _verify(
        self, frames: Sequence[Frame], base_raw: dict[ChunkId, bytes]
    ) -> list[tuple[ChunkId, bytes, Frame]]:
        out: list[tuple[ChunkId, bytes, Frame]] = []
        for f in frames:
            base = None
            if f.base is not None:
                if sum(len(base_raw.get(b, b"")) for b in f.base) > inline.MAX_DICT:
                    raise LinesyncError(
                        Code.PAYLOAD_TOO_LARGE,
                        f"a chunk's base chunks add up to more than {inline.MAX_DICT} bytes",
                    )
                base = inline.join(f.base, base_raw.get)
                if base is None:
                    raise LinesyncError(
                        Code.CHUNK_UNAVAILABLE, "a base chunk is not in this namespace"
                    )
            data = codec.decode(f.codec, f.payload, base, self.max_chunk)
            cid = chunk_id(data)
            if f.chunk_id != ZERO_ID and cid != f.chunk_id:
                raise LinesyncError(
                    Code.CHUNK_MISMATCH,
                    f"chunk {f.chunk_id.hex()} does not match its bytes ({cid.hex()})",
                )
            out.append((cid, data, f))
        return out

    async def store(self, ns_id: int, verified: Sequence[tuple[ChunkId, bytes, Frame]]) -> None:
        """Write verified chunks (those not stored yet) and index them for ``ns_id``.
        Whether a chunk was stored already is never told to the client: that would
        let one user find out what another holds."""
        unique = {cid: (data, f) for cid, data, f in verified}
        stored = await self.meta.locate_stored(list(unique))
        records: list[Record] = []
        sizes: list[int] = []
        for cid, (data, f) in unique.items():
            if cid in stored:
                continue
            if f.codec == codec.Codec.ZSTD:
                kind, payload = codec.Codec.ZSTD, f.payload
                if len(payload) >= len(data):
                    kind, payload = codec.Codec.RAW, data
            else:
                kind, payload = codec.encode(data)
            records.append(Record(cid, int(kind), payload))
            sizes.append(len(data))
        if records:
            try:
                locs = await self.packs.append(records)
            except ChunkStoreError as exc:
                raise LinesyncError(Code.UNAVAILABLE, f"chunk storage: {exc}") from exc
            for rec, loc, size in zip(records, locs, sizes, strict=True):
                stored[rec.chunk_id] = ChunkLoc(
                    rec.chunk_id, loc.pack, loc.offset, loc.length, rec.codec, size
                )
        await self.meta.add_chunks(ns_id, [stored[cid] for cid in unique])
        self.metrics.inc("linesync_chunks_received_total", len(unique))
        # Bytes received, not bytes newly stored: /metrics must not tell what dedups.
        self.metrics.inc(
            "linesync_chunk_bytes_received_total", sum(len(d) for d, _ in unique.values())
        )

    # -- inline ------------------------------------------------------------

    def inline_frames(self, chunks: Sequence[InlineChunk]) -> list[Frame]:
        frames: list[Frame] = []
        for c in chunks:
            kind = codec.NAMES[c.codec]
            base = inline.base_ids(c)
            if (kind is codec.Codec.ZSTD_DICT) != (base is not None):
                raise LinesyncError(Code.BAD_REQUEST, "inline chunk: base goes with zstd-dict")
            frames.append(Frame(ZERO_ID, kind, base, inline.payload(c)))
        return frames

    async def inline_out(
        self, ns_id: int, pairs: Sequence[tuple[ChunkId, tuple[ChunkId, ...]]], budget: int
    ) -> list[InlineChunk]:
        """Encode chunks for a JSON body, each against its bases when given, within
        ``budget`` bytes of payload."""
        if budget <= 0 or not pairs:
            return []
        wanted = [c for c, _ in pairs] + [b for _, bases in pairs for b in bases]
        raw = await self.raw(ns_id, wanted)
        out: list[InlineChunk] = []
        for cid, bases in pairs:
            data = raw.get(cid)
            if data is None:
                continue
            total, keep = 0, 0
            for b in bases:
                total += len(raw.get(b, b""))
                if total > inline.MAX_DICT:
                    break
                keep += 1
            bases = bases[:keep]
            item = inline.encode(data, bases, inline.join(bases, raw.get) if bases else None)
            cost = len(item.data) * 3 // 4
            if cost > budget:
                break
            budget -= cost
            out.append(item)
        return out
