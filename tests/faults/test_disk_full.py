"""Disk full on the client while downloading: a clear error, nothing corrupted
or deleted, and the sync completes once there is room again."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Iterable
from pathlib import Path

from linesync.client.api import Client
from linesync.client.engine import Engine, SyncResult
from linesync.client.index import Index
from linesync.client.localfs import LocalFS
from linesync.client.model import Stat
from linesync.client.remote import Remote
from tests.client.conftest import files
from tests.support import corpus


class FullDisk(LocalFS):
    """LocalFS whose disk is full: writes fail with ENOSPC after a few bytes,
    leaving a partial temporary file behind, as a real full disk does."""

    full = True

    def write_file(
        self, path: str, pieces: Iterable[bytes], *, mtime_ns: int, exec: bool,
        expect: Stat | None, sync_dir: bool = True,
    ) -> Stat:  # fmt: skip
        if not self.full:
            return super().write_file(
                path, pieces, mtime_ns=mtime_ns, exec=exec, expect=expect, sync_dir=sync_dir
            )

        def some_then_enospc() -> Iterable[bytes]:
            yield b"partial bytes"
            raise OSError(errno.ENOSPC, "No space left on device")

        return super().write_file(
            path,
            some_then_enospc(),
            mtime_ns=mtime_ns,
            exec=exec,
            expect=expect,
            sync_dir=sync_dir,
        )

    def write_temp(self, path: str, pieces: Iterable[bytes], *, mtime_ns: int, exec: bool) -> Path:
        if not self.full:
            return super().write_temp(path, pieces, mtime_ns=mtime_ns, exec=exec)

        def some_then_enospc() -> Iterable[bytes]:
            yield b"partial bytes"
            raise OSError(errno.ENOSPC, "No space left on device")

        return super().write_temp(path, some_then_enospc(), mtime_ns=mtime_ns, exec=exec)


def _sync(client: Client, fs: LocalFS) -> SyncResult:
    async def go() -> SyncResult:
        index = Index.open(client.folder / ".linesync" / "index.sqlite3")
        try:
            async with Remote(client.config.server, client.config.token) as remote:
                engine = Engine(client.folder, client.config, remote, index, fs=fs)
                return await engine.sync_once()
        finally:
            index.close()

    return asyncio.run(go())


def test_disk_full_while_downloading(pair: tuple[Client, Client]) -> None:
    a, b = pair
    (a.folder / "notes.md").write_bytes(corpus.markdown(200_000))
    (a.folder / "keep.md").write_text("version 1\n")
    assert a.sync_once().converged and b.sync_once().converged
    (a.folder / "keep.md").write_text("version 2, which B cannot store yet\n")
    (a.folder / "new.bin").write_bytes(corpus.random_bytes(300_000))
    assert a.sync_once().converged
    fs = FullDisk(b.folder)
    r = _sync(b, fs)
    assert not r.converged
    assert any("No space left" in p for p in r.problems), r.problems
    assert r.deleted_local == 0 and r.deleted_remote == 0
    got = files(b.folder)
    assert got["keep.md"] == b"version 1\n"  # the old version, whole
    assert "new.bin" not in got
    assert not any(name.startswith(".linesync-tmp") for name in got)  # cleaned up
    fs.full = False  # room again
    r = _sync(b, fs)
    assert r.converged, r.problems
    assert files(b.folder) == files(a.folder)
    assert a.sync_once().converged and files(a.folder)["keep.md"].startswith(b"version 2")
