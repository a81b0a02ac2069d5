"""Chunk upload, download and inline transfer, verified against their ids.

A chunk enters a namespace only after its bytes hashed to its id; it is
stored zstd-compressed (or raw when that is smaller) in a pack, and indexed
as held by that namespace. Reads go through the namespace's holdings only.

Every request is bounded while it streams, not after: an upload is decoded
frame by frame and keeps only what it will store (see :class:`Intake`); a
download reads the packs a few MiB at a time; the CPU work (decoding,
hashing, compressing against bases) runs on worker threads and is bounded
per request (see :class:`Work`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import zstandard

from linesync.core.ids import ChunkId, chunk_id
from linesync.protocol import codec, inline
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.framing import Frame
from linesync.protocol.schemas import InlineChunk
from linesync.server.config import ServerConfig
from linesync.server.metrics import Metrics
from linesync.server.model import ChunkLoc
from linesync.server.stores.base import MetadataStore
from linesync.server.stores.packs import ChunkStore, ChunkStoreError, Location, Record

T = TypeVar("T")
ZERO_ID = bytes(32)
# Records an upload writes to the packs at a time (they are indexed at its end).
FLUSH_BYTES = 4 * 2**20
# Stored bytes (and at most this many chunks) read from the packs at a time
# while a download streams.
READ_BYTES = 4 * 2**20
READ_CHUNKS = 256
# Prepared dictionaries one request keeps at a time.
KEEP_COMPRESSORS = 4


class Work:
    """Bytes of CPU work one request may still spend on compressing against
    bases: a base costs its size when it is loaded (and again whenever its
    dictionary must be prepared again), each chunk compressed against one its
    own size. Past the budget, chunks go as stored: the answer stays right,
    only less small."""

    def __init__(self, budget: int) -> None:
        self.left = budget
        self.compressors: dict[tuple[ChunkId, ...], zstandard.ZstdCompressor] = {}
        self.prepared: set[tuple[ChunkId, ...]] = set()

    def spend(self, n: int) -> bool:
        if n > self.left:
            return False
        self.left -= n
        return True

    def compressor(self, key: tuple[ChunkId, ...], base: bytes) -> zstandard.ZstdCompressor | None:
        """A prepared compressor for ``base``, or None if the budget cannot pay for
        it. The last few are kept (each holds tables several times its base's
        size); the first of each base was paid for when the base was loaded, one
        prepared again (a request that cycles through many bases) costs its size
        again."""
        found = self.compressors.pop(key, None)
        if found is None:
            if key in self.prepared and not self.spend(len(base)):
                return None
            self.prepared.add(key)
            found = codec.dict_compressor(base)
            if len(self.compressors) >= KEEP_COMPRESSORS:
                del self.compressors[next(iter(self.compressors))]
        self.compressors[key] = found
        return found


class ChunkService:
    def __init__(
        self, meta: MetadataStore, packs: ChunkStore, config: ServerConfig, metrics: Metrics
    ) -> None:
        self.meta = meta
        self.packs = packs
        self.config = config
        self.max_chunk = config.max_chunk
        self.metrics = metrics

    # -- reading -----------------------------------------------------------

    async def _read_locs(self, locs: Sequence[ChunkLoc]) -> list[bytes]:
        try:
            return await self.packs.read_many([Location(c.pack, c.offset, c.length) for c in locs])
        except ChunkStoreError as exc:
            raise LinesyncError(Code.UNAVAILABLE, f"chunk storage: {exc}") from exc

    async def _raw(self, locs: Sequence[ChunkLoc]) -> dict[ChunkId, bytes]:
        """Decompressed bytes of these chunks (decoded on a worker thread)."""
        payloads = await self._read_locs(locs)

        def decode() -> dict[ChunkId, bytes]:
            return {
                loc.chunk_id: codec.decode(loc.codec, p, None, self.max_chunk)
                for loc, p in zip(locs, payloads, strict=True)
            }

        return await asyncio.to_thread(decode)

    async def fetch(
        self,
        ns_id: int,
        ids: Sequence[ChunkId],
        bases: Sequence[ChunkId | None],
        max_bytes: int,
        available: bool = False,
    ) -> AsyncIterator[Frame]:
        """Frames for ``ids``, read from the packs a few MiB at a time; each as a
        delta against its base where that is smaller and the request's work
        budget allows. A chunk the namespace does not hold, or a total past
        ``max_bytes``, refuses the whole request before anything is sent;
        ``available``: those it holds are sent (within ``max_bytes``), the
        others left out (an upload in progress)."""
        found = await self.meta.locate(ns_id, list(dict.fromkeys(ids)))
        absent = [c for c in ids if c not in found]
        if absent and available:
            keep = [i for i, c in enumerate(ids) if c in found]
            ids, bases = [ids[i] for i in keep], [bases[i] for i in keep]
        elif absent:
            raise LinesyncError(
                Code.CHUNK_UNAVAILABLE, f"{len(absent)} chunk(s) not in this namespace"
            )
        locs = [found[c] for c in ids]
        total = sum(loc.length for loc in locs)
        while available and total > max_bytes:
            total -= locs.pop().length
        if total > max_bytes:
            raise LinesyncError(
                Code.PAYLOAD_TOO_LARGE,
                f"these chunks add up to {total} bytes; ask for at most {max_bytes} at once",
                limit=max_bytes,
            )
        return self._frames(ns_id, locs, bases, Work(self.config.max_recompress_bytes))

    async def _frames(
        self,
        ns_id: int,
        locs: Sequence[ChunkLoc],
        bases: Sequence[ChunkId | None],
        work: Work,
    ) -> AsyncIterator[Frame]:
        held: dict[ChunkId, bytes] = {}  # bases loaded so far
        for group in _groups(range(len(locs)), lambda i: locs[i].length):
            glocs = [locs[i] for i in group]
            gbases = await self._afford(ns_id, glocs, [bases[i] for i in group], held, work)
            payloads = await self._read_locs(glocs)
            frames = await asyncio.to_thread(
                self._against_bases, glocs, payloads, gbases, held, work
            )
            for f in frames:
                yield f
            self.metrics.inc("linesync_chunks_sent_total", len(frames))

    async def _load(
        self, ns_id: int, wanted: Iterable[ChunkId], held: dict[ChunkId, bytes], work: Work
    ) -> None:
        """Add to ``held`` the chunks of ``wanted`` this namespace holds, as far as
        the work budget goes (each costs its size once)."""
        new = [c for c in dict.fromkeys(wanted) if c not in held]
        if not new:
            return
        found = await self.meta.locate(ns_id, new)
        take = [loc for loc in found.values() if work.spend(loc.raw_size)]
        held.update(await self._raw(take))

    async def _afford(
        self,
        ns_id: int,
        locs: Sequence[ChunkLoc],
        bases: Sequence[ChunkId | None],
        held: dict[ChunkId, bytes],
        work: Work,
    ) -> list[ChunkId | None]:
        """The bases of a group the work budget pays for (None for the others),
        loaded into ``held``: base by base in order of first use, each costing
        its size (once per request) plus the chunks compressed against it, so
        the budget buys whole deltas, never a base without its chunks."""
        chunk_bytes: dict[ChunkId, int] = {}
        for loc, base in zip(locs, bases, strict=True):
            if base is not None:
                chunk_bytes[base] = chunk_bytes.get(base, 0) + loc.raw_size
        new = [b for b in chunk_bytes if b not in held]
        sizes = await self.meta.locate(ns_id, new) if new else {}
        paid: set[ChunkId] = set()
        for base, n in chunk_bytes.items():
            if base in held or base in sizes:  # else not in this namespace: ignored
                cost = n + (0 if base in held else sizes[base].raw_size)
                if work.spend(cost):
                    paid.add(base)
        held.update(await self._raw([sizes[b] for b in paid if b not in held]))
        return [b if b in paid else None for b in bases]

    def _against_bases(
        self,
        locs: Sequence[ChunkLoc],
        payloads: Sequence[bytes],
        bases: Sequence[ChunkId | None],
        held: dict[ChunkId, bytes],
        work: Work,
    ) -> list[Frame]:
        out: list[Frame] = []
        for loc, payload, base in zip(locs, payloads, bases, strict=True):
            braw = held.get(base) if base is not None else None
            cctx = work.compressor((base,), braw) if base is not None and braw else None
            if base is not None and cctx is not None:
                data = codec.decode(loc.codec, payload, None, self.max_chunk)
                enc = cctx.compress(data)
                if len(enc) < len(payload):
                    out.append(Frame(loc.chunk_id, codec.Codec.ZSTD_DICT, (base,), enc))
                    continue
            out.append(Frame(loc.chunk_id, loc.codec, None, payload))
        return out

    # -- writing -----------------------------------------------------------

    def intake(self, ns_id: int, max_decoded: int) -> Intake:
        return Intake(self, ns_id, max_decoded)

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
        self,
        ns_id: int,
        pairs: Sequence[tuple[ChunkId, tuple[ChunkId, ...]]],
        budget: int,
        work: Work,
    ) -> list[InlineChunk]:
        """Encode chunks for a JSON body, each against its bases when given, within
        ``budget`` bytes of payload; loading and compressing them is paid from
        ``work``, and what it cannot pay for is left out (the client fetches it)."""
        if budget <= 0 or not pairs:
            return []
        held: dict[ChunkId, bytes] = {}
        out: list[InlineChunk] = []
        for group in _groups(pairs, lambda p: 1 + len(p[1]), READ_CHUNKS):
            await self._load(ns_id, [i for c, bases in group for i in (c, *bases)], held, work)
            got, budget = await asyncio.to_thread(self._encode_inline, group, held, budget, work)
            out.extend(got)
            if budget <= 0 or len(got) < len(group):
                break
        return out

    @staticmethod
    def _encode_inline(
        pairs: Sequence[tuple[ChunkId, tuple[ChunkId, ...]]],
        held: dict[ChunkId, bytes],
        budget: int,
        work: Work,
    ) -> tuple[list[InlineChunk], int]:
        out: list[InlineChunk] = []
        for cid, bases in pairs:
            data = held.get(cid)
            if data is None:
                break  # not loaded: the work budget ran out
            total, keep = 0, 0
            for b in bases:
                total += len(held.get(b, b""))
                if total > inline.MAX_DICT:
                    break
                keep += 1
            bases = bases[:keep]
            base = inline.join(bases, held.get) if bases else None
            cctx = work.compressor(bases, base) if base and work.spend(len(data)) else None
            if cctx is None:
                base, bases = None, ()
            item = inline.encode(data, bases, base, cctx)
            cost = len(item.data) * 3 // 4
            if cost > budget:
                break
            budget -= cost
            out.append(item)
        return out, budget


class Intake:
    """The chunks of one request, as they arrive: each decoded, checked against
    its id and counted against the request's budget, then kept in its stored
    form only (the decoded bytes are dropped at once).

    Records go to the packs a few MiB at a time; the namespace holds them only
    when :meth:`finish` indexes them all, so a request refused half-way leaves
    nothing a client can see (its bytes in the packs are garbage that pack
    compaction removes). Every chunk is written, also one the server already
    stores for another namespace: an upload takes as long whether or not
    anyone else holds the same bytes (docs/PROTOCOL.md, "What a user can learn").
    """

    def __init__(self, service: ChunkService, ns_id: int, max_decoded: int) -> None:
        self.service = service
        self.ns_id = ns_id
        self.max_decoded = max_decoded
        self.decoded = 0  # bytes every frame so far decoded to
        self.bases: dict[ChunkId, bytes] = {}
        self.base_bytes = 0
        self.pending: dict[ChunkId, tuple[Record, int]] = {}
        self.pending_bytes = 0
        self.written: dict[ChunkId, ChunkLoc] = {}

    async def add(self, frames: Sequence[Frame]) -> None:
        if not frames:
            return
        await self._load_bases(frames)
        decoded = await asyncio.to_thread(self._decode, frames)
        for cid, record, size in decoded:
            if cid in self.written or cid in self.pending:
                continue
            self.pending[cid] = (record, size)
            self.pending_bytes += len(record.payload)
        if self.pending_bytes >= FLUSH_BYTES:
            await self._flush()

    async def finish(self) -> tuple[int, int]:
        """Index every chunk for the namespace; (chunks, their decoded bytes)."""
        await self._flush()
        await self.service.meta.add_chunks(self.ns_id, list(self.written.values()))
        size = sum(loc.raw_size for loc in self.written.values())
        metrics = self.service.metrics
        metrics.inc("linesync_chunks_received_total", len(self.written))
        # Bytes received, not bytes newly stored: /metrics must not tell what dedups.
        metrics.inc("linesync_chunk_bytes_received_total", size)
        return len(self.written), size

    async def _load_bases(self, frames: Sequence[Frame]) -> None:
        wanted = [b for f in frames if f.base is not None for b in f.base if b not in self.bases]
        if not wanted:
            return
        found = await self.service.meta.locate(self.ns_id, list(dict.fromkeys(wanted)))
        self.base_bytes += sum(loc.raw_size for loc in found.values())
        limit = self.service.config.max_base_bytes
        if self.base_bytes > limit:
            raise LinesyncError(
                Code.PAYLOAD_TOO_LARGE,
                f"the base chunks of one request may add up to {limit} bytes",
                limit=limit,
            )
        self.bases.update(await self.service._raw(list(found.values())))

    def _decode(self, frames: Sequence[Frame]) -> list[tuple[ChunkId, Record, int]]:
        """On a worker thread: decode, count, verify; the stored form of each."""
        out: list[tuple[ChunkId, Record, int]] = []
        for f in frames:
            base = None
            if f.base is not None:
                if sum(len(self.bases.get(b, b"")) for b in f.base) > inline.MAX_DICT:
                    raise LinesyncError(
                        Code.PAYLOAD_TOO_LARGE,
                        f"a chunk's base chunks add up to more than {inline.MAX_DICT} bytes",
                    )
                base = inline.join(f.base, self.bases.get)
                if base is None:
                    raise LinesyncError(
                        Code.CHUNK_UNAVAILABLE, "a base chunk is not in this namespace"
                    )
            data = codec.decode(f.codec, f.payload, base, self.service.max_chunk)
            self.decoded += len(data)
            if self.decoded > self.max_decoded:
                raise LinesyncError(
                    Code.PAYLOAD_TOO_LARGE,
                    f"the chunks of one request may decompress to {self.max_decoded} bytes "
                    "in all; send them in smaller batches",
                    limit=self.max_decoded,
                )
            cid = chunk_id(data)
            if f.chunk_id != ZERO_ID and cid != f.chunk_id:
                raise LinesyncError(
                    Code.CHUNK_MISMATCH,
                    f"chunk {f.chunk_id.hex()} does not match its bytes ({cid.hex()})",
                )
            if f.codec == codec.Codec.ZSTD and len(f.payload) < len(data):
                kind, payload = codec.Codec.ZSTD, f.payload
            elif f.codec == codec.Codec.RAW:
                kind, payload = codec.Codec.RAW, data
            else:
                kind, payload = codec.encode(data)
            out.append((cid, Record(cid, int(kind), payload), len(data)))
        return out

    async def _flush(self) -> None:
        if not self.pending:
            return
        items = list(self.pending.items())
        self.pending, self.pending_bytes = {}, 0
        try:
            locs = await self.service.packs.append([rec for _, (rec, _) in items])
        except ChunkStoreError as exc:
            raise LinesyncError(Code.UNAVAILABLE, f"chunk storage: {exc}") from exc
        for (cid, (rec, size)), loc in zip(items, locs, strict=True):
            self.written[cid] = ChunkLoc(cid, loc.pack, loc.offset, loc.length, rec.codec, size)


def _groups(
    items: Iterable[T], size: Callable[[T], int], limit: int = READ_BYTES
) -> Iterator[list[T]]:
    """``items`` in groups of at most READ_CHUNKS, each of at most ``limit`` in
    ``size`` (an item bigger than that alone)."""
    group: list[T] = []
    total = 0
    for item in items:
        n = size(item)
        if group and (total + n > limit or len(group) >= READ_CHUNKS):
            yield group
            group, total = [], 0
        group.append(item)
        total += n
    if group:
        yield group
