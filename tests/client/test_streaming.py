"""Streaming sync, tried as a user with two devices would: while one uploads a
big file, the other (watching) fetches its chunks as they reach the server,
so when the commit lands the file is written from what is already here, not
downloaded again. Nothing shows in the folder before the commit, and the
staging files go once they served."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from linesync.client.api import Client
from linesync.client.localfs import STATE_DIR
from linesync.client.remote import Remote
from linesync.protocol.schemas import CommitOp, CommitResponse, InlineChunk
from tests.support.proxy import ThreadProxy
from tests.support.server import ServerProc
from tests.support.watch import WatchThread, wait_until

MiB = 2**20
SIZE = 40 * MiB


def digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes()).hexdigest()


def staged(folder: Path) -> int:
    """Bytes in the folder's staging files."""
    d = folder / STATE_DIR / "streams"
    return sum(p.stat().st_size for p in d.iterdir()) if d.exists() else 0


class HeldCommit:
    """Holds the uploading client's commit of ``path`` until ``ready()`` holds
    (bounded), noting whether it did: the upload is then done and not yet
    committed, the window streaming sync works in."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, path: str, ready: Any) -> None:
        self.reached: bool | None = None
        real = Remote.commit_full

        async def held(
            remote: Remote, ns: int, ops: Sequence[CommitOp], chunks: Sequence[InlineChunk] = (),
            **kw: Any,
        ) -> CommitResponse:  # fmt: skip
            if self.reached is None and any(op.path == path for op in ops):
                deadline = time.monotonic() + 30
                while not ready() and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                self.reached = ready()
            return await real(remote, ns, ops, chunks, **kw)

        monkeypatch.setattr(Remote, "commit_full", held)


@pytest.mark.parametrize("stream", [True, False])
def test_a_big_file_is_fetched_while_it_is_uploaded(
    server: ServerProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    proxy = ThreadProxy(server.url)  # counts what B receives
    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "alpha"))
    b = Client.init(tmp_path / "B", server=proxy.url, token=server.new_token("admin", "beta"))
    data = random.Random(5).randbytes(SIZE)
    watch = WatchThread(b, stream=stream).start()
    try:
        assert wait_until(lambda: bool(watch.snapshot()), 30), "B's first round did not end"
        (a.folder / "video.bin").write_bytes(data)
        # Held until B staged the whole file (without streaming: not held).
        full = (lambda: staged(b.folder) >= SIZE) if stream else (lambda: True)
        held = HeldCommit(monkeypatch, "video.bin", full)
        proxy.reset()
        assert a.sync_once().uploaded == 1
        during = proxy.reset()
        target = b.folder / "video.bin"
        assert wait_until(lambda: target.exists() and target.stat().st_size == SIZE, 60)
        assert wait_until(lambda: digest(target) == hashlib.blake2b(data).hexdigest(), 30)
        after = proxy.reset()
        assert wait_until(lambda: staged(b.folder) == 0, 10), "a staging file stayed"
    finally:
        watch.close()
        proxy.close()
    assert held.reached is True
    if stream:
        # Every chunk was here before the commit; the file was then written from them.
        assert during.down >= SIZE, during
        assert after.down < MiB, after
    else:
        # Nothing before the commit; the long-poll's answer to it (with up to
        # 256 KiB of chunks inline) may reach B before A hears its commit's.
        assert during.down < MiB, during
        assert during.down + after.down >= SIZE, (during, after)
