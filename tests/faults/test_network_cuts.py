"""Network faults between a client and the server: the line drops in the middle
of a request body, or the answer to an applied commit is lost. The client
retries, nothing is lost or duplicated, and no deletion comes of it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from linesync.client.api import Client
from linesync.client.remote import Remote, RemoteUnavailable
from tests.client.conftest import files
from tests.support import corpus
from tests.support.proxy import ThreadProxy
from tests.support.server import ServerProc


@pytest.fixture
def cut(server: ServerProc) -> Iterator[ThreadProxy]:
    proxy = ThreadProxy(server.url)
    yield proxy
    proxy.close()


def _client(folder: Path, url: str, token: str) -> Client:
    return Client.init(folder, server=url, token=token)


def _history(server: ServerProc, path: str) -> list[int]:
    async def go() -> list[int]:
        async with Remote(server.url, server.token) as r:
            return [e.jid for e in (await r.history(1, path)).entries]

    return asyncio.run(go())


@pytest.mark.parametrize("after", [2_000, 200_000, 3_000_000])
def test_a_request_body_cut_midway_is_retried_and_nothing_is_lost(
    server: ServerProc, cut: ThreadProxy, tmp_path: Path, after: int
) -> None:
    a = _client(tmp_path / "A", cut.url, server.new_token("admin", "alpha"))
    (a.folder / "big.bin").write_bytes(corpus.random_bytes(6 * 2**20, seed=after))
    (a.folder / "notes.md").write_bytes(corpus.markdown(50_000))
    cut.proxy.cut_up_after = after  # the line drops while the client sends
    with pytest.raises(RemoteUnavailable):
        a.sync_once()
    assert cut.proxy.cuts == 1
    assert sorted(files(a.folder)) == ["big.bin", "notes.md"]  # nothing deleted here
    r = a.sync_once()  # the line is back
    assert r.converged and r.deleted_local == 0 and r.deleted_remote == 0
    b = _client(tmp_path / "B", server.url, server.new_token("admin", "beta"))
    assert b.sync_once().converged
    assert files(b.folder) == files(a.folder)


def test_an_applied_commit_whose_answer_is_lost_is_not_applied_twice(
    server: ServerProc, cut: ThreadProxy, tmp_path: Path
) -> None:
    a = _client(tmp_path / "A", cut.url, server.new_token("admin", "alpha"))
    (a.folder / "notes.md").write_text("first\n")
    assert a.sync_once().converged
    (a.folder / "notes.md").write_text("second\n")
    cut.reset()
    cut.proxy.cut_down_after = 20  # the server applies the commit; its answer is lost
    with pytest.raises(RemoteUnavailable):
        a.sync_once()
    applied = _history(server, "notes.md")
    assert len(applied) == 2  # the edit reached the server before the line dropped
    r = a.sync_once()
    assert r.converged and not r.conflicts, r
    assert _history(server, "notes.md") == applied  # the retry wrote nothing new
    b = _client(tmp_path / "B", server.url, server.new_token("admin", "beta"))
    assert b.sync_once().converged
    assert files(b.folder) == {"notes.md": b"second\n"}
