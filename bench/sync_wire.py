"""Bytes on the wire per change between two synced folders, both clients and
both directions, headers included: each client reaches the server through its
own byte-counting proxy (two hops). Run: `.venv/bin/python bench/sync_wire.py`.

Corpus: about 2,000 small text files, 20 text files of 1-8 MB and 50 binaries
of 50 KB-4 MB. For each change: client A syncs (uploads), then client B syncs
(downloads); the table shows what crossed both proxies.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import corpus  # noqa: E402
from tests.support.proxy import ByteProxy  # noqa: E402
from tests.support.server import ServerProc  # noqa: E402

from linesync.client.api import Client  # noqa: E402

KIB = 1024


def build_corpus(root: Path, small: int = 2000, big: int = 20, binaries: int = 50) -> None:
    rnd = random.Random(7)
    for i in range(small):
        folder = root / f"notes/{i % 40:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"note-{i:04d}.md").write_bytes(corpus.markdown(rnd.randint(200, 6000), seed=i))
    (root / "big").mkdir()
    for i in range(big):
        size = 4_000_000 if i == 0 else rnd.randint(1_000_000, 8_000_000)
        (root / f"big/doc-{i:02d}.md").write_bytes(corpus.markdown(size, seed=1000 + i))
    (root / "big/app.log").write_bytes(corpus.log_lines(5_000_000))
    (root / "bin").mkdir()
    for i in range(binaries):
        size = 4 * 2**20 if i == 0 else rnd.randint(50_000, 4_000_000)
        if i == 1:
            size = 3 * 2**20
        (root / f"bin/blob-{i:02d}.bin").write_bytes(corpus.random_bytes(size, seed=2000 + i))
    (root / "moveme").mkdir()
    for i in range(100):
        (root / f"moveme/f-{i:03d}.txt").write_bytes(corpus.markdown(1500, seed=3000 + i))


def edit_line(path: Path, top: bool = False) -> None:
    data = path.read_bytes()
    if top:
        path.write_bytes(b"A new first line.\n" + data)
    else:
        path.write_bytes(corpus.edit_middle_line(data))


def overwrite_4k(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(2 * 2**20)
        f.write(os.urandom(4096))


def touch(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


CHANGES: list[tuple[str, Callable[[Path], None], int]] = [
    ("one line edited, middle of a 4 MB markdown file",
     lambda r: edit_line(r / "big/doc-00.md"), 2 * KIB),
    ("one line inserted at its top", lambda r: edit_line(r / "big/doc-00.md", top=True), 2 * KIB),
    ("one line appended to a 5 MB log",
     lambda r: (r / "big/app.log").open("ab").write(b"1700009999 INFO one more\n") and None,
     2 * KIB),
    ("4 KiB overwritten in a 4 MiB binary", lambda r: overwrite_4k(r / "bin/blob-00.bin"), 0),
    ("mtime changed, content not", lambda r: touch(r / "notes/00/note-0000.md"), 1 * KIB),
    ("a 3 MiB file renamed",
     lambda r: (r / "bin/blob-01.bin").rename(r / "bin/renamed.bin"), 2 * KIB),
    ("a 100-file folder moved",
     lambda r: (r / "moveme").rename(r / "notes/moved"), 16 * KIB),
    ("a file deleted", lambda r: (r / "notes/01/note-0001.md").unlink(), 1 * KIB),
]  # fmt: skip


async def main_async(tmp: Path, srv: ServerProc) -> list[str]:
    host, port = srv.url.removeprefix("http://").split(":")
    pa, pb = ByteProxy(host, int(port)), ByteProxy(host, int(port))
    ua, ub = await pa.start(), await pb.start()
    try:
        ta, tb = srv.new_token("admin", "laptop"), srv.new_token("admin", "desktop")
        a = await Client.init_async(tmp / "A", server=ua, token=ta)
        b = await Client.init_async(tmp / "B", server=ub, token=tb)
        build_corpus(a.folder)
        t0 = time.monotonic()
        ra = await a.sync()
        t1 = time.monotonic()
        rb = await b.sync()
        t2 = time.monotonic()
        assert ra.converged and rb.converged, (ra, rb)
        rows = [
            f"Initial sync of the corpus: A uploads in {t1 - t0:.1f} s "
            f"({pa.counts.total / 2**20:.1f} MiB), B downloads in {t2 - t1:.1f} s "
            f"({pb.counts.total / 2**20:.1f} MiB).",
            "",
            "| change | A (uploader) | B (downloader) | total | goal |",
            "|---|---|---|---|---|",
        ]
        for name, change, goal in CHANGES:
            change(a.folder)
            pa.reset()
            pb.reset()
            ra = await a.sync()
            rb = await b.sync()
            assert ra.converged and rb.converged, (name, ra, rb)
            ca, cb = pa.reset(), pb.reset()
            total = ca.total + cb.total
            verdict = "-" if not goal else ("ok" if total <= goal else "OVER")
            rows.append(
                f"| {name} | {ca.total:,} B | {cb.total:,} B | {total:,} B | "
                f"{f'{goal // KIB} KiB ' if goal else ''}{verdict} |"
            )
        same = _same_tree(a.folder, b.folder)
        rows.append("")
        rows.append(f"Folders identical at the end: {'yes' if same else 'NO'}")
        return rows
    finally:
        await pa.close()
        await pb.close()


def _same_tree(x: Path, y: Path) -> bool:
    def tree(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*")
            if p.is_file() and ".linesync" not in p.relative_to(root).parts
        }

    return tree(x) == tree(y)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="linesync-bench-"))
    srv = ServerProc(tmp / "server", extra=["--rate", "100000"]).start()
    try:
        rows = asyncio.run(main_async(tmp, srv))
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
