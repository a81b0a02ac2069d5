"""Crash consistency: SIGKILL the server at random moments and check that what it
acknowledged survives, that the journal stays gapless, that `linesync check`
passes, and that the server keeps working (appending to new packs only).

Every kill is seeded (timing, data); the moment the signal lands still depends
on scheduling, so each test repeats over a few seeds.
"""

from __future__ import annotations

import asyncio
import base64
import random
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import pytest

from linesync.client.remote import Remote, RemoteUnavailable
from linesync.core.chunking import chunk
from linesync.core.ids import ChunkId, chunk_id, pack_ids, unpack_ids
from linesync.protocol import codec
from linesync.protocol.errors import LinesyncError
from linesync.protocol.framing import Frame
from linesync.protocol.schemas import CommitOp, Content, Entry, InlineChunk, Kind
from linesync.server.stores.packs import PACK_MAGIC, RECORD_HEADER, RECORD_MAGIC
from tests.support.crash import (
    chunk_packs,
    hard_kill,
    journal,
    last_pack,
    pack_files,
    pack_seq,
    run_check,
)
from tests.support.server import ServerProc

MiB = 1 << 20
# Rate limiting is not under test here: tight loops must not be throttled.
SERVER_ARGS = ["--rate", "1000000"]
FETCH_BATCH = 48  # ids per chunks/get request (binary chunks are at most 128 KiB)


# -- helpers -----------------------------------------------------------------


def split(data: bytes) -> list[bytes]:
    return [data[c.offset : c.offset + c.length] for c in chunk(data)]


def raw_frames(parts: Sequence[bytes]) -> list[Frame]:
    return [Frame(chunk_id(p), codec.Codec.RAW, None, p) for p in parts]


def packed_frames(parts: Sequence[bytes]) -> list[Frame]:
    out = []
    for p in parts:
        kind, payload = codec.encode(p)
        out.append(Frame(chunk_id(p), kind, None, payload))
    return out


def inline(parts: Sequence[bytes]) -> list[InlineChunk]:
    names = {codec.Codec.RAW: "raw", codec.Codec.ZSTD: "zstd"}
    out = []
    for p in parts:
        kind, payload = codec.encode(p)
        data = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
        out.append(InlineChunk(data=data, codec=names[kind]))  # type: ignore[arg-type]
    return out


def file_op(path: str, ids: Sequence[ChunkId], size: int, base_jid: int = 0) -> CommitOp:
    return CommitOp(
        path=path, kind=Kind.FILE, size=size, base_jid=base_jid, content=Content(ids=pack_ids(ids))
    )


def text_blob(rnd: random.Random, lines: int) -> bytes:
    words = ("alpha", "beta", "gamma", "delta", "salt", "flour", "oven", "note", "todo", "x")
    return b"".join(
        (
            " ".join(rnd.choice(words) for _ in range(rnd.randint(1, 12))) + f" {rnd.random()}\n"
        ).encode()
        for _ in range(lines)
    )


async def ns_of(r: Remote) -> int:
    return (await r.me()).namespaces[0].id


async def mkdirs(r: Remote, ns: int, dirs: Sequence[str]) -> None:
    """Create these directories (parents first): a live entry needs a live parent."""
    ops = [CommitOp(path=d, kind=Kind.DIRECTORY) for d in dirs]
    results = await r.commit(ns, ops)
    assert [x.status for x in results] == ["ok"] * len(ops), results


async def fetch_all(r: Remote, ns: int, ids: Sequence[ChunkId]) -> dict[ChunkId, bytes]:
    """Fetch and decode these chunks; every frame must hash to its id."""
    want = list(dict.fromkeys(ids))
    out: dict[ChunkId, bytes] = {}
    for i in range(0, len(want), FETCH_BATCH):
        batch = want[i : i + FETCH_BATCH]
        frames = await r.fetch(ns, batch)
        assert [f.chunk_id for f in frames] == batch
        for f in frames:
            data = codec.decode(f.codec, f.payload, None, 4 * MiB)
            assert chunk_id(data) == f.chunk_id, "server sent bytes that do not match the id"
            out[f.chunk_id] = data
    return out


async def assert_present(r: Remote, ns: int, ids: Sequence[ChunkId]) -> None:
    """chunks/missing reports every one of these ids as held."""
    want = list(dict.fromkeys(ids))
    for i in range(0, len(want), 50_000):
        res = await r.missing(ns, want[i : i + 50_000])
        gone = unpack_ids(res.missing)
        assert not gone, f"{len(gone)} acknowledged chunk(s) reported missing after restart"


def assert_check_ok(data: Path, when: str) -> None:
    res = run_check(data)
    assert res.ok, f"linesync check failed {when}:\n{res}"


def assert_gapless(data: Path, ns: int) -> int:
    head, jids = journal(data, ns)
    assert jids == list(range(1, head + 1)), (
        f"journal of ns {ns} is not gapless: head {head}, jids {summarize(jids)}"
    )
    return head


def summarize(jids: list[int]) -> str:
    if len(jids) <= 20:
        return str(jids)
    return f"{jids[:10]} ... {jids[-10:]} ({len(jids)} jids)"


def pack_state(data: Path) -> dict[str, tuple[int, bytes]]:
    """Pack name -> (size, digest) of every pack file on disk."""
    out = {}
    for name, path in pack_files(data).items():
        raw = path.read_bytes()
        out[name] = (len(raw), blake3.blake3(raw).digest())
    return out


def assert_packs_untouched(data: Path, before: dict[str, tuple[int, bytes]]) -> None:
    """Packs that existed at the crash are never appended to (nor rewritten)."""
    now = pack_state(data)
    for name, state in before.items():
        gone, changed = name not in now, now.get(name) != state
        assert not gone, f"pack {name} disappeared after restart"
        assert not changed, (
            f"pack {name} changed after restart (size {state[0]} -> {now[name][0]}): "
            "a pack that existed at the crash may have a torn tail and must not be appended to"
        )


def assert_new_pack(data: Path, ids: Sequence[ChunkId], old: dict[str, tuple[int, bytes]]) -> None:
    where = chunk_packs(data, list(ids))
    unindexed = len(set(ids) - set(where))
    assert not unindexed, f"{unindexed} chunk(s) acknowledged after restart are not indexed"
    top = max((pack_seq(n) for n in old), default=0)
    for cid, pack in where.items():
        reused = pack in old
        assert not reused, (
            f"chunk {cid.hex()[:12]} uploaded after restart went to pre-crash pack {pack}"
        )
        assert pack_seq(pack) > top, f"new pack {pack} does not sort after the old ones"


async def put_random(
    r: Remote, ns: int, rnd: random.Random, path: str, size: int
) -> tuple[int, list[ChunkId], list[bytes]]:
    """Upload random bytes and commit them as one file: (jid, ids, parts)."""
    parts = split(rnd.randbytes(size))
    ids = [chunk_id(p) for p in parts]
    up = await r.upload(ns, raw_frames(parts))
    assert up.stored == len(parts)
    (res,) = await r.commit(ns, [file_op(path, ids, size)])
    assert res.status == "ok" and res.jid, res
    return res.jid, ids, parts


# -- 1. SIGKILL during large batch uploads -------------------------------------


@dataclass
class Sent:
    """One large file sent; its bytes are regenerated from ``seed`` (not kept in memory)."""

    path: str
    size: int
    seed: int
    ids: list[ChunkId]

    def parts(self) -> list[bytes]:
        return split(random.Random(self.seed).randbytes(self.size))


@dataclass
class BigLedger:
    uploaded: list[ChunkId] = field(default_factory=list)  # acknowledged uploads
    committed: dict[int, Sent] = field(default_factory=dict)  # acknowledged commits by jid
    attempted: dict[str, Sent] = field(default_factory=dict)  # every commit sent, by path
    errors: list[str] = field(default_factory=list)  # wrong answers (not transport failures)
    lost_at: list[str] = field(default_factory=list)  # where each lane saw the server die


async def big_lane(
    r: Remote, ns: int, lane: int, seed: int, ledger: BigLedger, stop_at: float
) -> None:
    rnd = random.Random(seed)
    for b in range(12):
        if time.monotonic() > stop_at:
            return
        size, data_seed = rnd.randint(8 * MiB, 32 * MiB), seed * 100 + b
        parts = split(random.Random(data_seed).randbytes(size))
        sent = Sent(f"big/lane{lane}/{b}.bin", size, data_seed, [chunk_id(p) for p in parts])
        step = "upload"
        try:
            up = await r.upload(ns, raw_frames(parts))
            if up.stored != len(parts):
                ledger.errors.append(f"{sent.path}: upload stored {up.stored} of {len(parts)}")
                return
            ledger.uploaded.extend(sent.ids)
            step = "commit"
            ledger.attempted[sent.path] = sent
            (res,) = await r.commit(ns, [file_op(sent.path, sent.ids, size)])
        except RemoteUnavailable:
            ledger.lost_at.append(f"lane {lane} batch {b} during {step}")
            return
        except LinesyncError as exc:
            ledger.errors.append(f"{sent.path}: {step} failed: {exc.code}: {exc}")
            return
        if res.status != "ok" or not res.jid:
            ledger.errors.append(f"{sent.path}: commit answered {res}")
            return
        ledger.committed[res.jid] = sent


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_sigkill_during_large_batch_uploads(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    kill_after = rnd.uniform(0.2, 2.2)
    data_dir = tmp_path / "server"

    async def go() -> None:
        srv = ServerProc(data_dir, extra=list(SERVER_ARGS)).start()
        try:
            ledger = BigLedger()
            async with Remote(srv.url, srv.token) as r:
                ns = await ns_of(r)
                await mkdirs(r, ns, ["big", "big/lane0", "big/lane1", "after"])
                stop_at = time.monotonic() + 20
                lanes = [
                    asyncio.create_task(big_lane(r, ns, i, seed * 100 + i, ledger, stop_at))
                    for i in range(2)
                ]
                await asyncio.sleep(kill_after)
                await asyncio.to_thread(hard_kill, srv)
                await asyncio.wait_for(asyncio.gather(*lanes), 60)
            errors = list(ledger.errors)
            assert not errors, "wrong answers before the kill:\n" + "\n".join(errors)
            before = pack_state(data_dir)

            srv.start()
            assert_check_ok(data_dir, "after restart")
            head = assert_gapless(data_dir, ns)
            print(
                f"seed {seed}: killed after {kill_after:.2f}s, {len(ledger.committed)} commit(s) "
                f"and {len(ledger.uploaded)} chunk(s) acknowledged, head {head}, "
                f"{len(before)} pack(s), lost: {ledger.lost_at}"
            )
            async with Remote(srv.url, srv.token) as r:
                assert (await r.head(ns)).jid == head
                # Every acknowledged commit: same jid, path and content.
                for jid, sent in sorted(ledger.committed.items()):
                    assert jid <= head, f"acknowledged jid {jid} is past the head {head}"
                    e = await r.entry(ns, jid)
                    assert (e.path, e.kind, e.size) == (sent.path, Kind.FILE, sent.size)
                    assert e.content is not None and e.content.ids is not None
                    assert unpack_ids(e.content.ids) == sent.ids, f"jid {jid}: blocklist differs"
                    got = await fetch_all(r, ns, sent.ids)
                    for cid, part in zip(sent.ids, sent.parts(), strict=True):
                        assert got[cid] == part, f"jid {jid}: chunk {cid.hex()[:12]} differs"
                # A commit that landed without its answer reaching us has what we sent.
                for j in range(1, head + 1):
                    e = await r.entry(ns, j)
                    if j in ledger.committed or e.kind is Kind.DIRECTORY:
                        continue
                    tried = ledger.attempted.get(e.path)
                    assert tried is not None, f"jid {j}: unexpected entry {e.path}"
                    assert e.content is not None and e.content.ids is not None
                    assert unpack_ids(e.content.ids) == tried.ids
                # Every acknowledged upload is still held.
                await assert_present(r, ns, ledger.uploaded)
                # New uploads and commits work, and go to a new pack.
                jid, ids, parts = await put_random(r, ns, rnd, "after/restart.bin", 3 * MiB)
                assert jid == head + 1
                got = await fetch_all(r, ns, ids)
                assert [got[c] for c in ids] == parts
            assert_new_pack(data_dir, ids, before)
            assert_packs_untouched(data_dir, before)
            assert_gapless(data_dir, ns)
            assert_check_ok(data_dir, "after new writes")
        finally:
            hard_kill(srv)

    asyncio.run(go())


# -- 2. SIGKILL during many concurrent small commits ----------------------------


@dataclass
class Expect:
    path: str
    kind: Kind
    size: int
    ids: list[ChunkId] | None


@dataclass
class SmallLedger:
    committed: dict[int, Expect] = field(default_factory=dict)  # acknowledged, by jid
    chunks: dict[ChunkId, bytes] = field(default_factory=dict)  # everything ever sent
    uploaded: list[ChunkId] = field(default_factory=list)  # acknowledged uploads
    orphans: list[tuple[int, list[ChunkId]]] = field(default_factory=list)  # uploaded, never used
    errors: list[str] = field(default_factory=list)


async def small_client(
    url: str, token: str, ns: int, cid: int, rnd: random.Random, ledger: SmallLedger, stop_at: float
) -> None:
    mine: dict[str, tuple[int, Expect]] = {}  # path -> (last acknowledged jid, what it holds)

    def remember(parts: list[bytes]) -> list[ChunkId]:
        ids = [chunk_id(p) for p in parts]
        ledger.chunks.update(zip(ids, parts, strict=True))
        return ids

    async with Remote(url, token, timeout=30) as r:
        for n in range(400):
            if time.monotonic() > stop_at:
                return
            roll = rnd.random()
            ops: list[CommitOp] = []
            expects: list[Expect] = []
            chunks: list[InlineChunk] = []
            try:
                if roll < 0.40 or not mine:  # 1-3 new files, chunks inline in the commit
                    for k in range(rnd.randint(1, 3)):
                        blob = text_blob(rnd, rnd.randint(1, 80))
                        parts = split(blob)
                        ids = remember(parts)
                        path = f"c{cid}/n{n}-{k}.txt"
                        ops.append(file_op(path, ids, len(blob)))
                        expects.append(Expect(path, Kind.FILE, len(blob), ids))
                        chunks += inline(parts)
                elif roll < 0.65:  # a new version of one of mine
                    path = rnd.choice(sorted(mine))
                    blob = text_blob(rnd, rnd.randint(1, 80))
                    parts = split(blob)
                    ids = remember(parts)
                    ops.append(file_op(path, ids, len(blob), base_jid=mine[path][0]))
                    expects.append(Expect(path, Kind.FILE, len(blob), ids))
                    chunks += inline(parts)
                elif roll < 0.82:  # upload through chunks/, then commit
                    blob = text_blob(rnd, rnd.randint(20, 200))
                    parts = split(blob)
                    ids = remember(parts)
                    up = await r.upload(ns, packed_frames(parts))
                    assert up.stored == len(parts)
                    ledger.uploaded.extend(ids)
                    path = f"c{cid}/u{n}.txt"
                    ops.append(file_op(path, ids, len(blob)))
                    expects.append(Expect(path, Kind.FILE, len(blob), ids))
                elif roll < 0.88:  # upload only: chunks no entry ever takes up
                    blob = text_blob(rnd, rnd.randint(5, 100))
                    parts = split(blob)
                    ids = remember(parts)
                    await r.upload(ns, packed_frames(parts))
                    ledger.uploaded.extend(ids)
                    ledger.orphans.append((len(blob), ids))
                    continue
                elif roll < 0.94:  # a copy: same chunks, new path, nothing uploaded
                    files = [p for p in sorted(mine) if mine[p][1].kind is Kind.FILE]
                    if not files:
                        continue
                    src = mine[rnd.choice(files)][1]
                    assert src.ids is not None
                    path = f"c{cid}/copy{n}.txt"
                    ops.append(file_op(path, src.ids, src.size))
                    expects.append(Expect(path, Kind.FILE, src.size, src.ids))
                else:  # a deletion
                    path = rnd.choice(sorted(mine))
                    if mine[path][1].kind is Kind.TOMBSTONE:
                        continue
                    ops.append(CommitOp(path=path, kind=Kind.TOMBSTONE, base_jid=mine[path][0]))
                    expects.append(Expect(path, Kind.TOMBSTONE, 0, None))
                results = await r.commit(ns, ops, chunks)
            except RemoteUnavailable:
                return
            except (LinesyncError, AssertionError) as exc:
                ledger.errors.append(f"client {cid} op {n}: {type(exc).__name__}: {exc}")
                return
            for res, exp in zip(results, expects, strict=True):
                if res.status != "ok" or not res.jid:
                    ledger.errors.append(f"client {cid} op {n}: {exp.path}: {res}")
                    return
                ledger.committed[res.jid] = exp
                mine[exp.path] = (res.jid, exp)


@pytest.mark.parametrize("seed", [11, 12])
def test_sigkill_during_concurrent_commits(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    target = rnd.randint(150, 400)  # acknowledged commits before the kill
    data_dir = tmp_path / "server"

    async def go() -> None:
        srv = ServerProc(data_dir, extra=list(SERVER_ARGS)).start()
        try:
            ledger = SmallLedger()
            async with Remote(srv.url, srv.token) as r:
                ns = await ns_of(r)
                await mkdirs(r, ns, ["after", "orphans", *(f"c{i}" for i in range(6))])
            stop_at = time.monotonic() + 25
            clients = [
                asyncio.create_task(
                    small_client(
                        srv.url, srv.token, ns, i, random.Random(seed * 100 + i), ledger, stop_at
                    )
                )
                for i in range(6)
            ]
            for _ in range(4000):  # until enough commits were acknowledged (bounded)
                if len(ledger.committed) >= target or time.monotonic() > stop_at - 5:
                    break
                if all(c.done() for c in clients):
                    break
                await asyncio.sleep(0.005)
            await asyncio.sleep(rnd.uniform(0, 0.02))
            await asyncio.to_thread(hard_kill, srv)
            await asyncio.wait_for(asyncio.gather(*clients), 60)
            errors = list(ledger.errors)
            assert not errors, "wrong answers before the kill:\n" + "\n".join(errors)
            assert len(ledger.committed) >= 100, (
                f"only {len(ledger.committed)} commits before the kill: the test lost its point"
            )
            before = pack_state(data_dir)

            srv.start()
            assert_check_ok(data_dir, "after restart")
            head = assert_gapless(data_dir, ns)
            print(
                f"seed {seed}: {len(ledger.committed)} commit(s) acknowledged of {head} in the "
                f"journal, {len(ledger.uploaded)} uploads, {len(ledger.orphans)} orphan(s)"
            )
            async with Remote(srv.url, srv.token) as r:
                assert (await r.head(ns)).jid == head
                sem = asyncio.Semaphore(16)

                async def entry(j: int) -> Entry:
                    async with sem:
                        return await r.entry(ns, j)

                entries = await asyncio.gather(*(entry(j) for j in range(1, head + 1)))
                # Every acknowledged commit is present with its jid.
                for jid, exp in sorted(ledger.committed.items()):
                    assert jid <= head, f"acknowledged jid {jid} is past the head {head}"
                    e = entries[jid - 1]
                    assert (e.jid, e.path, e.kind, e.size) == (jid, exp.path, exp.kind, exp.size)
                    if exp.ids is not None:
                        assert e.content is not None and e.content.ids is not None
                        assert unpack_ids(e.content.ids) == exp.ids, f"jid {jid}: blocklist"
                # The listing of current entries agrees with the journal.
                latest: dict[str, int] = {}
                for e in entries:
                    latest[e.path] = e.jid
                listed: dict[str, int] = {}
                cursor = None
                for _ in range(100):
                    page = await r.list_changes(ns, cursor, limit=200)
                    listed.update((e.path, e.jid) for e in page.entries)
                    cursor = page.cursor
                    if not page.more:
                        break
                assert listed == latest, "the current listing disagrees with the journal"
                # No entry references a chunk that is not there, and all bytes are ours.
                referenced: list[ChunkId] = []
                for e in entries:
                    if e.kind is Kind.FILE:
                        assert e.content is not None and e.content.ids is not None
                        referenced += unpack_ids(e.content.ids)
                await assert_present(r, ns, referenced)
                got = await fetch_all(r, ns, referenced)
                for c, data in got.items():
                    assert ledger.chunks.get(c) == data, f"chunk {c.hex()[:12]}: wrong bytes"
                # Acknowledged uploads, used or not, are still held.
                await assert_present(r, ns, ledger.uploaded)
                # Uncommitted chunks break nothing: they can be committed now...
                ops = [
                    file_op(f"orphans/{i}.txt", ids, size)
                    for i, (size, ids) in enumerate(ledger.orphans[:50])
                ]
                ops.append(file_op("orphans/fresh.txt", [], 0))
                results = await r.commit(ns, ops)
                assert [x.status for x in results] == ["ok"] * len(ops), results
                assert [x.jid for x in results] == list(range(head + 1, head + 1 + len(ops)))
                # ...and new uploads go to a new pack.
                jid, ids, _ = await put_random(r, ns, rnd, "after/restart.bin", MiB)
                assert jid == head + len(ops) + 1
            assert_new_pack(data_dir, ids, before)
            assert_packs_untouched(data_dir, before)
            assert_gapless(data_dir, ns)
            assert_check_ok(data_dir, "after new commits")
        finally:
            hard_kill(srv)

    asyncio.run(go())


# -- 3. A torn pack tail is harmless -------------------------------------------


def _record(rnd: random.Random, length: int, good_crc: bool, payload_len: int) -> bytes:
    head = RECORD_HEADER.pack(RECORD_MAGIC, rnd.randbytes(32), 0, length, 0)[:-4]
    payload = rnd.randbytes(payload_len)
    crc = zlib.crc32(payload, zlib.crc32(head)) ^ (0 if good_crc else 0xDEAD)
    return head + struct.pack(">I", crc) + payload


Tear = Callable[[random.Random], bytes]
TEARS: dict[str, Tear] = {
    # appended to the last pack
    "random bytes": lambda rnd: rnd.randbytes(3000),
    "zero-filled tail": lambda rnd: bytes(8192),
    "torn record header": lambda rnd: RECORD_MAGIC + rnd.randbytes(17),
    "torn record payload": lambda rnd: _record(rnd, 5000, True, 1200),
    "record with a bad crc": lambda rnd: _record(rnd, 700, False, 700),
    "record with a huge length": lambda rnd: _record(rnd, 0xFFFFFF00, True, 100),
}
TORN_NEW_PACKS: dict[str, bytes] = {
    # a pack created just before the crash, its header not (fully) written
    "empty new pack": b"",
    "torn new pack header": PACK_MAGIC[:5],
}


def test_torn_pack_tail_is_harmless(tmp_path: Path) -> None:
    rnd = random.Random(7)
    data_dir = tmp_path / "server"

    async def go() -> None:
        srv = ServerProc(data_dir, extra=list(SERVER_ARGS)).start()
        try:
            files: dict[int, tuple[list[ChunkId], list[bytes]]] = {}
            async with Remote(srv.url, srv.token) as r:
                ns = await ns_of(r)
                await mkdirs(r, ns, ["after"])
                jid, ids, parts = await put_random(r, ns, rnd, "first.bin", 2 * MiB)
                files[jid] = (ids, parts)
            tears: list[tuple[str, Tear | None, bytes | None]] = []
            tears += [(k, v, None) for k, v in TEARS.items()]
            tears += [(k, None, v) for k, v in TORN_NEW_PACKS.items()]
            for i, (what, tail, new_pack) in enumerate(tears):
                hard_kill(srv)
                if tail is not None:
                    name, path = last_pack(data_dir)
                    with path.open("ab") as f:
                        f.write(tail(rnd))
                else:
                    assert new_pack is not None
                    name, path = last_pack(data_dir)
                    seq = pack_seq(name) + 1
                    fake = path.parent / f"p-{seq:08x}-{path.parent.name}00dead.pack"
                    fake.write_bytes(new_pack)
                before = pack_state(data_dir)
                srv.start()
                assert_check_ok(data_dir, f"after a {what}")
                async with Remote(srv.url, srv.token) as r:
                    for jid, (ids, parts) in files.items():
                        e = await r.entry(ns, jid)
                        assert e.content is not None and unpack_ids(e.content.ids or "") == ids
                        got = await fetch_all(r, ns, ids)
                        assert [got[c] for c in ids] == parts, f"{what}: jid {jid} reads back wrong"
                    jid, ids, parts = await put_random(r, ns, rnd, f"after/{i}.bin", MiB)
                    files[jid] = (ids, parts)
                assert_new_pack(data_dir, ids, before)
                assert_packs_untouched(data_dir, before)
                assert_gapless(data_dir, ns)
            assert_check_ok(data_dir, "at the end")
        finally:
            hard_kill(srv)

    asyncio.run(go())


# -- 4. SIGKILL while a long-poll is held --------------------------------------


def test_sigkill_during_long_poll_keeps_cursor(tmp_path: Path) -> None:
    rnd = random.Random(9)
    data_dir = tmp_path / "server"

    async def go() -> None:
        srv = ServerProc(data_dir, extra=list(SERVER_ARGS)).start()
        try:
            async with Remote(srv.url, srv.token) as r:
                ns = await ns_of(r)
                for k in range(3):
                    blob = text_blob(rnd, 20)
                    parts = split(blob)
                    ids = [chunk_id(p) for p in parts]
                    (res,) = await r.commit(
                        ns, [file_op(f"n{k}.txt", ids, len(blob))], inline(parts)
                    )
                    assert res.status == "ok", res
                listed = await r.list_changes(ns)
                assert [e.jid for e in listed.entries] == [1, 2, 3]
                cursor = listed.cursor
                poll = asyncio.create_task(r.list_changes(ns, cursor, wait=30))
                await asyncio.sleep(0.5)
                assert not poll.done(), "the long-poll returned with nothing new"
                started = time.monotonic()
                await asyncio.to_thread(hard_kill, srv)
                with pytest.raises(RemoteUnavailable):
                    await asyncio.wait_for(poll, 15)
                assert time.monotonic() - started < 15

            srv.start()
            assert_check_ok(data_dir, "after restart")
            assert_gapless(data_dir, ns)
            async with Remote(srv.url, srv.token) as r, Remote(srv.url, srv.token) as w:
                again = await r.list_changes(ns, cursor)
                assert again.entries == [] and not again.more
                assert again.cursor == cursor
                poll = asyncio.create_task(r.list_changes(ns, cursor, wait=30))
                await asyncio.sleep(0.3)
                assert not poll.done()
                blob = text_blob(rnd, 5)
                parts = split(blob)
                ids = [chunk_id(p) for p in parts]
                (res,) = await w.commit(ns, [file_op("later.txt", ids, len(blob))], inline(parts))
                assert res.status == "ok" and res.jid == 4, res
                got = await asyncio.wait_for(poll, 15)
                assert [(e.jid, e.path) for e in got.entries] == [(4, "later.txt")]
                assert (await r.list_changes(ns, got.cursor)).entries == []
        finally:
            hard_kill(srv)

    asyncio.run(go())
