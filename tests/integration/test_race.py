"""Concurrent commits against a real server: one winner per path, gapless JIDs."""

from __future__ import annotations

import asyncio

import pytest

from linesync.core.ids import chunk_id
from linesync.protocol import codec
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.schemas import Kind
from tests.support.api import (
    Remote,
    User,
    all_jids,
    dir_op,
    file_op,
    missing,
    new_token,
    new_user,
    put_file,
    raw_frames,
    split,
    text,
)
from tests.support.server import ServerProc

run = asyncio.run
ROUNDS = 20


async def assert_gapless(r: Remote, ns: int) -> int:
    """JIDs 1..head all exist, in history order, and nothing lies past the head."""
    head = (await r.head(ns)).jid
    assert await all_jids(r, ns) == list(range(1, head + 1))
    with pytest.raises(LinesyncError) as err:
        await r.entry(ns, head + 1)
    assert err.value.code is Code.NOT_FOUND
    return head


def test_two_devices_race_on_one_path(srv: ServerProc, user: User) -> None:
    phone = new_token(srv, user.name, "phone")

    async def go() -> None:
        ns = user.ns
        async with Remote(srv.url, user.token) as a, Remote(srv.url, phone) as b:
            base = await put_file(a, ns, "race.md", b"start\n")
            versions = {
                dev: [f"round {i} from {dev}\n".encode() for i in range(ROUNDS)]
                for dev in ("laptop", "phone")
            }
            # Chunks first, so that each commit is decided at once.
            await a.upload(ns, raw_frames(versions["laptop"]))
            await b.upload(ns, raw_frames(versions["phone"]))
            winners = {"laptop": 0, "phone": 0}
            history = [base]
            for i in range(ROUNDS):
                ops = {
                    dev: file_op("race.md", versions[dev][i], base_jid=base, mtime_ns=i + 2)
                    for dev in ("laptop", "phone")
                }
                (ra,), (rb,) = await asyncio.gather(
                    a.commit(ns, [ops["laptop"]]), b.commit(ns, [ops["phone"]])
                )
                results = {"laptop": ra, "phone": rb}
                oks = [d for d, res in results.items() if res.status == "ok"]
                assert len(oks) == 1, results
                win = oks[0]
                lose = "phone" if win == "laptop" else "laptop"
                w, loser = results[win], results[lose]
                assert w.jid == base + 1, (i, results)
                assert (loser.status, loser.reason, loser.jid) == ("conflict", "changed", None)
                cur = loser.current
                assert cur is not None
                assert (cur.jid, cur.path, cur.kind, cur.device) == (
                    w.jid,
                    "race.md",
                    Kind.FILE,
                    win,
                )
                assert (cur.size, cur.mtime_ns, cur.base_jid) == (
                    len(versions[win][i]),
                    i + 2,
                    base,
                )
                entry = await a.entry(ns, w.jid)
                assert entry.device == win and entry.size == len(versions[win][i])
                winners[win] += 1
                base = w.jid
                history.append(base)
            head = await assert_gapless(a, ns)
            assert head == ROUNDS + 1
            hist = await a.history(ns, "race.md", limit=1000)
            assert [e.jid for e in hist.entries] == history[::-1]
            assert [e.device for e in hist.entries[:-1]].count("laptop") == winners["laptop"]
            lst = await b.list_changes(ns)
            assert [e.jid for e in lst.entries] == [head]

    run(go())


def test_many_concurrent_commits_to_different_paths(srv: ServerProc, user: User) -> None:
    devices = [new_token(srv, user.name, f"dev{i}") for i in range(4)]

    async def go() -> None:
        ns = user.ns
        clients = [Remote(srv.url, t) for t in devices]
        for c in clients:
            await c.__aenter__()
        try:
            first = clients[0]
            contents = {f"f{i:02d}.md": f"file {i}\n".encode() for i in range(40)}
            await first.upload(ns, raw_frames(list(contents.values())))
            ops = [file_op(p, d) for p, d in contents.items()]
            ops += [dir_op(f"d{i:02d}") for i in range(20)]
            cursor = (await first.head(ns)).cursor
            results = await asyncio.gather(
                *(clients[i % len(clients)].commit(ns, [op]) for i, op in enumerate(ops))
            )
            jids = []
            for op, (res,) in zip(ops, results, strict=True):
                assert (res.path, res.status) == (op.path, "ok"), res
                jids.append(res.jid)
            assert sorted(jids) == list(range(1, len(ops) + 1))
            assert await assert_gapless(first, ns) == len(ops)
            lst = await first.list_changes(ns, cursor)
            assert [e.jid for e in lst.entries] == list(range(1, len(ops) + 1))
            assert {e.path for e in lst.entries} == {op.path for op in ops}
            for e in lst.entries:
                assert e.path == ops[jids.index(e.jid)].path
            # And batches racing with single commits still get consecutive JIDs each.
            batches = [[dir_op(f"b{k}"), dir_op(f"b{k}/x"), dir_op(f"b{k}/x/y")] for k in range(8)]
            results = await asyncio.gather(
                *(clients[k % len(clients)].commit(ns, b) for k, b in enumerate(batches))
            )
            for res in results:
                got = [x.jid for x in res]
                assert [x.status for x in res] == ["ok"] * 3
                assert got == list(range(got[0], got[0] + 3)), got  # a batch is contiguous
            assert await assert_gapless(first, ns) == len(ops) + 24
        finally:
            for c in clients:
                await c.close()

    run(go())


def test_concurrent_uploads_of_the_same_chunks(srv: ServerProc) -> None:
    a, b = new_user(srv), new_user(srv)
    a2 = new_token(srv, a.name, "phone")

    async def go() -> None:
        data = text(500, "same bytes everywhere")
        parts = split(data)
        ids = [chunk_id(p) for p in parts]
        async with (
            Remote(srv.url, a.token) as ra,
            Remote(srv.url, a2) as ra2,
            Remote(srv.url, b.token) as rb,
        ):
            sent = await asyncio.gather(
                *(
                    r.upload(ns, raw_frames(parts))
                    for r, ns in [(ra, a.ns), (ra2, a.ns), (rb, b.ns)] * 3
                )
            )
            assert all(s.stored == len(parts) for s in sent)
            for r, ns in ((ra, a.ns), (rb, b.ns)):
                assert await missing(r, ns, ids) == []
                frames = await r.fetch(ns, ids)
                got = b"".join(codec.decode(f.codec, f.payload, None, 2**20) for f in frames)
                assert got == data
            jids = await asyncio.gather(
                put_file(ra, a.ns, "same.md", data), put_file(rb, b.ns, "same.md", data)
            )
            assert jids == [1, 1]

    run(go())
