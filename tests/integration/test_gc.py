"""Garbage collection: uploads nobody committed go after the grace period;
committed content never does; dead packs are rewritten and deleted."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

from linesync.client.remote import Remote
from linesync.client.transfer import split
from linesync.core.ids import chunk_id, unpack_ids
from linesync.protocol import codec
from linesync.server.gc import collect
from linesync.server.model import ChunkLoc
from linesync.server.stores.packs import DiskPackStore, Record
from linesync.server.stores.sqlite import SqliteStore
from tests.support import corpus
from tests.support.files import frames_for, put_file
from tests.support.server import ServerProc


async def _setup(url: str, token: str) -> tuple[list[bytes], list[bytes], bytes]:
    """Commit one file; upload another's chunks without committing them."""
    kept = corpus.markdown(200_000, seed=5)
    orphan = corpus.random_bytes(3 * 2**20, seed=6)
    async with Remote(url, token) as r:
        await put_file(r, 1, "kept.md", kept)
        ids, _ = split(kept)
        orphan_ids, orphan_chunks = split(orphan)
        await r.upload(1, frames_for(orphan_chunks, orphan_ids))
        assert (await r.missing(1, orphan_ids)).missing == ""
    return ids, orphan_ids, kept


async def _state(
    url: str, token: str, ids: list[bytes], orphan_ids: list[bytes]
) -> tuple[bytes, int]:
    async with Remote(url, token) as r:
        frames = await r.fetch(1, ids)
        data = b"".join(codec.decode(f.codec, f.payload, None, 2**20) for f in frames)
        missing = unpack_ids((await r.missing(1, orphan_ids)).missing)
    return data, len(missing)


def _gc(server: ServerProc, grace: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "linesync", "gc", "--grace", grace, "--data", str(server.data)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_gc_drops_uncommitted_uploads_and_keeps_committed_content(server: ServerProc) -> None:
    ids, orphan_ids, kept = asyncio.run(_setup(server.url, server.token))
    server.stop()
    # Within the grace period nothing goes: the upload may be a commit in flight.
    report = _gc(server, "3600")
    assert report.startswith("dropped 0 stale upload(s), 0 chunk(s)"), report
    report = _gc(server, "0")
    dropped = re.match(r"dropped (\d+) stale upload\(s\), (\d+) chunk\(s\)", report)
    assert dropped and int(dropped[1]) == len(set(orphan_ids)) == int(dropped[2]), report
    assert "rewrote 1 pack(s)" in report and "deleted 1 pack(s)" in report, report
    assert server.admin("check").endswith("ok")
    server.start()
    data, missing = asyncio.run(_state(server.url, server.token, ids, orphan_ids))
    assert data == kept
    assert missing == len(orphan_ids)


def test_offline_gc_refuses_while_the_server_runs(server: ServerProc) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "linesync", "gc", "--data", str(server.data)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert "in use by a running linesync server" in out.stderr


def test_a_pack_indexed_after_it_was_judged_dead_is_kept(tmp_path: Path) -> None:
    """An upload writes its records, GC runs before it indexes them, then it
    indexes them: the next round must not delete the pack."""

    async def go() -> None:
        meta = await SqliteStore.open(tmp_path / "meta.sqlite3")
        writer = DiskPackStore(tmp_path)
        data = b"in flight"
        cid = chunk_id(data)
        (loc,) = await writer.append([Record(cid, 0, data)])
        await writer.close()
        packs = DiskPackStore(tmp_path)  # a later process: that pack is not its current one
        await meta.create_user("u")
        first = await collect(meta, packs, 3600, hold_seconds=0.0)
        assert list(await meta.retired()) == [loc.pack] and not first.packs_deleted
        await meta.add_chunks(1, [ChunkLoc(cid, loc.pack, loc.offset, loc.length, 0, len(data))])
        second = await collect(meta, packs, 3600, hold_seconds=0.0)
        assert second.packs_deleted == []
        assert await packs.read(loc) == data
        await packs.close()
        await meta.close()

    asyncio.run(go())
