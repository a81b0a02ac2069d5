"""The HTTP listener: uvicorn, plus the connection limits it lacks.

uvicorn closes a kept-alive connection that stays idle, but not one that never
sends a request or sends its headers a byte at a time, and it accepts
connections until the process runs out of file descriptors. Here:

- a request's headers must be complete within ``header_timeout`` seconds of
  the connection opening (or of the request's first byte);
- at most ``max_connections`` are open: past it, the connection idle the
  longest (no request in progress: waiting, or still sending headers) is
  closed to make room, and only when every one is busy is the new one refused;
  a line says so in the log, at most once every 10 seconds;
- the open-file limit is raised to what the system allows, and the default
  cap stays below it, so ``accept`` never fails with EMFILE;
- a request's line and headers take at most ``MAX_HEAD_BYTES`` (the HTTP
  parser takes any length): past it, ``431`` and the connection is closed.

Body stalls are the application's (``body_idle_timeout``), idle kept-alive
connections uvicorn's (``keepalive_timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from types import FrameType
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from linesync.server import longpoll

log = logging.getLogger("linesync.server")

# File descriptors kept for the server's own use (databases, packs, logs: about
# 30) and for the connections accepted before the cap sees them (asyncio accepts
# up to ACCEPT_BATCH at a time, and a refused one's descriptor closes a loop
# iteration later).
RESERVED_FDS = 128
ACCEPT_BATCH = 16
LISTEN_BACKLOG = 2048
_WARN_EVERY = 10.0
MAX_HEAD_BYTES = 64 * 1024  # a request's line and headers, as sent
_TOO_BIG_TEXT = b"request headers are over 64 KiB\n"
_TOO_BIG = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TOO_BIG_TEXT), _TOO_BIG_TEXT)
)


def raise_open_file_limit(ceiling: int = 1 << 20) -> int:
    """Raise this process's soft open-file limit to its hard limit; the result."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard if hard != resource.RLIM_INFINITY else ceiling, ceiling)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft


def default_max_connections() -> int:
    return max(16, min(raise_open_file_limit() - RESERVED_FDS, 10_000))


class ConnectionGuard:
    """The open connections of one server, and which of them are idle."""

    def __init__(self, max_connections: int, header_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.open: set[GuardedProtocol] = set()
        self.idle: dict[GuardedProtocol, None] = {}  # oldest first
        self.evicted = 0
        self.refused = 0
        self._warned = -_WARN_EVERY

    def admit(self, conn: GuardedProtocol) -> bool:
        """Make room for ``conn``; False if it must be refused."""
        if len(self.open) >= self.max_connections:
            victim = next(iter(self.idle), None)
            self._warn()
            if victim is None:
                self.refused += 1
                return False
            self.evicted += 1
            victim.drop()
        self.open.add(conn)
        self.idle[conn] = None
        return True

    def busy(self, conn: GuardedProtocol) -> None:
        self.idle.pop(conn, None)

    def rest(self, conn: GuardedProtocol) -> None:
        if conn in self.open:
            self.idle.pop(conn, None)
            self.idle[conn] = None

    def gone(self, conn: GuardedProtocol) -> None:
        self.open.discard(conn)
        self.idle.pop(conn, None)

    def _warn(self) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            log.warning(
                "connection limit (%d) reached: closing idle connections to make room, "
                "refusing new ones while all are busy (see --max-connections)",
                self.max_connections,
            )


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol under a :class:`ConnectionGuard`."""

    guard: ConnectionGuard  # set on the subclass :func:`protocol_for` makes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._head_bytes: int | None = 0  # of the request's head so far (None: in its body)
        self._tail = b""  # the last bytes of the head so far (a blank line may straddle reads)
        if not self.guard.admit(self):
            self.connections.discard(self)
            transport.abort()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.gone(self)
        if self.cycle is not None and not self.cycle.response_complete:
            longpoll.hang_up(cast(dict[str, Any], self.cycle.scope))
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            # The head ends at the first blank line (a read may hold the start
            # of the body too); refused before the parser buffers any more.
            seen = self._tail + data
            end = seen.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._tail))
            self._tail = seen[-3:]
            if self._head_bytes > MAX_HEAD_BYTES:
                self._disarm()
                self._head_bytes = None
                if not self.transport.is_closing():
                    self.transport.write(_TOO_BIG)
                    self.transport.close()
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # the first byte of a request: its headers are due

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_bytes, self._tail = 0, b""  # a next request's head may follow

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._disarm()
        self.guard.busy(self)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle is None or self.cycle.response_complete:  # no pipelined request
            self.guard.rest(self)

    def drop(self) -> None:
        """Close this connection now (it is idle: nothing is lost)."""
        self._disarm()
        self.guard.gone(self)
        if not self.transport.is_closing():
            self.transport.abort()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.guard.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol_for(guard: ConnectionGuard) -> type[GuardedProtocol]:
    return type("Guarded", (GuardedProtocol,), {"guard": guard})


class Server(uvicorn.Server):
    """uvicorn's server, answering long-polls at once when it is asked to stop
    (instead of cancelling them after the graceful timeout), and accepting
    connections a few at a time (see :data:`ACCEPT_BATCH`; make its config with
    ``backlog=ACCEPT_BATCH``) from a long queue."""

    def __init__(self, config: uvicorn.Config, on_stop: Any) -> None:
        super().__init__(config)
        self.on_stop = on_stop
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        """uvicorn's loop, ticking once a second instead of ten times (the date
        header it refreshes changes once a second; an idle server wakes ten
        times less), and at once when asked to stop."""
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # on_tick's "a second passed"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        # asyncio took ``backlog`` both as the kernel's queue and as how many to
        # accept per wake-up: keep the batch, give the kernel its long queue back.
        for sock in sockets or []:
            sock.listen(LISTEN_BACKLOG)

    async def shutdown(self, sockets: Any = None) -> None:
        self.on_stop()
        await super().shutdown(sockets)
