"""Byte-counting TCP proxies on 127.0.0.1, optionally shaped (added one-way delay
and a bandwidth cap per direction), all served by one asyncio loop in a thread.

Counted: TCP payload bytes each way (what the applications wrote, every
protocol header included; not the TCP/IP headers). "up" is what the side that
opened the connection sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Counts:
    up: int = 0
    down: int = 0

    @property
    def total(self) -> int:
        return self.up + self.down

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.up + other.up, self.down + other.down)


@dataclass
class Shape:
    """One-way delay added to every byte, and a cap per direction (bytes/s)."""

    delay_s: float = 0.0
    rate_bps: float | None = None

    @staticmethod
    def slow() -> Shape:
        # RTT + 40 ms (20 ms each way), 50 Mbit/s each way.
        return Shape(delay_s=0.020, rate_bps=50e6 / 8)


class TokenBucket:
    def __init__(self, rate: float, burst: float = 32 * 1024) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        async with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= n
            if self.tokens < 0:
                # Pay the debt before anyone else may send in this direction.
                await asyncio.sleep(-self.tokens / self.rate)


@dataclass
class Proxy:
    target_host: str
    target_port: int
    shape: Shape = field(default_factory=Shape)
    counts: Counts = field(default_factory=Counts)
    port: int = 0
    connections: int = 0
    last_activity: float = 0.0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _buckets: dict[bool, TokenBucket] = field(default_factory=dict)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.shape.rate_bps:
            self._buckets = {
                True: TokenBucket(self.shape.rate_bps),
                False: TokenBucket(self.shape.rate_bps),
            }
        return self.port

    def reset(self) -> Counts:
        old, self.counts = self.counts, Counts()
        return old

    def _count(self, up: bool, n: int) -> None:
        if up:
            self.counts.up += n
        else:
            self.counts.down += n
        self.last_activity = time.monotonic()

    async def _pipe_plain(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool
    ) -> None:
        while data := await reader.read(65536):
            self._count(up, len(data))
            writer.write(data)
            await writer.drain()

    async def _pipe_shaped(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        bucket = self._buckets.get(up)

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while data := await reader.read(16384):
                self._count(up, len(data))
                if bucket is not None:
                    await bucket.take(len(data))
                await queue.put((time.monotonic() + self.shape.delay_s, data))
                if sender.done():
                    break
            await queue.put((time.monotonic() + self.shape.delay_s, b""))
            await sender
        finally:
            sender.cancel()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: bool
    ) -> None:
        try:
            if self.shape.delay_s or self.shape.rate_bps:
                await self._pipe_shaped(reader, writer, up)
            else:
                await self._pipe_plain(reader, writer, up)
            # Half-close: the other direction may still have bytes to carry.
            with contextlib.suppress(Exception):
                if writer.can_write_eof():
                    writer.write_eof()
        except (ConnectionError, OSError, asyncio.CancelledError):
            with contextlib.suppress(Exception):
                writer.transport.abort()

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            sreader, swriter = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            cwriter.transport.abort()
            return
        t1 = asyncio.create_task(self._pipe(creader, swriter, True))
        t2 = asyncio.create_task(self._pipe(sreader, cwriter, False))
        self._tasks.update((t1, t2))
        await asyncio.gather(t1, t2, return_exceptions=True)
        self._tasks.difference_update((t1, t2))
        for w in (cwriter, swriter):
            with contextlib.suppress(Exception):
                w.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)


class ProxyHub:
    """An event loop in a thread that hosts every proxy of a benchmark."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._proxies: list[Proxy] = []

    def proxy(self, target_port: int, shape: Shape | None = None) -> Proxy:
        p = Proxy("127.0.0.1", target_port, shape or Shape())
        asyncio.run_coroutine_threadsafe(p.start(), self._loop).result(10)
        self._proxies.append(p)
        return p

    def close_proxy(self, p: Proxy) -> None:
        if p in self._proxies:
            self._proxies.remove(p)
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(p.close(), self._loop).result(10)

    def close(self) -> None:
        for p in list(self._proxies):
            self.close_proxy(p)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()
