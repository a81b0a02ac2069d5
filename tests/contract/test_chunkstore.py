"""Contract suite for `ChunkStore`: every implementation must pass all of it.

To add an implementation, write a `Backend` for it (open a store on the same
storage again, damage a pack the way a crash or bit rot would, and give the
source that opens it in a child process) and add it to `BACKENDS`.

Write-once stores (`ObjectPackStore`, over files and over S3) pass the same
suite: a crash cannot tear an object (a PUT stores all or nothing), but bit rot
or a tool can still truncate or damage one, so their backends damage an object
by rewriting it through the raw storage, and every test applies. The one
difference: nothing is ever appended to an existing object, so their
`current_pack` is always None (`Backend.appends_in_place`).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import obstore
import pytest

from linesync.core.ids import chunk_id
from linesync.server.stores import packs
from linesync.server.stores.objects import LocalObjects
from linesync.server.stores.objpacks import ObjectPackStore, object_name
from linesync.server.stores.packs import (
    DEFAULT_PACK_SIZE_LIMIT,
    ChunkStore,
    ChunkStoreError,
    DiskPackStore,
    Location,
    PackScan,
    Record,
    ScanEntry,
)
from tests.support.s3 import S3Server

T = TypeVar("T")
MiB = 1024 * 1024


class Backend(Protocol):
    appends_in_place: bool  # False: write-once packs, `current_pack` is always None

    def open(self, pack_size_limit: int = DEFAULT_PACK_SIZE_LIMIT) -> ChunkStore:
        """A new store instance on this backend's storage (a restart when called again)."""
        ...

    def truncate(self, pack: str, size: int) -> None: ...
    def append_bytes(self, pack: str, data: bytes) -> None: ...
    def flip_byte(self, pack: str, offset: int) -> None: ...
    def child_source(self, pack_size_limit: int) -> str:
        """Python source, run in a child process, that defines `open_store() -> ChunkStore`."""
        ...


class DiskBackend:
    appends_in_place = True

    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self, pack_size_limit: int = DEFAULT_PACK_SIZE_LIMIT) -> ChunkStore:
        return DiskPackStore(self.root, pack_size_limit=pack_size_limit)

    def _path(self, pack: str) -> Path:
        # The documented layout: root/packs/<first 2 hex of the random part>/<name>.pack
        return self.root / "packs" / pack.split("-")[2][:2] / f"{pack}.pack"

    def truncate(self, pack: str, size: int) -> None:
        os.truncate(self._path(pack), size)

    def append_bytes(self, pack: str, data: bytes) -> None:
        with open(self._path(pack), "ab") as f:
            f.write(data)

    def flip_byte(self, pack: str, offset: int) -> None:
        with open(self._path(pack), "r+b") as f:
            f.seek(offset)
            byte = f.read(1)
            f.seek(offset)
            f.write(bytes([byte[0] ^ 0x40]))

    def child_source(self, pack_size_limit: int) -> str:
        return (
            "from linesync.server.stores.packs import DiskPackStore\n"
            f"def open_store():\n    return DiskPackStore({str(self.root)!r}, {pack_size_limit})\n"
        )


def _damage(data: bytes, how: str, arg: Any) -> bytes:
    if how == "truncate":
        return data[:arg]
    if how == "append":
        return data + arg
    return data[:arg] + bytes([data[arg] ^ 0x40]) + data[arg + 1 :]  # flip


class ObjectFilesBackend:
    """ObjectPackStore over LocalObjects: damage rewrites the object's file."""

    appends_in_place = False

    def __init__(self, root: Path) -> None:
        self.root = root / "objects"

    def open(self, pack_size_limit: int = DEFAULT_PACK_SIZE_LIMIT) -> ChunkStore:
        return ObjectPackStore(LocalObjects(self.root), pack_size_limit)

    def _rewrite(self, pack: str, how: str, arg: Any) -> None:
        path = self.root / object_name(pack)
        path.write_bytes(_damage(path.read_bytes(), how, arg))

    def truncate(self, pack: str, size: int) -> None:
        self._rewrite(pack, "truncate", size)

    def append_bytes(self, pack: str, data: bytes) -> None:
        self._rewrite(pack, "append", data)

    def flip_byte(self, pack: str, offset: int) -> None:
        self._rewrite(pack, "flip", offset)

    def child_source(self, pack_size_limit: int) -> str:
        return (
            "from linesync.server.stores.objects import LocalObjects\n"
            "from linesync.server.stores.objpacks import ObjectPackStore\n"
            "def open_store():\n"
            f"    return ObjectPackStore(LocalObjects({str(self.root)!r}), {pack_size_limit})\n"
        )


class ObjectS3Backend:
    """ObjectPackStore over S3Objects (weed mini), a prefix of its own per test:
    damage overwrites the object through obstore, behind the store's back."""

    appends_in_place = False

    def __init__(self, server: S3Server) -> None:
        self.server, self.prefix = server, server.new_prefix()

    def open(self, pack_size_limit: int = DEFAULT_PACK_SIZE_LIMIT) -> ChunkStore:
        return ObjectPackStore(self.server.objects(self.prefix), pack_size_limit)

    def _rewrite(self, pack: str, how: str, arg: Any) -> None:
        raw, name = self.server.raw_store(self.prefix), object_name(pack)
        obstore.put(raw, name, _damage(bytes(obstore.get(raw, name).bytes()), how, arg))

    def truncate(self, pack: str, size: int) -> None:
        self._rewrite(pack, "truncate", size)

    def append_bytes(self, pack: str, data: bytes) -> None:
        self._rewrite(pack, "append", data)

    def flip_byte(self, pack: str, offset: int) -> None:
        self._rewrite(pack, "flip", offset)

    def child_source(self, pack_size_limit: int) -> str:
        backend = self.server.objects_source(self.prefix)
        return (
            "from linesync.server.stores.objpacks import ObjectPackStore\n"
            f"def open_store():\n    return ObjectPackStore({backend}, {pack_size_limit})\n"
        )


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Backend]] = {
    "disk": lambda request, tmp: DiskBackend(tmp),
    "objects-files": lambda request, tmp: ObjectFilesBackend(tmp),
    "objects-s3": lambda request, tmp: ObjectS3Backend(request.getfixturevalue("s3_server")),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](request, tmp_path)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def rec(payload: bytes, codec: int = 0) -> Record:
    return Record(chunk_id(payload), codec, payload)


async def scan_all(store: ChunkStore, pack: str) -> tuple[list[ScanEntry], PackScan]:
    scan = store.scan(pack)
    entries = [entry async for entry in scan]
    assert scan.done
    return entries, scan


async def assert_reads(store: ChunkStore, locs: Sequence[Location], recs: Sequence[Record]) -> None:
    for loc, r in zip(locs, recs, strict=True):
        assert await store.read(loc) == r.payload
    assert await store.read_many(locs) == [r.payload for r in recs]


def appending(backend: Backend, pack: str) -> str | None:
    """What `current_pack` says after an append that ended in `pack`."""
    return pack if backend.appends_in_place else None


def assert_disjoint(locs: Sequence[Location]) -> None:
    assert len(set(locs)) == len(locs)
    by_pack: dict[str, list[Location]] = {}
    for loc in locs:
        by_pack.setdefault(loc.pack, []).append(loc)
    for group in by_pack.values():
        group.sort(key=lambda loc: loc.offset)
        for a, b in zip(group, group[1:], strict=False):
            assert a.offset + a.length < b.offset, (a, b)  # a header always separates records


SIZES = [0, 1, 2, 31, 100, 4095, 4096, 65537, MiB, 0, 1]


def test_round_trip_varied_sizes(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        recs = [rec(data(i, size), codec=i % 2) for i, size in enumerate(SIZES)]
        locs = await store.append(recs[:4])
        locs += await store.append(recs[4:])
        locs += await store.append([recs[0]])  # same chunk twice: the store does not dedup
        recs.append(recs[0])
        assert_disjoint(locs)
        assert [loc.length for loc in locs] == [len(r.payload) for r in recs]
        await assert_reads(store, locs, recs)
        order = list(range(len(locs))) * 2
        random.Random(7).shuffle(order)
        assert await store.read_many([locs[i] for i in order]) == [recs[i].payload for i in order]
        assert await store.read_many([]) == []
        assert await store.append([]) == []
        entries: list[ScanEntry] = []
        for info in await store.list_packs():
            got, scan = await scan_all(store, info.name)
            assert scan.problem is None and scan.end == info.size
            entries += got
        assert sorted(entries) == sorted(
            ScanEntry(r.chunk_id, r.codec, loc) for r, loc in zip(recs, locs, strict=True)
        )
        await store.close()

    run(body())


def test_read_many_of_many_small_and_large_records(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open(pack_size_limit=3 * MiB)
        recs = [rec(data(i, 60 if i % 400 else MiB)) for i in range(2400)]
        locs = await store.append(recs)
        assert len({loc.pack for loc in locs}) > 1
        assert await store.read_many(locs) == [r.payload for r in recs]
        picked = locs[::7][::-1]
        assert await store.read_many(picked) == [r.payload for r in recs[::7][::-1]]
        await store.close()

    run(body())


def test_small_pack_limit_rolls_to_new_packs(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open(pack_size_limit=1024)
        recs = [rec(data(i, 300)) for i in range(12)] + [rec(data(99, 5000)), rec(b"x")]
        locs = await store.append(recs[:5])
        assert store.current_pack == appending(backend, locs[-1].pack)
        locs += await store.append(recs[5:])
        assert store.current_pack == appending(backend, locs[-1].pack)
        assert_disjoint(locs)
        infos = await store.list_packs()
        assert len({loc.pack for loc in locs}) == len(infos) >= 6
        big = locs[12].pack
        for info in infos:
            assert info.size <= 1024 or info.name == big
        assert [loc.pack for loc in locs].count(big) == 1  # oversized: a pack of its own
        await assert_reads(store, locs, recs)
        await store.close()

    run(body())


def test_restart_reads_old_records_and_appends_to_a_new_pack(backend: Backend) -> None:
    async def body() -> None:
        first = backend.open(pack_size_limit=4096)
        recs = [rec(data(i, 1000)) for i in range(10)]
        locs = await first.append(recs)
        before = await first.list_packs()
        await first.close()

        second = backend.open(pack_size_limit=4096)
        assert second.current_pack is None
        assert await second.list_packs() == before  # opening writes nothing
        await assert_reads(second, locs, recs)
        new = await second.append([rec(b"after restart")])
        assert second.current_pack == appending(backend, new[0].pack)
        assert new[0].pack not in {info.name for info in before}
        assert new[0].pack > max(info.name for info in before)  # names sort by sequence
        after = await second.list_packs()
        assert [info for info in after if info.name != new[0].pack] == before
        assert await second.read(new[0]) == b"after restart"
        await second.close()

    run(body())


TORN = ["mid_payload", "mid_header", "pack_header", "half_record", "garbage", "zeros"]


@pytest.mark.parametrize("damage", TORN)
def test_torn_tail_scan_stops_cleanly_and_earlier_records_read(
    backend: Backend, damage: str
) -> None:
    async def body() -> None:
        store = backend.open()
        recs = [rec(data(i, 200 + i)) for i in range(6)]
        locs = await store.append(recs)
        await store.close()
        pack, last = locs[-1].pack, locs[-1]
        intact = len(recs)
        if damage == "mid_payload":
            backend.truncate(pack, last.offset + last.length // 2)
            intact -= 1
        elif damage == "mid_header":
            backend.truncate(pack, last.offset - 10)
            intact -= 1
        elif damage == "pack_header":
            backend.truncate(pack, 5)
            intact = 0
        elif damage == "half_record":
            torn = rec(data(50, 1000))
            backend.append_bytes(pack, packs.encode_record_header(torn) + torn.payload[:500])
        elif damage == "garbage":
            backend.append_bytes(pack, b"LR" + data(51, 100))
        else:
            backend.append_bytes(pack, bytes(4096))

        store = backend.open()
        entries, scan = await scan_all(store, pack)
        assert [e.location for e in entries] == locs[:intact]
        assert scan.problem is not None
        assert scan.end == (locs[intact - 1].offset + locs[intact - 1].length if intact else 0)
        await assert_reads(store, locs[:intact], recs[:intact])
        for loc in locs[intact:]:
            with pytest.raises(ChunkStoreError):
                await store.read(loc)
        new = await store.append([rec(b"next")])
        assert new[0].pack != pack
        assert await store.read(new[0]) == b"next"
        await store.close()

    run(body())


# Where to flip a byte, relative to a record's payload offset, and the error expected.
FLIPS: dict[str, tuple[int, str | None]] = {
    "payload": (5, "corrupt record"),
    "chunk_id": (-20, "corrupt record"),  # the CRC covers the record header too
    "length": (-6, None),
}


@pytest.mark.parametrize("where", sorted(FLIPS))
def test_flipped_byte_is_an_error_not_data(backend: Backend, where: str) -> None:
    async def body() -> None:
        store = backend.open()
        recs = [rec(data(i, 64)) for i in range(5)]
        locs = await store.append(recs)
        await store.close()
        delta, message = FLIPS[where]
        backend.flip_byte(locs[2].pack, locs[2].offset + delta)

        store = backend.open()
        with pytest.raises(ChunkStoreError, match=message):
            await store.read(locs[2])
        with pytest.raises(ChunkStoreError, match=message):
            await store.read_many(locs)
        others = [0, 1, 3, 4]
        await assert_reads(store, [locs[i] for i in others], [recs[i] for i in others])
        entries, scan = await scan_all(store, locs[2].pack)
        assert [e.location for e in entries] == locs[:2] and scan.problem is not None
        await store.close()

    run(body())


def test_bad_locations_raise(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        recs = [rec(data(i, 100)) for i in range(3)]
        first, _, last = locs = await store.append(recs)
        size = (await store.list_packs())[0].size
        pack = first.pack
        bad = [
            Location(pack, size + 10, 5),
            Location(pack, last.offset, last.length + 1),
            Location(pack, first.offset, first.length + 1),
            Location(pack, first.offset, first.length - 1),
            Location(pack, first.offset + 1, 3),
            Location(pack, 0, 10),
            Location(pack, -5, 1),
            Location(pack, first.offset, -1),
            Location(pack, 2**62, 2**62),
            Location("p-00000001-deadbeef", first.offset, first.length),
            Location("../../etc/passwd", 0, 1),
            Location("", 0, 0),
        ]
        for loc in bad:
            with pytest.raises(ChunkStoreError):
                await store.read(loc)
            with pytest.raises(ChunkStoreError):
                await store.read_many([*locs, loc])
        await assert_reads(store, locs, recs)
        await store.close()

    run(body())


def test_delete_pack(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open(pack_size_limit=512)
        recs = [rec(data(i, 300)) for i in range(3)]
        locs = await store.append(recs)
        assert len({loc.pack for loc in locs}) == 3
        await assert_reads(store, locs, recs)  # so a read descriptor may be cached
        await store.delete_pack(locs[0].pack)
        for call in (store.read(locs[0]), store.read_many(locs)):
            with pytest.raises(ChunkStoreError):
                await call
        with pytest.raises(ChunkStoreError):
            await scan_all(store, locs[0].pack)
        assert [info.name for info in await store.list_packs()] == sorted(
            loc.pack for loc in locs[1:]
        )
        await store.delete_pack(locs[0].pack)  # deleting again is not an error
        assert store.current_pack == appending(backend, locs[2].pack)
        await store.delete_pack(locs[2].pack)  # the pack being appended to, if any
        assert store.current_pack is None
        await assert_reads(store, locs[1:2], recs[1:2])
        new = await store.append([rec(b"z")])
        assert await store.read(new[0]) == b"z"
        await store.close()

        other = backend.open()
        await other.delete_pack(locs[1].pack)
        with pytest.raises(ChunkStoreError):
            await other.read(locs[1])
        assert [info.name for info in await other.list_packs()] == [new[0].pack]
        await other.close()

    run(body())


def test_concurrent_appends_get_distinct_correct_locations(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open(pack_size_limit=64 * 1024)

        async def worker(n: int) -> list[tuple[Location, Record]]:
            rng = random.Random(n)
            out: list[tuple[Location, Record]] = []
            for b in range(3):
                recs = [rec(data(n * 1000 + b * 10 + i, rng.randrange(0, 5000))) for i in range(4)]
                out += zip(await store.append(recs), recs, strict=True)
            return out

        results = [pair for got in await asyncio.gather(*map(worker, range(40))) for pair in got]
        locs = [loc for loc, _ in results]
        assert_disjoint(locs)
        assert len({loc.pack for loc in locs}) > 1
        await assert_reads(store, locs, [r for _, r in results])
        await store.close()

    run(body())


def test_invalid_records_and_closed_store(backend: Backend) -> None:
    async def body() -> None:
        store = backend.open()
        for bad in (Record(b"short", 0, b""), Record(chunk_id(b""), 256, b"")):
            with pytest.raises(ValueError):
                await store.append([rec(b"fine"), bad])
        assert await store.list_packs() == []  # validated before anything was written
        loc = (await store.append([rec(b"kept")]))[0]
        await store.close()
        await store.close()
        for call in (store.read(loc), store.append([rec(b"x")]), store.list_packs()):
            with pytest.raises(ChunkStoreError):
                await call

    run(body())


def crash_payload(i: int) -> bytes:
    r = random.Random(i)
    return r.randbytes(r.choice((0, 1, 60, 700, 5000, 70000)))


CHILD = """
import asyncio, random, sys
from linesync.core.ids import chunk_id
from linesync.server.stores.packs import Record

async def main():
    store = open_store()
    i = 0
    while True:
        batch = range(i, i + 1 + i % 5)
        i = batch.stop
        locs = await store.append([Record(chunk_id(crash_payload(j)), j % 2, crash_payload(j))
                                   for j in batch])
        sys.stdout.write("".join(f"{j} {l.pack} {l.offset} {l.length}\\n"
                                 for j, l in zip(batch, locs)))
        sys.stdout.flush()

asyncio.run(main())
"""


def test_sigkill_mid_append_keeps_every_acknowledged_record(backend: Backend) -> None:
    source = "\n".join([backend.child_source(256 * 1024), inspect.getsource(crash_payload), CHILD])
    src_dir = Path(packs.__file__).resolve().parents[3]
    env = dict(os.environ, PYTHONPATH=str(src_dir))
    acked: dict[int, Location] = {}

    def ack(line: str) -> None:
        j, pack, offset, length = line.split()
        acked[int(j)] = Location(pack, int(offset), int(length))

    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        while len(acked) < 400:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"child exited early: {child.stderr.read()}")
            ack(line)
        child.kill()  # SIGKILL: no cleanup, no flush, possibly mid-write
        child.wait()
        for line in child.stdout.read().splitlines(keepends=True):
            if line.endswith("\n"):
                ack(line)

    async def body() -> None:
        store = backend.open()
        order = sorted(acked)
        got = await store.read_many([acked[j] for j in order])
        assert got == [crash_payload(j) for j in order]
        infos = await store.list_packs()
        assert len(infos) > 1
        scanned: set[Location] = set()
        for info in infos:
            entries, _ = await scan_all(store, info.name)
            scanned.update(e.location for e in entries)
        assert set(acked.values()) <= scanned
        new = await store.append([rec(b"after crash")])
        assert new[0].pack not in {info.name for info in infos}
        await store.close()

    run(body())


def test_disk_pack_bytes_known_answer(tmp_path: Path) -> None:
    """Pins the on-disk layout of docs/FORMAT.md (Packs): changing it needs a new version."""

    async def body() -> None:
        store = DiskPackStore(tmp_path)
        loc = (await store.append([rec(b"hello", codec=1)]))[0]
        await store.close()
        raw = DiskBackend(tmp_path)._path(loc.pack).read_bytes()
        expected = [
            "4c535041434b3031",  # pack magic "LSPACK01"
            "00000001 00000000",  # format version 1, reserved
            "4c52",  # record magic "LR"
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f",  # chunk id
            "01",  # codec
            "00000005",  # payload length
            "32d5def6",  # CRC-32 of the 39 header bytes above, then the payload
            b"hello".hex(),
        ]
        assert raw == bytes.fromhex("".join(expected))
        assert loc == Location(loc.pack, 16 + 43, 5)

    run(body())
