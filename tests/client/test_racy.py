"""Timestamps too coarse to show an edit ("racy" files, as git calls them).

On a file system whose clock ticks once a second (HFS+, ext3; FAT: 2 s), a
file saved, read by a scan, and saved again within the same tick keeps its
size and times: its stat cannot tell. The scan reads such a file again
instead of trusting its stat; a file last changed well before the last scan
is trusted.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from linesync.client import cutting, localfs
from linesync.client.api import Client
from linesync.client.engine import Engine, SyncResult
from linesync.client.index import Index
from linesync.client.localfs import LocalFS
from linesync.client.model import Stat
from linesync.client.remote import Remote
from tests.client.conftest import files

SECOND = 10**9


def _coarse(s: os.stat_result) -> Stat:
    """What a file system with one-second times reports: the change time and
    the modification time fall on the same whole second."""
    t = s.st_mtime_ns // SECOND * SECOND
    return Stat(s.st_size, t, t, s.st_ino)


class CountingFS(LocalFS):
    reads: list[str]

    def read(self, path: str) -> tuple[bytes, Stat]:
        self.reads.append(path)
        return super().read(path)


def _sync(client: Client, now_ns: int) -> tuple[SyncResult, list[str]]:
    async def go() -> tuple[SyncResult, list[str]]:
        index = Index.open(client.folder / ".linesync" / "index.sqlite3")
        fs = CountingFS(client.folder)
        fs.reads = []
        try:
            async with Remote(client.config.server, client.config.token) as remote:
                engine = Engine(
                    client.folder, client.config, remote, index, fs=fs, clock=lambda: now_ns
                )
                return await engine.sync_once(), fs.reads
        finally:
            index.close()

    return asyncio.run(go())


def test_an_edit_in_the_same_tick_as_the_scan_is_not_missed(
    pair: tuple[Client, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(localfs, "_stat", _coarse)
    a, b = pair
    f = a.folder / "notes.md"
    t0 = 1_800_000_000 * SECOND  # the file system's clock, in whole seconds
    f.write_bytes(b"first version\n")
    os.utime(f, ns=(t0 + 100_000_000, t0 + 100_000_000))  # saved at t0 + 0.1 s

    r, reads = _sync(a, t0 + 300_000_000)  # scanned at t0 + 0.3 s
    assert r.converged and r.uploaded == 1 and "notes.md" in reads

    # Saved again at t0 + 0.6 s: same size, and the same second on this disk.
    f.write_bytes(b"again version\n")
    os.utime(f, ns=(t0 + 600_000_000, t0 + 600_000_000))
    assert _coarse(os.stat(f)).mtime_ns == t0  # the stat cannot tell

    r, reads = _sync(a, t0 + 900_000_000)
    assert "notes.md" in reads  # read again, not trusted
    assert r.converged and r.uploaded == 1, r
    assert b.sync_once().converged
    assert files(b.folder) == {"notes.md": b"again version\n"}


def test_a_file_changed_well_before_the_last_scan_is_trusted(
    pair: tuple[Client, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(localfs, "_stat", _coarse)
    a, _ = pair
    f = a.folder / "old.md"
    t0 = 1_800_000_000 * SECOND
    f.write_bytes(b"written long ago\n")
    os.utime(f, ns=(t0, t0))
    r, reads = _sync(a, t0 + 60 * SECOND)
    assert r.converged and r.uploaded == 1 and "old.md" in reads
    r, reads = _sync(a, t0 + 120 * SECOND)
    assert r.converged and reads == []  # nothing changed since: not read at all


def test_a_file_dated_in_the_future_is_trusted(
    pair: tuple[Client, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A time ahead of the clock (another device's clock runs fast) is not a
    save racing the scan: the file is not read again on every scan."""
    a, _ = pair
    f = a.folder / "ahead.md"
    t0 = 1_800_000_000 * SECOND
    f.write_bytes(b"from a device whose clock runs fast\n")
    os.utime(f, ns=(t0 + 3600 * SECOND, t0 + 3600 * SECOND))
    assert _sync(a, t0)[0].converged
    r, reads = _sync(a, t0 + SECOND)
    assert r.converged and reads == []


def test_a_file_read_again_unchanged_is_not_cut_into_chunks_again(
    pair: tuple[Client, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its time touched (or read again to be safe): one BLAKE3 pass shows the
    bytes are those the index last read, and the chunking is skipped; an
    edit is cut as before."""

    a, b = pair
    f = a.folder / "touched.md"
    f.write_bytes(b"a line of text\n" * 2000)
    assert a.sync_once().converged
    cut: list[int] = []
    real = cutting.cut
    monkeypatch.setattr(cutting, "cut", lambda data: cut.append(len(data)) or real(data))

    t = os.stat(f).st_mtime_ns + 5 * SECOND
    os.utime(f, ns=(t, t))
    assert a.sync_once().converged
    assert cut == []
    assert b.sync_once().converged
    assert os.stat(b.folder / "touched.md").st_mtime_ns == t

    f.write_bytes(b"a line of text\n" * 1999 + b"an edited line\n")
    assert a.sync_once().converged
    assert cut == [30_000]
    assert b.sync_once().converged
    assert files(b.folder)["touched.md"].endswith(b"an edited line\n")


def test_a_moved_file_is_not_cut_into_chunks_again_and_its_new_path_serves_chunks(
    pair: tuple[Client, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename keeps the inode: the bytes at the new path are those the index
    read at the old one (one BLAKE3 pass says so), so they are not chunked
    again, and the new path's layout is recorded: its chunks rebuild the next
    version without a fetch. A copy (a new inode) is chunked as before."""

    a, b = pair
    old = a.folder / "old name.md"
    old.write_bytes(b"".join(b"line %d of the note\n" % i for i in range(3000)))
    assert a.sync_once().converged
    assert b.sync_once().converged
    cut: list[int] = []
    real = cutting.cut
    monkeypatch.setattr(cutting, "cut", lambda data: cut.append(len(data)) or real(data))

    os.makedirs(a.folder / "moved")
    os.rename(old, a.folder / "moved/new name.md")
    r = a.sync_once()
    assert r.converged and r.moved == 1, r
    assert cut == []
    index = Index.open(a.folder / ".linesync" / "index.sqlite3")
    try:
        ids = index.blocklist(index.state("moved/new name.md").local.node.chash)  # type: ignore[union-attr]
        assert ids is not None
        assert set(index.find_chunks(ids)) == set(ids)  # found at the new path
        assert {p for where in index.find_chunks(ids).values() for p, _, _ in where} == {
            "moved/new name.md"
        }
    finally:
        index.close()
    assert b.sync_once().converged  # B renames its copy, and does not cut it either
    assert files(b.folder)["moved/new name.md"] == files(a.folder)["moved/new name.md"]
    assert cut == []

    data = (a.folder / "moved/new name.md").read_bytes()
    (a.folder / "copy.md").write_bytes(data)
    assert a.sync_once().converged
    assert cut == [len(data)]
