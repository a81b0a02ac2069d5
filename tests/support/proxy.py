"""A TCP proxy that counts the bytes each way, to measure what crosses the wire,
and can cut the connection after so many bytes (a network fault)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Counts:
    up: int = 0  # client → server
    down: int = 0  # server → client

    @property
    def total(self) -> int:
        return self.up + self.down


@dataclass
class ByteProxy:
    target_host: str
    target_port: int
    counts: Counts = field(default_factory=Counts)
    # Cut every connection once this many bytes went that way (then reset to None).
    cut_up_after: int | None = None
    cut_down_after: int | None = None
    cuts: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def reset(self) -> Counts:
        old, self.counts = self.counts, Counts()
        return old

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up: bool,
        other: asyncio.StreamWriter,
    ) -> None:
        try:
            while data := await reader.read(65536):
                seen = self.counts.up if up else self.counts.down
                limit = self.cut_up_after if up else self.cut_down_after
                if limit is not None and seen + len(data) > limit:
                    writer.write(data[: max(limit - seen, 0)])
                    self.cuts += 1
                    if up:
                        self.cut_up_after = None
                    else:
                        self.cut_down_after = None
                    other.transport.abort()  # the other side sees the line drop
                    writer.transport.abort()
                    return
                if up:
                    self.counts.up += len(data)
                else:
                    self.counts.down += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        sreader, swriter = await asyncio.open_connection(self.target_host, self.target_port)
        t1 = asyncio.create_task(self._pipe(creader, swriter, True, cwriter))
        t2 = asyncio.create_task(self._pipe(sreader, cwriter, False, swriter))
        self._tasks.update((t1, t2))
        await asyncio.gather(t1, t2, return_exceptions=True)
        self._tasks.difference_update((t1, t2))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


class ThreadProxy:
    """``ByteProxy`` running in a thread, so synchronous ``sync_once`` calls
    (each with its own event loop) can go through it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname and parts.port
        self.proxy = ByteProxy(parts.hostname, parts.port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(10)

    @property
    def counts(self) -> Counts:
        return self.proxy.counts

    def reset(self) -> Counts:
        """The counts so far; counting starts again from zero."""
        return self.proxy.reset()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
