"""Chunk storage in append-only pack files, and the `ChunkStore` interface.

Chunks are never stored one file each: they are appended as records to pack
files. The chunk -> `Location` index lives in the metadata store; this module
only writes records (returning where each landed) and reads them back.
The byte layout and the write ordering are specified in docs/FORMAT.md (Packs).
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
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

_NAME_RE = re.compile(r"p-([0-9a-f]{8})-([0-9a-f]{8})")
_SUFFIX = ".pack"
_WRITE_BUFFER = 1 << 20  # bytes gathered before one pwrite
_SCAN_BLOCK = 1 << 20  # bytes read at a time by a scan
_COALESCE_GAP = 16 << 10  # read_many merges records this close into one pread...
_COALESCE_MAX = 4 << 20  # ...up to this span
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
    async def append(self, records: Sequence[Record]) -> list[Location]:
        """Write records; return their locations (same order) once durable."""
        ...

    async def read(self, loc: Location) -> bytes:
        """The payload at `loc`, CRC-checked; ChunkStoreError if unreadable."""
        ...

    async def read_many(self, locs: Sequence[Location]) -> list[bytes]:
        """Payloads in the order of `locs`; ChunkStoreError if any is unreadable."""
        ...

    async def list_packs(self) -> list[PackInfo]:
        """Every pack, sorted by name (so by sequence number)."""
        ...

    def scan(self, pack: str) -> PackScan:
        """Walk a pack's records in order; stops cleanly at a torn tail."""
        ...

    async def delete_pack(self, pack: str) -> None:
        """Remove a pack; deleting a missing pack is not an error."""
        ...

    async def close(self) -> None: ...


def validate_record(rec: Record) -> None:
    if len(rec.chunk_id) != ID_SIZE:
        raise ValueError(f"chunk id must be {ID_SIZE} bytes")
    if not 0 <= rec.codec <= 255:
        raise ValueError("codec must fit in one byte")
    if len(rec.payload) > MAX_PAYLOAD:
        raise ValueError("payload too large for one record")


def record_crc(prefix: bytes | memoryview, payload: bytes | memoryview) -> int:
    """CRC-32 (zlib) of the record header bytes before the CRC field, then the payload."""
    return zlib.crc32(payload, zlib.crc32(prefix))


def encode_record_header(rec: Record) -> bytes:
    prefix = RECORD_HEADER.pack(RECORD_MAGIC, rec.chunk_id, rec.codec, len(rec.payload), 0)
    prefix = prefix[:_CRC_PREFIX]
    return prefix + struct.pack(">I", record_crc(prefix, rec.payload))


def check_record(buf: bytes, base: int, loc: Location) -> bytes:
    """The payload of the record at `loc`, from `buf` holding the pack bytes from `base`."""
    view = memoryview(buf)
    start = loc.offset - RECORD_HEADER.size - base
    magic, _cid, _codec, length, crc = RECORD_HEADER.unpack_from(view, start)
    if magic != RECORD_MAGIC or length != loc.length:
        raise ChunkStoreError(f"no record at {loc}")
    payload = view[start + RECORD_HEADER.size : start + RECORD_HEADER.size + length]
    if record_crc(view[start : start + _CRC_PREFIX], payload) != crc:
        raise ChunkStoreError(f"corrupt record at {loc}")
    return bytes(payload)


class PackScan:
    """Async iterator over one pack's records, in order.

    Iteration ends without error at the end of the pack or at the first record
    that is incomplete, has a bad magic, or fails its CRC (a torn tail after a
    crash). Afterwards `problem` is None for a clean end, else says why it
    stopped, and `end` is the offset just past the last good record. A missing
    pack, or a file that is not a pack, raises ChunkStoreError.

    `read_at(offset, n)` returns up to n bytes (fewer only at the end of the
    pack); any backend that can do ranged reads can reuse this class.
    """

    def __init__(self, pack: str, read_at: Callable[[int, int], Awaitable[bytes]]) -> None:
        self.pack = pack
        self.end = 0
        self.problem: str | None = None
        self.done = False
        self._read_at = read_at
        self._buf = b""
        self._buf_off = 0

    def __aiter__(self) -> PackScan:
        return self

    async def _get(self, pos: int, n: int) -> memoryview:
        if pos < self._buf_off or pos + n > self._buf_off + len(self._buf):
            self._buf = await self._read_at(pos, max(n, _SCAN_BLOCK))
            self._buf_off = pos
        start = pos - self._buf_off
        return memoryview(self._buf)[start : start + n]

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
        if len(head) == 0:
            raise self._stop(None)
        if len(head) < RECORD_HEADER.size:
            raise self._stop(f"torn record header at {pos}")
        magic, cid, codec, length, crc = RECORD_HEADER.unpack(head)
        if magic != RECORD_MAGIC:
            raise self._stop(f"bad record magic at {pos}")
        # Checked piece by piece: a garbage length field must not make us read gigabytes.
        got, p, left = zlib.crc32(head[:_CRC_PREFIX]), pos + RECORD_HEADER.size, length
        while left:
            piece = await self._get(p, min(left, _SCAN_BLOCK))
            if len(piece) == 0:
                raise self._stop(f"torn record payload at {pos}")
            got, p, left = zlib.crc32(piece, got), p + len(piece), left - len(piece)
        if got != crc:
            raise self._stop(f"record checksum mismatch at {pos}")
        self.end = pos + RECORD_HEADER.size + length
        return ScanEntry(bytes(cid), codec, Location(self.pack, pos + RECORD_HEADER.size, length))


class _Fd:
    __slots__ = ("fd", "refs", "doomed")

    def __init__(self, fd: int) -> None:
        self.fd, self.refs, self.doomed = fd, 0, False


class _FdCache:
    """Read-only descriptors shared by reader threads; one is closed only when unused."""

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _Fd] = OrderedDict()
        self._limit = limit
        self._closed = False

    @contextlib.contextmanager
    def borrow(self, name: str, path: Path) -> Iterator[int]:
        ent = self._acquire(name, path)
        try:
            yield ent.fd
        finally:
            with self._lock:
                ent.refs -= 1
                self._close_if_done(ent)

    def _acquire(self, name: str, path: Path) -> _Fd:
        with self._lock:
            if self._closed:
                raise ChunkStoreError("store is closed")
            ent = self._open.get(name)
            if ent is not None:
                self._open.move_to_end(name)
                ent.refs += 1
                return ent
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise ChunkStoreError(f"no such pack: {name}") from exc
        except OSError as exc:
            raise ChunkStoreError(f"cannot open pack {name}: {exc}") from exc
        ent = _Fd(fd)
        ent.refs = 1
        with self._lock:
            if self._closed:
                ent.doomed = True
            else:
                self._drop(self._open.pop(name, None))
                self._open[name] = ent
                while len(self._open) > self._limit:
                    self._drop(self._open.popitem(last=False)[1])
        return ent

    def _drop(self, ent: _Fd | None) -> None:
        if ent is not None:
            ent.doomed = True
            self._close_if_done(ent)

    def _close_if_done(self, ent: _Fd) -> None:
        if ent.doomed and ent.refs == 0:
            ent.refs = -1  # closed
            os.close(ent.fd)

    def forget(self, name: str) -> None:
        with self._lock:
            self._drop(self._open.pop(name, None))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            while self._open:
                self._drop(self._open.popitem()[1])


class _Writer:
    __slots__ = ("name", "fd", "size", "written")

    def __init__(self, name: str, fd: int, size: int) -> None:
        self.name, self.fd, self.size, self.written = name, fd, size, size


def _pwrite_all(fd: int, data: bytes | bytearray, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkdirs(path: Path) -> None:
    """Create missing directories, making each new entry durable in its parent."""
    if path.is_dir():
        return
    _mkdirs(path.parent)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    _fsync_dir(path.parent)


class DiskPackStore:
    """A `ChunkStore` of pack files under `root/packs/<2 hex>/<name>.pack` (POSIX only).

    Each instance appends to packs it created itself, never to an existing one
    (its tail may be torn), rolling to a new pack before a record would take
    the current one past `pack_size_limit` (a pack always holds at least one
    record, so a record larger than the limit gets a pack of its own).
    """

    def __init__(self, root: Path | str, pack_size_limit: int = DEFAULT_PACK_SIZE_LIMIT) -> None:
        if pack_size_limit <= PACK_HEADER.size:
            raise ValueError("pack_size_limit is too small")
        self.root = Path(root)
        self._dir = self.root / "packs"
        self._limit = pack_size_limit
        self._lock = asyncio.Lock()
        self._writer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pack-append")
        self._fds = _FdCache(_READ_FDS)
        self._cur: _Writer | None = None
        self._seq: int | None = None
        self._closed = False

    async def __aenter__(self) -> DiskPackStore:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def current_pack(self) -> str | None:
        """The pack this instance is appending to (never delete it while in use)."""
        return self._cur.name if self._cur else None

    def pack_path(self, pack: str) -> Path:
        m = _NAME_RE.fullmatch(pack)
        if m is None:
            raise ChunkStoreError(f"invalid pack name: {pack!r}")
        return self._dir / m.group(2)[:2] / (pack + _SUFFIX)

    def _check_open(self) -> None:
        if self._closed:
            raise ChunkStoreError("store is closed")

    async def _in_writer(self, fn: Callable[[], _T]) -> _T:
        async with self._lock:
            self._check_open()
            # One worker thread: even a cancelled caller's job finishes before the next starts.
            return await asyncio.get_running_loop().run_in_executor(self._writer_pool, fn)

    async def append(self, records: Sequence[Record]) -> list[Location]:
        self._check_open()
        for rec in records:
            validate_record(rec)
        if not records:
            return []
        batch = list(records)
        return await self._in_writer(lambda: self._append_sync(batch))

    def _append_sync(self, records: list[Record]) -> list[Location]:
        locs: list[Location] = []
        pending = bytearray()
        try:
            for rec in records:
                head = encode_record_header(rec)
                need = len(head) + len(rec.payload)
                w = self._cur
                if w is None or (w.size > PACK_HEADER.size and w.size + need > self._limit):
                    if w is not None:
                        self._flush(w, pending)
                        os.fsync(w.fd)
                        self._abandon()
                    w = self._cur = self._create_pack()
                locs.append(Location(w.name, w.size + len(head), len(rec.payload)))
                w.size += need
                pending += head
                pending += rec.payload
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
        if self._seq is None:
            packs = self._list_sync()
            self._seq = max((int(p.name[2:10], 16) for p in packs), default=0)  # p-SEQ-...
        self._seq += 1
        while True:
            name = f"p-{self._seq:08x}-{secrets.token_hex(4)}"
            path = self.pack_path(name)
            _mkdirs(path.parent)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue
            break
        try:
            _pwrite_all(fd, PACK_HEADER.pack(PACK_MAGIC, PACK_VERSION, 0), 0)
            os.fsync(fd)
            _fsync_dir(path.parent)
        except BaseException:
            os.close(fd)
            raise
        return _Writer(name, fd, PACK_HEADER.size)

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

        await asyncio.gather(*(one(p, idxs) for p, idxs in by_pack.items()))
        return out

    def _read_pack(self, pack: str, locs: list[Location]) -> list[bytes]:
        """Read records of one pack, merging nearby ones into one pread."""
        out = [b""] * len(locs)
        with self._fds.borrow(pack, self.pack_path(pack)) as fd:
            try:
                size = os.fstat(fd).st_size
                starts: list[int] = []
                ends: list[int] = []
                members: list[list[int]] = []
                for i in sorted(range(len(locs)), key=lambda i: locs[i].offset):
                    loc = locs[i]
                    start, end = loc.offset - RECORD_HEADER.size, loc.offset + loc.length
                    if loc.length < 0 or start < PACK_HEADER.size or end > size:
                        raise ChunkStoreError(f"location out of range: {loc}")
                    if (
                        starts
                        and start <= ends[-1] + _COALESCE_GAP
                        and end - starts[-1] <= _COALESCE_MAX
                    ):
                        ends[-1] = max(ends[-1], end)
                        members[-1].append(i)
                    else:
                        starts.append(start)
                        ends.append(end)
                        members.append([i])
                for start, end, idxs in zip(starts, ends, members, strict=True):
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
        return await asyncio.to_thread(self._list_sync)

    def _list_sync(self) -> list[PackInfo]:
        out: list[PackInfo] = []
        try:
            shards = [e for e in os.scandir(self._dir) if e.is_dir()]
        except FileNotFoundError:
            return out
        for shard in shards:
            with os.scandir(shard.path) as entries:
                for e in entries:
                    name = e.name.removesuffix(_SUFFIX)
                    m = _NAME_RE.fullmatch(name)
                    if not e.name.endswith(_SUFFIX) or m is None or m[2][:2] != shard.name:
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        out.append(PackInfo(name, e.stat().st_size))
        return sorted(out)

    def scan(self, pack: str) -> PackScan:
        path = self.pack_path(pack)

        def pread(offset: int, n: int) -> bytes:
            with self._fds.borrow(pack, path) as fd:
                try:
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
            _fsync_dir(path.parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ChunkStoreError(f"cannot delete pack {pack}: {exc}") from exc

    async def close(self) -> None:
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            await asyncio.get_running_loop().run_in_executor(self._writer_pool, self._abandon)
        self._writer_pool.shutdown(wait=False)
        self._fds.close()
