"""Where the bytes of a chunk come from when a file is rebuilt: what was
fetched ahead (prefetched, or streamed while it was uploaded), local files,
the chunk cache, and only then the server, in batches, each chunk compressed
against a chunk the client already has."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from linesync.client.filesystem import FileSystem
from linesync.client.index import Index
from linesync.client.remote import Remote
from linesync.client.streaming import Streams
from linesync.client.tasks import gather_all
from linesync.core.ids import ChunkId, chunk_id
from linesync.protocol import codec
from linesync.protocol.errors import Code, LinesyncError

FETCH_BATCH = 512  # chunks per download request
MAX_CHUNK = 2**20
PACKED_MAX = 64 * 2**20
MAX_SPAN = 16 * 2**20  # bytes of a local file read at once for its chunks


class ChunkSource:
    def __init__(self, index: Index, fs: FileSystem, remote: Remote, ns: int) -> None:
        self.index = index
        self.fs = fs
        self.remote = remote
        self.ns = ns
        self.fetched_bytes = 0
        self.pool: dict[ChunkId, bytes] = {}  # prefetched for the downloads at hand
        # Chunks as they came or went, compressed as the cache keeps them
        # (see Index.cache_put); filled up to PACKED_MAX bytes, cleared with the pool.
        self.packed: dict[ChunkId, bytes] = {}
        self.packed_bytes = 0
        self.streams: Streams | None = None  # big files fetched while uploaded elsewhere

    def local(self, cid: ChunkId) -> bytes | None:
        """A chunk from the prefetch pool, the cache or a local file that still holds it."""
        data = self.pool.get(cid)
        if data is not None:
            return data
        data = self.index.cache_get(cid)
        if data is not None:
            return data
        for path, offset, length in self.index.find_chunks([cid]).get(cid, []):
            piece = self.fs.read_range(path, offset, length)
            if piece is not None and chunk_id(piece) == cid:
                return piece
        return None

    def local_many(self, ids: Iterable[ChunkId]) -> dict[ChunkId, bytes]:
        """:meth:`local` for many chunks, in a few index queries: local files
        first (read once per file, each chunk checked against its id: a file
        edited since gives the cache its turn), then the cache."""
        have: dict[ChunkId, bytes] = {}
        rest: list[ChunkId] = []
        for cid in dict.fromkeys(ids):
            data = self.pool.get(cid)
            if data is None:
                rest.append(cid)
            else:
                have[cid] = data
        if rest and self.streams is not None:
            have.update(self.streams.read_many(rest))
            rest = [c for c in rest if c not in have]
        if not rest:
            return have
        places = self.index.find_chunks(rest)
        by_path: dict[str, list[tuple[ChunkId, int, int]]] = {}
        for cid, where in places.items():
            path, offset, length = where[0]
            by_path.setdefault(path, []).append((cid, offset, length))
        for path, found in by_path.items():
            have.update(self._read_chunks(path, found))
        for cid, more in places.items():  # chunks also found elsewhere
            for path, offset, length in more[1:] if cid not in have else ():
                have.update(self._read_chunks(path, [(cid, offset, length)]))
                if cid in have:
                    break
        rest = [c for c in rest if c not in have]
        if rest:
            have.update(self.index.cache_get_many(rest))
        return have

    def _read_chunks(
        self, path: str, found: list[tuple[ChunkId, int, int]]
    ) -> dict[ChunkId, bytes]:
        """The chunks of one local file that still hold what their ids say: the
        span they lie in read at once when it is not much more than they are."""
        start = min(o for _, o, _ in found)
        end = max(o + n for _, o, n in found)
        needed = sum(n for _, _, n in found)
        out: dict[ChunkId, bytes] = {}
        if end - start <= max(2 * needed, 2**16) and end - start <= MAX_SPAN:
            span = self.fs.read_range(path, start, end - start)
            if span is None:
                return out
            view = memoryview(span)
            for cid, o, n in found:
                piece = view[o - start : o - start + n]
                if len(piece) == n and chunk_id(piece) == cid:
                    out[cid] = bytes(piece)
            return out
        for cid, o, n in found:
            data = self.fs.read_range(path, o, n)
            if data is not None and chunk_id(data) == cid:
                out[cid] = data
        return out

    def keep_packed(self, cid: ChunkId, payload: bytes) -> None:
        """Keep a plain zstd payload that decodes (in one frame) to chunk ``cid``."""
        if self.packed_bytes < PACKED_MAX and codec.names_its_size(payload):
            self.packed[cid] = payload
            self.packed_bytes += len(payload)

    def clear(self) -> None:
        self.pool.clear()
        self.packed.clear()
        self.packed_bytes = 0

    async def prefetch(
        self, ids: Iterable[ChunkId], bases: dict[ChunkId, ChunkId], concurrency: int = 4
    ) -> None:
        """Fetch the chunks of many files at once, several batches in flight."""
        ids = list(dict.fromkeys(ids))
        near = self.local_many(ids)
        self.pool.update(near)
        want = [c for c in ids if c not in near]
        batches = [want[i : i + FETCH_BATCH] for i in range(0, len(want), FETCH_BATCH)]
        gate = asyncio.Semaphore(concurrency)

        async def one(batch: list[ChunkId]) -> None:
            async with gate:
                self.pool.update(await self.get(batch, bases))

        await gather_all(*(one(b) for b in batches))

    async def get(
        self,
        ids: Iterable[ChunkId],
        bases: dict[ChunkId, ChunkId] | None = None,
        for_cache: bool = True,
    ) -> dict[ChunkId, bytes]:
        """Every chunk in ``ids``, verified. ``bases`` names, per chunk, an old
        chunk the client holds, for a download that costs about what changed.
        ``for_cache``: keep their compressed form for the cache (see ``packed``)."""
        ids = list(dict.fromkeys(ids))
        have = self.local_many(ids)
        want = [c for c in ids if c not in have]
        for i in range(0, len(want), FETCH_BATCH):
            batch = want[i : i + FETCH_BATCH]
            wanted = {cid: b for cid in batch if (b := (bases or {}).get(cid)) is not None}
            base_bytes = self.local_many(wanted.values()) if wanted else {}
            base_ids = [b if (b := wanted.get(cid)) in base_bytes else None for cid in batch]
            frames = await self.remote.fetch(self.ns, batch, base_ids)
            for f in frames:
                base = None
                if f.base is not None:
                    base = b"".join(base_bytes.get(b) or have.get(b) or b"" for b in f.base)
                data = codec.decode(f.codec, f.payload, base, MAX_CHUNK)
                if chunk_id(data) != f.chunk_id:
                    raise LinesyncError(Code.CHUNK_MISMATCH, "the server sent a corrupt chunk")
                if for_cache and f.codec == codec.Codec.ZSTD:
                    self.keep_packed(f.chunk_id, f.payload)
                self.fetched_bytes += len(f.payload)
                have[f.chunk_id] = data
        missing = [c for c in want if c not in have]
        if missing:
            raise LinesyncError(Code.CHUNK_UNAVAILABLE, f"{len(missing)} chunk(s) did not arrive")
        return have


def assemble(ids: Sequence[ChunkId], have: dict[ChunkId, bytes]) -> list[bytes]:
    return [have[c] for c in ids]
