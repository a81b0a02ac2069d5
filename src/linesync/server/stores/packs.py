"""Chunk storage in append-only pack files, and the `ChunkStore` interface.

Chunks are appended as records to pack files, never stored one file each. The
chunk -> `Location` index lives in the metadata store: this module writes
records (returning where each landed) and reads them back by location.
Byte layout and write ordering: docs/FORMAT.md, "Packs".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, TypeVar

from linesync.core.ids import ID_SIZE

PACK_MAGIC = b"LSPACK01"
PACK_VERSION = 1
PACK_HEADER = struct.Struct(">8sII")  # magic, format version, reserved (0)
RECORD_MAGIC = b"LR"
RECORD_HEADER = struct.Struct(">2s32sBII")  # magic, chunk id, codec, payload length, crc32
_CRC_PREFIX = RECORD_HEADER.size - 4  # the CRC covers the header bytes before it, then the payload
MAX_PAYLOAD = 0xFFFFFFFF
DEFAULT_PACK_SIZE_LIMIT = 64 * 1024 * 1024

PACK_NAME_RE = re.compile(r"p-([0-9a-f]{8})-([0-9a-f]{8})")  # p-<sequence>-<random>
_SUFFIX = ".pack"
_WRITE_BUFFER = 1 << 20  # bytes gathered before one pwrite
_SCAN_BLOCK = 1 << 20  # bytes read at a time by a scan
_COALESCE_GAP, _COALESCE_MAX = 16 << 10, 4 << 20  # read_many: records this close, one pread
_READ_FDS = 16  # read descriptors kept open
_T = TypeVar("_T")


class ChunkStoreError(Exception):
    """A record could not be written or read: missing pack, bad location, corruption, I/O."""


class Location(NamedTuple):
    pack: str  # pack name, "p-<8 hex sequence>-<8 hex random>"
    offset: int  # offset of the record's payload within the pack
    length: int  # payload length in bytes


class Record(NamedTuple):
    chunk_id: bytes  # 32 bytes; not checked against the payload here
    codec: int  # 0..255, opaque to the store (0 = raw, 1 = zstd)
    payload: bytes


class PackInfo(NamedTuple):
    name: str
    size: int


class ScanEntry(NamedTuple):
    chunk_id: bytes
    codec: int
    location: Location


class ChunkStore(Protocol):
    # Returns the records' locations, in order, only once they are durable.
    async def append(self, records: Sequence[Record]) -> list[Location]: ...
    # Payload bytes, CRC-checked; ChunkStoreError if missing, out of range or corrupt.
    async def read(self, loc: Location) -> bytes: ...
    async def read_many(self, locs: Sequence[Location]) -> list[bytes]: ...
    async def list_packs(self) -> list[PackInfo]: ...  # sorted by name, so by sequence
    def scan(self, pack: str) -> PackScan: ...
    async def delete_pack(self, pack: str) -> None: ...  # a missing pack is not an error
    async def close(self) -> None: ...
    @property  # the pack this instance appends to, if any: GC must not delete or rewrite it
    def current_pack(self) -> str | None: ...


def encode_record_header(rec: Record) -> bytes:
    """The header that precedes `rec.payload` in a pack; ValueError on an invalid record."""
    if len(rec.chunk_id) != ID_SIZE or not 0 <= rec.codec <= 255 or len(rec.payload) > MAX_PAYLOAD:
        raise ValueError("invalid record: chunk id must be 32 bytes, codec 0..255, payload < 4 GiB")
    prefix = RECORD_HEADER.pack(RECORD_MAGIC, rec.chunk_id, rec.codec, len(rec.payload), 0)
    prefix = prefix[:_CRC_PREFIX]
    return prefix + struct.pack(">I", zlib.crc32(rec.payload, zlib.crc32(prefix)))


def check_record(buf: bytes, base: int, loc: Location) -> bytes:
    """The payload of the record at `loc`, from `buf` holding the pack's bytes from `base`."""
    view = memoryview(buf)
    start = loc.offset - RECORD_HEADER.size - base
    magic, _cid, _codec, length, crc = RECORD_HEADER.unpack_from(view, start)
    if magic != RECORD_MAGIC or length != loc.length:
        raise ChunkStoreError(f"no record at {loc}")
    payload = view[start + RECORD_HEADER.size : start + RECORD_HEADER.size + length]
    if zlib.crc32(payload, zlib.crc32(view[start : start + _CRC_PREFIX])) != crc:
        raise ChunkStoreError(f"corrupt record at {loc}")
    return bytes(payload)


class PackScan:
    """Async iterator over one pack's records, in order.

    Ends without error at the end of the pack or at the first record that is
    incomplete, lacks its magic or fails its CRC (a torn tail after a crash).
    Then `problem` is None for a clean end, else why it stopped, and `end` is
    the offset just past the last good record. A missing pack, or a file that
    is not a pack, raises ChunkStoreError. `read_at(offset, n)` returns up to n
    bytes (fewer only at the end): any backend with ranged reads can reuse this.
    """

    def __init__(self, pack: str, read_at: Callable[[int, int], Awaitable[bytes]]) -> None:
        self.pack, self.end, self.done = pack, 0, False
        self.problem: str | None = None
        self._read_at, self._buf, self._buf_off = read_at, b"", 0

    def __aiter__(self) -> PackScan:
        return self

    async def _get(self, pos: int, n: int) -> memoryview:
        if pos < self._buf_off or pos + n > self._buf_off + len(self._buf):
            self._buf, self._buf_off = await self._read_at(pos, max(n, _SCAN_BLOCK)), pos
        return memoryview(self._buf)[pos - self._buf_off : pos - self._buf_off + n]

    def _stop(self, problem: str | None) -> StopAsyncIteration:
        self.done, self.problem = True, problem
        return StopAsyncIteration()

    async def __anext__(self) -> ScanEntry:
        if self.done:
            raise StopAsyncIteration
        if self.end == 0:
            head = await self._get(0, PACK_HEADER.size)
            if len(head) < PACK_HEADER.size or not any(head):
                raise self._stop("torn pack header")
            magic, version, _ = PACK_HEADER.unpack(head)
            if magic != PACK_MAGIC:
                raise ChunkStoreError(f"{self.pack}: not a pack file")
            if version != PACK_VERSION:
                raise ChunkStoreError(f"{self.pack}: unsupported pack version {version}")
            self.end = PACK_HEADER.size
        pos = self.end
        head = await self._get(pos, RECORD_HEADER.size)
        if len(head) < RECORD_HEADER.size:
            raise self._stop(f"torn record header at {pos}" if len(head) else None)
        magic, cid, codec, length, crc = RECORD_HEADER.unpack(head)
        if magic != RECORD_MAGIC:
            raise self._stop(f"bad record magic at {pos}")
        # Piece by piece: a garbage length field must not make us read gigabytes at once.
        got, at, left = zlib.crc32(head[:_CRC_PREFIX]), pos + RECORD_HEADER.size, length
        while left:
            piece = await self._get(at, min(left, _SCAN_BLOCK))
            if len(piece) == 0:
                raise self._stop(f"torn record payload at {pos}")
            got, at, left = zlib.crc32(piece, got), at + len(piece), left - len(piece)
        if got != crc:
            raise self._stop(f"record checksum mismatch at {pos}")
        self.end = at
        return ScanEntry(cid, codec, Location(self.pack, pos + RECORD_HEADER.size, length))


class _FdCache:
    """A few open read-only descriptors. Each borrower gets its own dup, so an
    eviction or `forget` never closes a descriptor that a thread is reading."""

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._open: OrderedDict[str, int] = OrderedDict()
        self._limit, self._closed = limit, False

    @contextlib.contextmanager
    def borrow(self, name: str, path: Path) -> Iterator[int]:
        with self._lock:
            cached = self._open.get(name)
            if cached is not None:
                self._open.move_to_end(name)
                fd = os.dup(cached)
        if cached is None:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError as exc:
                raise ChunkStoreError(f"no such pack: {name}") from exc
        try:
            if cached is None:
                with self._lock:
                    if not self._closed:
                        self._pop(name)
                        self._open[name] = os.dup(fd)
                        while len(self._open) > self._limit:
                            os.close(self._open.popitem(last=False)[1])
            yield fd
        finally:
            os.close(fd)

    def _pop(self, name: str) -> None:  # with the lock held
        old = self._open.pop(name, None)
        if old is not None:
            os.close(old)

    def forget(self, name: str) -> None:
        with self._lock:
            self._pop(name)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            while self._open:
                os.close(self._open.popitem()[1])


@dataclass(eq=False)
class _Writer:
    name: str
    fd: int
    size: int  # bytes appended, including those still buffered
    written: int  # bytes handed to pwrite


def _pwrite_all(fd: int, data: bytes | bytearray, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mkdirs(path: Path) -> None:
    """Create missing directories, making each new one durable in its parent."""
    if not path.is_dir():
        mkdirs(path.parent)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
            fsync_dir(path.parent)


def plan_reads(
    locs: Sequence[Location], size: int, gap: int = _COALESCE_GAP, span: int = _COALESCE_MAX
) -> list[tuple[int, int, list[int]]]:
    """(start, end, indexes into locs) of the ranged reads that read these records of one
    pack: records less than `gap` bytes apart share one read of at most `span` bytes (or
    one record). ChunkStoreError if one lies outside the pack's `size` bytes."""
    spans: list[tuple[int, int, list[int]]] = []
    for i in sorted(range(len(locs)), key=lambda i: locs[i].offset):
        start, end = locs[i].offset - RECORD_HEADER.size, locs[i].offset + locs[i].length
        if locs[i].length < 0 or start < PACK_HEADER.size or end > size:
            raise ChunkStoreError(f"location out of range: {locs[i]}")
        if spans and start <= spans[-1][1] + gap:
            first, last, idxs = spans[-1]
            if max(last, end) - first <= span:
                idxs.append(i)
                spans[-1] = (first, max(last, end), idxs)
                continue
        spans.append((start, end, [i]))
    return spans


class DiskPackStore:
    """A `ChunkStore` of pack files `root/packs/<2 hex>/<name>.pack` (POSIX).

    An instance appends only to packs it created itself, never to an existing
    one (its tail may be torn), and starts a new pack before a record would
    take the current one past `pack_size_limit` (a pack holds at least one
    record, so a record larger than the limit gets a pack of its own).
    """

    def __init__(
        self,
        root: Path | str,
        pack_size_limit: int = DEFAULT_PACK_SIZE_LIMIT,
        executor: Executor | None = None,
    ) -> None:
        if pack_size_limit <= PACK_HEADER.size:
            raise ValueError("pack_size_limit is too small")
        self.root = Path(root)
        self._limit = pack_size_limit
        self._lock = asyncio.Lock()
        # One writer thread: even a cancelled caller's job ends before the next one starts.
        self._writer_pool = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="pack-append"
        )
        self._fds = _FdCache(_READ_FDS)
        self._cur: _Writer | None = None
        self._seq: int | None = None
        self._closed = False

    @property
    def current_pack(self) -> str | None:
        """The pack this instance appends to: never delete it while the instance lives."""
        return self._cur.name if self._cur else None

    def pack_path(self, pack: str) -> Path:
        m = PACK_NAME_RE.fullmatch(pack)
        if m is None:
            raise ChunkStoreError(f"invalid pack name: {pack!r}")
        return self.root / "packs" / m[2][:2] / (pack + _SUFFIX)

    def _check_open(self) -> None:
        if self._closed:
            raise ChunkStoreError("store is closed")

    async def _in_writer(self, fn: Callable[[], _T]) -> _T:
        async with self._lock:
            self._check_open()
            return await asyncio.get_running_loop().run_in_executor(self._writer_pool, fn)

    async def append(self, records: Sequence[Record]) -> list[Location]:
        self._check_open()
        batch = list(records)
        return await self._in_writer(lambda: self._append_sync(batch)) if batch else []

    def _append_sync(self, records: list[Record]) -> list[Location]:
        heads = [encode_record_header(rec) for rec in records]  # validates before any I/O
        locs: list[Location] = []
        pending = bytearray()
        try:
            for head, payload in zip(heads, (rec.payload for rec in records), strict=True):
                need, w = len(head) + len(payload), self._cur
                if w is None or (w.size > PACK_HEADER.size and w.size + need > self._limit):
                    if w is not None:
                        self._flush(w, pending)
                        os.fsync(w.fd)
                        self._abandon()
                    w = self._cur = self._create_pack()
                locs.append(Location(w.name, w.size + len(head), len(payload)))
                w.size += need
                pending += head
                pending += payload
                if len(pending) >= _WRITE_BUFFER:
                    self._flush(w, pending)
            assert self._cur is not None
            self._flush(self._cur, pending)
            os.fsync(self._cur.fd)
        except BaseException as exc:
            self._abandon()  # its tail may now be torn: never append to it again
            if isinstance(exc, OSError):
                raise ChunkStoreError(f"append failed: {exc}") from exc
            raise
        return locs

    @staticmethod
    def _flush(w: _Writer, pending: bytearray) -> None:
        _pwrite_all(w.fd, pending, w.written)
        w.written += len(pending)
        pending.clear()

    def _abandon(self) -> None:
        if self._cur is not None:
            fd, self._cur = self._cur.fd, None
            with contextlib.suppress(OSError):
                os.close(fd)

    def _create_pack(self) -> _Writer:
        if self._seq is None:  # one more than any existing pack's sequence number
            self._seq = max((int(p.name[2:10], 16) for p in self._list_sync()), default=0)
        self._seq += 1
        while True:
            name = f"p-{self._seq:08x}-{secrets.token_hex(4)}"
            path = self.pack_path(name)
            mkdirs(path.parent)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                break
            except FileExistsError:
                continue
        try:
            _pwrite_all(fd, PACK_HEADER.pack(PACK_MAGIC, PACK_VERSION, 0), 0)
            os.fsync(fd)
            fsync_dir(path.parent)
        except BaseException:
            os.close(fd)
            raise
        return _Writer(name, fd, PACK_HEADER.size, PACK_HEADER.size)

    async def read(self, loc: Location) -> bytes:
        return (await self.read_many([loc]))[0]

    async def read_many(self, locs: Sequence[Location]) -> list[bytes]:
        self._check_open()
        by_pack: dict[str, list[int]] = {}
        for i, loc in enumerate(locs):
            by_pack.setdefault(loc.pack, []).append(i)
        out = [b""] * len(locs)

        async def one(pack: str, idxs: list[int]) -> None:
            got = await asyncio.to_thread(self._read_pack, pack, [locs[i] for i in idxs])
            for i, data in zip(idxs, got, strict=True):
                out[i] = data

        await asyncio.gather(*(one(pack, idxs) for pack, idxs in by_pack.items()))
        return out

    def _read_pack(self, pack: str, locs: list[Location]) -> list[bytes]:
        out = [b""] * len(locs)
        try:
            with self._fds.borrow(pack, self.pack_path(pack)) as fd:
                for start, end, idxs in plan_reads(locs, os.fstat(fd).st_size):
                    buf = os.pread(fd, end - start, start)
                    if len(buf) != end - start:
                        raise ChunkStoreError(f"short read in pack {pack}")
                    for i in idxs:
                        out[i] = check_record(buf, start, locs[i])
        except OSError as exc:
            raise ChunkStoreError(f"cannot read pack {pack}: {exc}") from exc
        return out

    async def list_packs(self) -> list[PackInfo]:
        self._check_open()
        try:
            return await asyncio.to_thread(self._list_sync)
        except OSError as exc:
            raise ChunkStoreError(f"cannot list packs: {exc}") from exc

    def _list_sync(self) -> list[PackInfo]:
        out: list[PackInfo] = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self.root / "packs") as shards:
            for shard in shards:
                for e in os.scandir(shard.path) if shard.is_dir() else ():
                    m = PACK_NAME_RE.fullmatch(e.name.removesuffix(_SUFFIX))
                    if e.name.endswith(_SUFFIX) and m and m[2][:2] == shard.name:
                        with contextlib.suppress(FileNotFoundError):
                            out.append(PackInfo(m[0], e.stat().st_size))
        return sorted(out)

    def scan(self, pack: str) -> PackScan:
        path = self.pack_path(pack)

        def pread(offset: int, n: int) -> bytes:
            try:
                with self._fds.borrow(pack, path) as fd:
                    return os.pread(fd, n, offset)
            except OSError as exc:
                raise ChunkStoreError(f"cannot read pack {pack}: {exc}") from exc

        async def read_at(offset: int, n: int) -> bytes:
            self._check_open()
            return await asyncio.to_thread(pread, offset, n)

        return PackScan(pack, read_at)

    async def delete_pack(self, pack: str) -> None:
        path = self.pack_path(pack)
        await self._in_writer(lambda: self._delete_sync(pack, path))

    def _delete_sync(self, pack: str, path: Path) -> None:
        if self._cur is not None and self._cur.name == pack:
            self._abandon()
        self._fds.forget(pack)
        try:
            path.unlink()
            fsync_dir(path.parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ChunkStoreError(f"cannot delete pack {pack}: {exc}") from exc

    async def close(self) -> None:
        """Release files and threads; later calls raise ChunkStoreError. Idempotent."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            await asyncio.get_running_loop().run_in_executor(self._writer_pool, self._abandon)
        self._writer_pool.shutdown(wait=False)
        self._fds.close()
