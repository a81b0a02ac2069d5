"""How chunks are decoded: one pass for the usual payload (one zstd frame
that names its size), a stream across frames for any other (another client
may upload several frames), and never past the chunk limit, whatever size a
frame claims."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from linesync.client.api import Client
from linesync.client.chunksource import ChunkSource
from linesync.client.index import Index
from linesync.client.localfs import LocalFS
from linesync.client.remote import Remote
from linesync.core.ids import chunk_id
from linesync.protocol import codec
from linesync.protocol.codec import Codec
from linesync.protocol.errors import LinesyncError
from linesync.protocol.framing import Frame
from tests.client.conftest import files
from tests.support.api import file_op, ns_id, split
from tests.support.server import ServerProc


def test_a_chunk_of_two_zstd_frames_downloads_whole(server: ServerProc, tmp_path: Path) -> None:
    data = b"".join(b"line %d of a note that another client uploaded\n" % i for i in range(12))
    (part,) = split(data)  # one chunk
    z = zstandard.ZstdCompressor(level=3)
    two = z.compress(part[:300]) + z.compress(part[300:])
    ns = ns_id(server, "admin")

    async def put() -> None:
        async with Remote(server.url, server.new_token("admin", "other")) as r:
            await r.upload(ns, [Frame(chunk_id(part), Codec.ZSTD, None, two)])
            (res,) = await r.commit(ns, [file_op("note.txt", data)])
            assert res.status == "ok", res

    asyncio.run(put())
    b = Client.init(tmp_path / "B", server=server.url, token=server.new_token("admin", "beta"))
    result = b.sync_once()
    assert result.downloaded == 1 and not result.problems, result
    assert files(b.folder) == {"note.txt": data}


class _Serves:
    """A server (fault injection) that answers a fetch with given frames."""

    def __init__(self, frames: list[Frame]) -> None:
        self.frames = frames

    async def fetch(self, ns: int, ids: object, bases: object = None) -> list[Frame]:
        return self.frames


def test_several_frames_decode_whole_and_a_cut_frame_is_refused(tmp_path: Path) -> None:
    part = b"".join(b"line %d\n" % i for i in range(200))
    z = zstandard.ZstdCompressor(level=3)
    two = z.compress(part[:300]) + z.compress(part[300:])
    assert codec.decode(Codec.ZSTD, two, None, 2**20) == part
    cid = chunk_id(part)
    index = Index.open(tmp_path / "index.db")
    source = ChunkSource(index, LocalFS(tmp_path), _Serves([Frame(cid, Codec.ZSTD, None, two)]),  # type: ignore[arg-type]
                         ns=1)  # fmt: skip
    assert asyncio.run(source.get([cid])) == {cid: part}
    cut = Frame(cid, Codec.ZSTD, None, z.compress(part)[:-4])
    source = ChunkSource(index, LocalFS(tmp_path), _Serves([cut]), ns=1)  # type: ignore[arg-type]
    with pytest.raises(LinesyncError):
        asyncio.run(source.get([cid]))
    for bad in (z.compress(part) + b"junk", b"", b"\x28\xb5\x2f\xfd"):
        with pytest.raises(LinesyncError):
            codec.decode(Codec.ZSTD, bad, None, 2**20)


_BOMB_CHILD = """
import sys
from linesync.protocol import codec
from linesync.protocol.errors import LinesyncError
payload = open(sys.argv[1], "rb").read()
try:
    codec.decode(codec.Codec.ZSTD, payload, None, 2**20)
    print("decoded")
except LinesyncError as exc:
    print(exc.code.value)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]) // 1024)
"""


def test_a_frame_claiming_a_huge_size_is_refused_without_making_it(tmp_path: Path) -> None:
    """A hostile server (or client) sends 20 KB that claim and decode to
    512 MiB: refused as too large, and the decoding process never holds it
    (zstd sizes its buffer by the frame's claim unless the claim is checked)."""
    size = 512 * 2**20
    out = zstandard.ZstdCompressor(level=1).compressobj(size=size)
    zero = bytes(2**20)
    bomb = b"".join(out.compress(zero) for _ in range(size // len(zero))) + out.flush()
    assert len(bomb) < 64 * 2**10 and zstandard.frame_content_size(bomb) == size
    (tmp_path / "bomb").write_bytes(bomb)
    run = subprocess.run([sys.executable, "-c", _BOMB_CHILD, str(tmp_path / "bomb")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    verdict, peak_mib = run.stdout.split()
    assert verdict == "payload_too_large"
    assert int(peak_mib) < 150, f"decoding peaked at {peak_mib} MiB"
