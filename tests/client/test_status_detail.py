"""``linesync status``: the last successful sync (recorded when a sync ends),
pending uploads and downloads with their sizes, files the last sync could not
read or write and why, the last error, and conflict copies; as text and as
JSON. Through a real server; the disk faults are a file-system wrapper."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from linesync.cli.main import main as cli_main
from linesync.client import planner as pl
from linesync.client.api import Client
from linesync.client.engine import Engine, SyncResult
from linesync.client.index import Index
from linesync.client.localfs import LocalFS
from linesync.client.model import Local, Node, Stat, Version
from linesync.client.remote import Remote
from linesync.client.status import ago, summarize
from linesync.protocol.schemas import Kind
from tests.support.server import ServerProc


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(list(args))
    return code, out.getvalue(), err.getvalue()


def _json(folder: Path) -> tuple[int, dict[str, Any]]:
    code, out, _ = _cli("status", str(folder), "--json")
    return code, json.loads(out)


class NoRoom(LocalFS):
    """A disk that refuses to write one name (ENOSPC), and to read another (EIO)."""

    def __init__(self, folder: Path, no_write: str, no_read: str) -> None:
        super().__init__(folder)
        self.no_write, self.no_read = no_write, no_read

    def write_temp(self, path: str, pieces: Iterable[bytes], *, mtime_ns: int, exec: bool) -> Path:
        if path == self.no_write:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write_temp(path, pieces, mtime_ns=mtime_ns, exec=exec)

    def read(self, path: str) -> tuple[bytes, Stat]:
        if path == self.no_read:
            raise OSError(errno.EIO, "Input/output error")
        return super().read(path)


def _sync_with(client: Client, fs: LocalFS) -> SyncResult:
    async def go() -> SyncResult:
        index = Index.open(client.folder / ".linesync" / "index.sqlite3")
        try:
            async with Remote(client.config.server, client.config.token) as remote:
                return await Engine(client.folder, client.config, remote, index, fs=fs).sync_once()
        finally:
            index.close()

    return asyncio.run(go())


def test_status_tells_last_sync_and_pending_both_ways(pair: tuple[Client, Client]) -> None:
    a, b = pair
    code, st = _json(a.folder)
    assert code == 0 and st["last_synced_ns"] is None
    assert st["pending"]["upload_files"] == 0 and st["pending"]["download_files"] == 0
    (a.folder / "one.txt").write_bytes(b"x" * 1000)
    (a.folder / "sub").mkdir()
    (a.folder / "sub" / "two.txt").write_bytes(b"y" * 234)
    code, st = _json(a.folder)
    assert code == 0
    assert st["pending"]["upload_files"] == 2  # the folder is not counted
    assert st["pending"]["upload_bytes"] == 1234
    code, text, _ = _cli("status", str(a.folder))
    assert "last synced: never" in text
    assert "pending uploads: 2 file(s), 1.2 KiB; downloads: 0 file(s), 0 bytes" in text
    assert "upload" in text and "sub/two.txt" in text  # the op-by-op listing stays
    assert a.sync_once().converged
    code, st = _json(a.folder)
    assert st["last_synced_ns"] is not None
    assert st["last_run"]["uploaded"] == 2 and st["last_run"]["converged"]
    assert st["pending"]["upload_files"] == 0
    code, text, _ = _cli("status", str(a.folder))
    assert "in sync" in text and "last synced: 20" in text and "s ago" in text
    # B has not synced: it would download both files, 1,234 bytes.
    code, st = _json(b.folder)
    assert (st["pending"]["download_files"], st["pending"]["download_bytes"]) == (2, 1234)
    assert st["last_synced_ns"] is None
    assert b.sync_once().converged
    code, st = _json(b.folder)
    assert st["pending"]["download_files"] == 0 and st["last_synced_ns"] is not None


def test_files_it_could_not_write_or_read_are_listed_with_why(pair: tuple[Client, Client]) -> None:
    a, b = pair
    (a.folder / "ok.txt").write_text("fine\n")
    (a.folder / "big.txt").write_text("no room for this one\n")
    assert a.sync_once().converged
    (b.folder / "mine.txt").write_text("cannot be read\n")
    r = _sync_with(b, NoRoom(b.folder, no_write="big.txt", no_read="mine.txt"))
    assert not r.converged
    code, st = _json(b.folder)
    failed = st["last_run"]["failed"]
    assert "No space left" in failed["big.txt"] and failed["big.txt"].startswith("could not write")
    assert "Input/output error" in failed["mine.txt"] and "could not read" in failed["mine.txt"]
    assert "ok.txt" not in failed
    assert st["last_synced_ns"] is None  # it never converged
    code, text, _ = _cli("status", str(b.folder))
    assert "could not read or write (2)" in text
    assert "big.txt: could not write it: [Errno 28] No space left on device" in text
    assert "did not finish in sync" in text
    assert "    - big.txt: [Errno 28] No space left on device; retried next round" in text
    # Room again: the next sync converges and the list is gone.
    assert b.sync_once().converged
    code, st = _json(b.folder)
    assert st["last_run"]["failed"] == {} and st["last_synced_ns"] is not None


def test_last_error_and_an_unreachable_server(
    pair: tuple[Client, Client], server: ServerProc
) -> None:
    a, _ = pair
    (a.folder / "n.txt").write_text("1\n")
    assert a.sync_once().converged
    server.stop()
    code, _, err = _cli("sync", str(a.folder), "--retry-for", "0")
    assert code == 5, err
    code, st = _json(a.folder)
    assert code == 5  # what a sync would do cannot be told
    assert st["pending"] is None and "cannot reach" in st["pending_error"]
    assert "cannot reach" in st["last_error"]["message"]
    assert st["last_synced_ns"] is not None  # the earlier successful sync
    code, text, _ = _cli("status", str(a.folder))
    assert code == 5
    assert "last error" in text and "cannot reach" in text
    assert "cannot tell what a sync would do now" in text


def test_conflict_copies_are_listed(pair: tuple[Client, Client]) -> None:
    a, b = pair
    (a.folder / "pic.bin").write_bytes(b"\x00one")
    assert a.sync_once().converged and b.sync_once().converged
    (a.folder / "pic.bin").write_bytes(b"\x00two from A")
    (b.folder / "pic.bin").write_bytes(b"\x00three from B")
    assert a.sync_once().converged
    r = b.sync_once()
    assert r.conflicts, r
    code, st = _json(b.folder)
    assert st["conflicts"] == r.conflicts
    code, text, _ = _cli("status", str(b.folder))
    assert "conflict copies (1" in text and r.conflicts[0] in text
    code, text, _ = _cli("conflicts", str(b.folder))
    assert text.strip() == r.conflicts[0]


def _file(size: int, chash: bytes = b"h") -> Node:
    return Node(Kind.FILE, size, 1, chash=chash)


def test_summarize_counts_files_and_bytes_by_direction() -> None:
    st = Stat(1, 1, 1, 1)
    ops: list[pl.Op] = [
        pl.Upload("a", _file(10), 0),
        pl.Upload("d", Node(Kind.DIRECTORY), 0),  # a folder: no file, no bytes
        pl.Download("b", Version(3, _file(100, b"new")), None),
        # Only the time changes: a file to touch, no bytes to fetch.
        pl.Download("c", Version(4, _file(7, b"same")), Local(_file(7, b"same"), st)),
        pl.DeleteRemote("e", 2),
        pl.DeleteLocal("f", Local(_file(1), st), None),
        pl.MoveLocal("g", "h", Version(5, _file(1)), Local(_file(1), st), None),
    ]
    p = summarize(ops)
    assert (p.upload_files, p.upload_bytes) == (1, 10)
    assert (p.download_files, p.download_bytes) == (2, 100)
    assert (p.delete_on_server, p.delete_here, p.moves) == (1, 1, 1)


def test_ago() -> None:
    assert ago(None) == "never"
    assert ago(int(1000e9), now=1000 + 7200 + 5).endswith("(2 hours ago)")
    assert ago(int(1000e9), now=1000 + 59).endswith("(59 s ago)")
    assert ago(int(1000e9), now=1000 + 86400).endswith("(1 day ago)")
