"""A TCP proxy that counts the bytes each way, to measure what crosses the wire."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


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
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
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
        t1 = asyncio.create_task(self._pipe(creader, swriter, True))
        t2 = asyncio.create_task(self._pipe(sreader, cwriter, False))
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
