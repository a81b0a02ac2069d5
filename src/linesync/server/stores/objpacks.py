"""A `ChunkStore` of pack objects in a write-once `ObjectBackend` (S3 and the like).

Object stores have no append: every pack is one object, written whole by a
single PUT and never changed. The packer groups records so that small chunks
do not become one object (and one billed request) each:

- `append` queues its records and waits. When no PUT is in flight, whatever is
  queued goes out at once as one object; records that arrive while PUTs are in
  flight wait and share the next object (group commit). A full object (the
  pack size limit) goes out without waiting, up to `max_puts` PUTs at a time.
- A caller gets its locations once every object holding its records was
  stored; a failed PUT fails every caller with records in it (records of
  theirs already stored elsewhere stay unindexed, and GC removes such packs).

A pack object has the same bytes as a pack file (docs/FORMAT.md, "Packs"), so
`PackScan` reads it, and its name is a pack name, `p-SSSSSSSS-RRRRRRRR`, stored
as the object `packs/<name>.pack`. The sequence part is the creation time in
Unix seconds (kept increasing within a process, and started past every pack of
the current second that the backend lists), so names sort by creation time
across processes; the random part, and the backend's refusal to overwrite,
keep them unique.

Reads coalesce neighbouring records of one pack into one ranged GET (a larger
gap than on disk: a request costs more than the bytes in between) and keep
checked payloads in a byte-bounded LRU (`RecordCache`).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from linesync.server.stores.common import CacheStats
from linesync.server.stores.objects import (
    ObjectBackend,
    ObjectExistsError,
    ObjectNotFoundError,
    RequestStats,
    open_object_backend,
)
from linesync.server.stores.packs import (
    PACK_HEADER,
    PACK_MAGIC,
    PACK_NAME_RE,
    PACK_VERSION,
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
DEFAULT_OBJECT_PACK_LIMIT = 8 * MiB  # two 4 MiB upload flushes, and a GET reads any of it
DEFAULT_CACHE_BYTES = 64 * MiB
DEFAULT_READ_GAP = 1 * MiB  # obstore's own coalescing default: a request costs ~ 1 MiB
DEFAULT_READ_SPAN = 8 * MiB
DEFAULT_MAX_PUTS = 4
PACK_PREFIX = "packs/"  # where pack objects live in the backend
PACK_SUFFIX = ".pack"
_MAX_OBJECT = 1 << 40  # no location lies beyond this
_WAVE_BYTES = 32 * MiB  # bytes of ranged reads one read_many has in flight at most
_WAVE_READS = 64  # ... and ranged reads
_ENTRY_COST = 200  # bytes of bookkeeping charged to the cache per entry
_HEADER = PACK_HEADER.pack(PACK_MAGIC, PACK_VERSION, 0)


def object_name(pack: str) -> str:
    """The backend object of a pack; ChunkStoreError for a name that is not a pack's."""
    if not isinstance(pack, str) or PACK_NAME_RE.fullmatch(pack) is None:
        raise ChunkStoreError(f"invalid pack name: {pack!r}")
    return PACK_PREFIX + pack + PACK_SUFFIX


class RecordCache:
    """Checked payloads by location, least recently used out first, holding at
    most `max_bytes` (each entry costs its payload plus `_ENTRY_COST`).

    Records rather than blocks of packs: what is held is exactly what was
    asked for and checked, a hit needs no CRC again, and a location says
    exactly what to look up (a location is immutable: a pack is written once).
    A payload over an eighth of the bound is not kept, so one large chunk
    cannot flush the cache. `max_bytes=0` disables it.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("cache size must be >= 0")
        self._data: OrderedDict[Location, bytes] = OrderedDict()
        self.stats = CacheStats(max_bytes=max_bytes)

    def get(self, loc: Location) -> bytes | None:
        data = self._data.get(loc)
        if data is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
            self._data.move_to_end(loc)
        return data

    def put(self, loc: Location, data: bytes) -> None:
        cost = len(data) + _ENTRY_COST
        if cost > self.stats.max_bytes // 8 or loc in self._data:
            return
        self._data[loc] = data
        self.stats.fills += 1
        self.stats.bytes += cost
        while self.stats.bytes > self.stats.max_bytes:
            _, old = self._data.popitem(last=False)
            self.stats.bytes -= len(old) + _ENTRY_COST
            self.stats.evictions += 1
        self.stats.entries = len(self._data)

    def forget(self, pack: str) -> None:
        for loc in [loc for loc in self._data if loc.pack == pack]:
            self.stats.bytes -= len(self._data.pop(loc)) + _ENTRY_COST
        self.stats.entries = len(self._data)


@dataclass(eq=False)
class _Job:
    """One append call: its records, and how far the packer got with them."""

    records: list[Record]
    heads: list[bytes]
    future: asyncio.Future[list[Location]]
    locs: list[Location] = field(default_factory=list)
    cut: int = 0  # records[:cut] are in objects
    pending: int = 0  # objects holding some of them whose PUT has not ended

    def size(self, i: int) -> int:
        return len(self.heads[i]) + len(self.records[i].payload)


@dataclass(eq=False)
class _Object:
    parts: list[bytes] = field(default_factory=lambda: [_HEADER])
    size: int = PACK_HEADER.size
    entries: list[tuple[_Job, int, int]] = field(default_factory=list)  # job, record, offset
    jobs: list[_Job] = field(default_factory=list)


class ObjectPackStore:
    """A `ChunkStore` of write-once pack objects in `backend` (see the module doc).

    An object holds at most `pack_size_limit` bytes, header included (a record
    larger than that gets an object of its own). `current_pack` is always None:
    nothing is ever appended to an existing object. The store owns `backend`
    and closes it. Counters: `request_stats` (the backend's requests) and
    `cache_stats`; `objects_written` and `records_written` for the packer.
    """

    def __init__(
        self,
        backend: ObjectBackend,
        pack_size_limit: int = DEFAULT_OBJECT_PACK_LIMIT,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        max_puts: int = DEFAULT_MAX_PUTS,
        read_gap: int = DEFAULT_READ_GAP,
        read_span: int = DEFAULT_READ_SPAN,
    ) -> None:
        if pack_size_limit <= PACK_HEADER.size:
            raise ValueError("pack_size_limit is too small")
        if max_puts < 1:
            raise ValueError("max_puts must be >= 1")
        self.backend = backend
        self._limit, self._max_puts = pack_size_limit, max_puts
        self._read_gap, self._read_span = read_gap, read_span
        self._cache = RecordCache(cache_bytes)
        self._queue: deque[_Job] = deque()
        self._queued = 0  # bytes of records queued and not yet in an object
        self._inflight = 0  # PUTs
        self._tasks: set[asyncio.Task[None]] = set()
        self._seq: int | None = None
        self._seq_lock = asyncio.Lock()
        self._closed = False
        self.objects_written = 0
        self.records_written = 0

    @property
    def current_pack(self) -> str | None:
        return None  # objects are written whole: GC may rewrite or delete any pack

    @property
    def request_stats(self) -> RequestStats:
        return self.backend.stats

    @property
    def cache_stats(self) -> CacheStats:
        return self._cache.stats

    def _check_open(self) -> None:
        if self._closed:
            raise ChunkStoreError("store is closed")

    # -- writing ------------------------------------------------------------------

    async def append(self, records: Sequence[Record]) -> list[Location]:
        self._check_open()
        batch = list(records)
        if not batch:
            return []
        heads = [encode_record_header(rec) for rec in batch]  # validates before any I/O
        if self._seq is None:
            async with self._seq_lock:
                if self._seq is None:
                    self._seq = await self._first_sequence()
        self._check_open()
        job = _Job(batch, heads, asyncio.get_running_loop().create_future())
        job.locs = [Location("", 0, 0)] * len(batch)
        self._queue.append(job)
        self._queued += sum(job.size(i) for i in range(len(batch)))
        self._kick()
        return await job.future

    async def _first_sequence(self) -> int:
        """One LIST, of the packs named for this second or later (only those can
        sort after a new name taken from the clock)."""
        now = int(time.time())
        newer = await self.backend.list(PACK_PREFIX, after=f"{PACK_PREFIX}p-{now:08x}")
        seqs = [now - 1]
        for name, _ in newer:
            m = PACK_NAME_RE.fullmatch(name[len(PACK_PREFIX) :].removesuffix(PACK_SUFFIX))
            if m is not None:
                seqs.append(int(m[1], 16))
        return max(seqs)

    def _new_name(self) -> str:
        assert self._seq is not None
        self._seq = min(max(self._seq + 1, int(time.time())), 0xFFFFFFFF)
        return f"p-{self._seq:08x}-{secrets.token_hex(4)}"

    def _kick(self) -> None:
        """Start the PUTs that may start now (runs on the event loop, never waits)."""
        while (
            self._queue
            and self._inflight < self._max_puts
            and (self._inflight == 0 or self._queued >= self._limit - PACK_HEADER.size)
        ):
            obj = self._cut()
            if not obj.entries:
                continue
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._put(obj))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _cut(self) -> _Object:
        """The next object: queued records, in order, up to the size limit."""
        obj = _Object()
        while self._queue:
            job = self._queue[0]
            if job.future.done():  # failed or cancelled: write no more of it
                self._queue.popleft()
                self._queued -= sum(job.size(i) for i in range(job.cut, len(job.records)))
                continue
            need = job.size(job.cut)
            if obj.entries and obj.size + need > self._limit:
                break
            obj.entries.append((job, job.cut, obj.size + len(job.heads[job.cut])))
            obj.parts += (job.heads[job.cut], job.records[job.cut].payload)
            obj.size += need
            self._queued -= need
            if not obj.jobs or obj.jobs[-1] is not job:
                obj.jobs.append(job)
                job.pending += 1
            job.cut += 1
            if job.cut == len(job.records):
                self._queue.popleft()
        return obj

    async def _put(self, obj: _Object) -> None:
        try:
            body = b"".join(obj.parts)
            obj.parts = []
            pack = await self._put_new(body)
        except BaseException as exc:
            error = exc if isinstance(exc, ChunkStoreError) else ChunkStoreError(f"{exc!r}")
            for job in obj.jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
        else:
            self.objects_written += 1
            self.records_written += len(obj.entries)
            for job, i, offset in obj.entries:
                job.locs[i] = Location(pack, offset, len(job.records[i].payload))
            for job in obj.jobs:
                job.pending -= 1
                if job.pending == 0 and job.cut == len(job.records) and not job.future.done():
                    job.future.set_result(job.locs)
        finally:
            self._inflight -= 1
            self._kick()

    async def _put_new(self, body: bytes) -> str:
        for _ in range(3):
            pack = self._new_name()
            try:
                await self.backend.put(object_name(pack), body)
            except ObjectExistsError:
                continue  # another process took the name: 32 random bits make this rare
            return pack
        raise ChunkStoreError("no free pack name after 3 tries")

    # -- reading ------------------------------------------------------------------

    async def read(self, loc: Location) -> bytes:
        return (await self.read_many([loc]))[0]

    async def read_many(self, locs: Sequence[Location]) -> list[bytes]:
        self._check_open()
        out = [b""] * len(locs)
        by_pack: dict[str, list[int]] = {}
        for i, loc in enumerate(locs):
            hit = self._cache.get(loc)
            if hit is None:
                by_pack.setdefault(loc.pack, []).append(i)
            else:
                out[i] = hit
        reads: list[tuple[str, int, int, list[int]]] = []  # pack, start, end, indexes
        for pack, idxs in by_pack.items():
            object_name(pack)
            spans = plan_reads(
                [locs[i] for i in idxs], _MAX_OBJECT, self._read_gap, self._read_span
            )
            reads += ((pack, start, end, [idxs[j] for j in js]) for start, end, js in spans)
        wave: list[tuple[str, int, int, list[int]]] = []
        wave_bytes = 0
        for n, item in enumerate(reads):  # in waves, so a huge or hostile call stays bounded
            wave.append(item)
            wave_bytes += item[2] - item[1]
            if wave_bytes >= _WAVE_BYTES or len(wave) >= _WAVE_READS or n == len(reads) - 1:
                await self._read_wave(wave, locs, out)
                wave, wave_bytes = [], 0
        return out

    async def _read_wave(
        self,
        wave: list[tuple[str, int, int, list[int]]],
        locs: Sequence[Location],
        out: list[bytes],
    ) -> None:
        by_pack: dict[str, list[tuple[int, int, list[int]]]] = {}
        for pack, start, end, idxs in wave:
            by_pack.setdefault(pack, []).append((start, end, idxs))

        async def one(pack: str, spans: list[tuple[int, int, list[int]]]) -> None:
            ranges = [(start, end - start) for start, end, _ in spans]
            try:
                bufs = await self.backend.get_ranges(object_name(pack), ranges)
            except ObjectNotFoundError:
                raise ObjectNotFoundError(f"no such pack: {pack}") from None
            for (start, _, idxs), buf in zip(spans, bufs, strict=True):
                for i in idxs:
                    loc = locs[i]
                    if loc.offset + loc.length - start > len(buf):
                        raise ChunkStoreError(f"location out of range: {loc}")
                    out[i] = check_record(buf, start, loc)
                    self._cache.put(loc, out[i])

        await asyncio.gather(*(one(pack, spans) for pack, spans in by_pack.items()))

    async def list_packs(self) -> list[PackInfo]:
        self._check_open()
        out: list[PackInfo] = []
        for name, size in await self.backend.list(PACK_PREFIX):
            pack = name[len(PACK_PREFIX) :].removesuffix(PACK_SUFFIX)
            if name.endswith(PACK_SUFFIX) and PACK_NAME_RE.fullmatch(pack):
                out.append(PackInfo(pack, size))
        return sorted(out)

    def scan(self, pack: str) -> PackScan:
        key = object_name(pack)

        async def read_at(offset: int, n: int) -> bytes:
            self._check_open()
            try:
                return await self.backend.get_range(key, offset, n)
            except ObjectNotFoundError:
                raise ObjectNotFoundError(f"no such pack: {pack}") from None

        return PackScan(pack, read_at)

    async def delete_pack(self, pack: str) -> None:
        key = object_name(pack)
        self._check_open()
        self._cache.forget(pack)
        await self.backend.delete(key)

    async def close(self) -> None:
        """Finish the appends already made (their callers wait for them), then
        release the backend; later calls raise ChunkStoreError. Idempotent."""
        if self._closed:
            return
        self._closed = True
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.backend.close()


def open_chunk_store(
    url: str,
    *,
    pack_size_limit: int = DEFAULT_OBJECT_PACK_LIMIT,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> ObjectPackStore:
    """An `ObjectPackStore` on the backend `url` names (see `open_object_backend`):
    ``s3://BUCKET?endpoint=...&region=...&prefix=...`` or ``file:///path``."""
    return ObjectPackStore(
        open_object_backend(url), pack_size_limit=pack_size_limit, cache_bytes=cache_bytes
    )
