"""The watch loop leaves no task behind: across 100 long-poll timeouts and 100
rescan timeouts (both shortened) the number of asyncio tasks stays flat, and
none is left once it stops (finding 8 of the audit: two tasks leaked on every
60 s timeout)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from linesync.client import api
from linesync.client.api import Client
from linesync.client.remote import Remote
from linesync.client.retry import RetryPolicy
from tests.support.server import ServerProc


class _ShortPolls(Remote):
    """The real server, but a long-poll returns after 5 ms, as a 25 s one that
    saw nothing would: the same list call, without waiting."""

    polls = 0

    async def _exchange(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        headers: dict[str, str],
        body: bytes | list[bytes] | None,
        timeout: float | None,
    ) -> tuple[int, bytes]:
        if params and "wait" in params:
            _ShortPolls.polls += 1
            await asyncio.sleep(0.005)
            params = {k: v for k, v in params.items() if k != "wait"}
        return await super()._exchange(method, path, params, headers, body, timeout)


class _Client(Client):
    def _remote(self, retry: RetryPolicy | None = None) -> Remote:
        return _ShortPolls(self.config.server, self.config.token, retry=retry)


def test_the_watch_loop_leaks_no_task_across_100_timeouts(
    server: ServerProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "WATCH_RESCAN", 0.01)
    Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "a"))
    (tmp_path / "A" / "note.md").write_text("hello\n")
    client = _Client(tmp_path / "A")
    counts: list[int] = []
    _ShortPolls.polls = 0

    async def main() -> set[asyncio.Task[object]]:
        stop = asyncio.Event()
        watch = asyncio.create_task(
            client.watch(stop, on_result=lambda r: counts.append(len(asyncio.all_tasks())))
        )
        for _ in range(6000):  # at most 60 s
            if len(counts) >= 110 and _ShortPolls.polls >= 110 or watch.done():
                break
            await asyncio.sleep(0.01)
        stop.set()
        await watch
        return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]

    left = asyncio.run(main())
    assert len(counts) >= 110 and _ShortPolls.polls >= 110, (len(counts), _ShortPolls.polls)
    steady = counts[10:]
    assert max(steady) - min(steady) <= 1, steady  # flat, not one more per timeout
    assert max(steady) <= 4, steady  # main, watch, the long-poll, one in flight
    assert not left, left
