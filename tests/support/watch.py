"""`Client.watch` on its own event loop in a thread, for tests that act on the
folder (and on other clients) while the watcher runs."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from linesync.client.api import Client
from linesync.client.engine import SyncResult


def wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``cond`` until it holds; bounded in time and in iterations."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / step) + 1):
        if cond():
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(step)
    return cond()


class WatchThread:
    def __init__(self, client: Client, **watch_args: Any) -> None:
        self.client = client
        self.watch_args = watch_args
        self.results: list[SyncResult] = []
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"watch-{client.folder.name}", daemon=True
        )

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread in close()
            self.error = exc
        finally:
            self._ready.set()

    def _on_result(self, r: SyncResult) -> None:
        with self._lock:
            self.results.append(r)

    def snapshot(self) -> list[SyncResult]:
        with self._lock:
            return list(self.results)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await self.client.watch(self._stop, on_result=self._on_result, **self.watch_args)

    def start(self) -> WatchThread:
        self._thread.start()
        assert self._ready.wait(timeout=10), "the watch thread did not start"
        return self

    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "watch did not stop within 60 s"
        if self.error is not None:
            raise AssertionError(f"watch failed: {self.error!r}") from self.error


@contextmanager
def watching(*clients: Client, **watch_args: Any) -> Iterator[list[WatchThread]]:
    threads = [WatchThread(c, **watch_args) for c in clients]
    try:
        for t in threads:
            t.start()
        yield threads
    finally:
        errors = []
        for t in threads:
            try:
                t.close()
            except AssertionError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def interrupt(proc: subprocess.Popen[Any], timeout: float = 30) -> int:
    """Stop a ``linesync sync --watch`` process as Ctrl-C does (killed if it
    does not end within ``timeout``); its exit code."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
