"""A sync that stops on an error leaves nothing running: no download of it
may go on writing into the folder while the next sync starts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from linesync.client.api import Client
from linesync.client.engine import Engine
from linesync.client.index import Index
from linesync.client.remote import Remote, RemoteUnavailable
from linesync.client.tasks import gather_all
from linesync.core.ids import ChunkId
from linesync.protocol.framing import Frame
from tests.support import corpus


def test_gather_all_cancels_and_awaits_the_others_when_one_fails() -> None:
    finished: list[str] = []
    cancelled: list[str] = []

    async def slow(name: str) -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        finished.append(name)
        return name

    async def failing() -> str:
        await asyncio.sleep(0)
        raise RemoteUnavailable("gone")

    async def go() -> None:
        with pytest.raises(RemoteUnavailable):
            await gather_all(slow("a"), failing(), slow("b"))
        assert sorted(cancelled) == ["a", "b"] and finished == []
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert await gather_all(asyncio.sleep(0, "x"), asyncio.sleep(0, "y")) == ["x", "y"]

    asyncio.run(go())


class FlakyFetch(Remote):
    """The first chunk fetch of each file fails at once; the others are slow."""

    calls = 0

    async def fetch(
        self, ns: int, ids: Sequence[ChunkId], bases: Sequence[ChunkId | None] | None = None
    ) -> list[Frame]:
        FlakyFetch.calls += 1
        if FlakyFetch.calls <= 2:  # the group's prefetch, then the first file's fetch
            raise RemoteUnavailable("connection reset")
        await asyncio.sleep(0.5)
        return await super().fetch(ns, ids, bases)


def test_a_sync_stopped_by_an_error_leaves_no_download_running(
    pair: tuple[Client, Client],
) -> None:
    a, b = pair
    for i in range(6):  # too big to come inline with the list
        (a.folder / f"f{i}.bin").write_bytes(corpus.random_bytes(300_000 + i))
    assert a.sync_once().converged

    async def go() -> None:
        index = Index.open(b.folder / ".linesync" / "index.sqlite3")
        try:
            async with FlakyFetch(b.config.server, b.config.token) as remote:
                engine = Engine(b.folder, b.config, remote, index)
                with pytest.raises(RemoteUnavailable):
                    await engine.sync_once()
                left = asyncio.all_tasks() - {asyncio.current_task()}
                assert not left, left  # nothing of that sync still runs
        finally:
            index.close()

    asyncio.run(go())
    assert FlakyFetch.calls >= 3  # files were fetching when the sync stopped
    r = b.sync_once()
    assert r.converged and r.downloaded == 6
