"""The simulated network: the real client `Remote` API answered by the real
server application in the same process, with faults chosen by the world.

Requests reach the ASGI app one at a time (as if the server handled them in
arrival order); answers may come back late (reordered), be lost after the
server applied the request, or never be sent at all.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from linesync.client.remote import Remote, RemoteUnavailable

if TYPE_CHECKING:
    from tests.sim.world import ClientLife, World


class SimCrash(BaseException):
    """The client process died here: nothing after this point runs, no
    ``finally`` of ours cleans up (a BaseException, so no handler takes it)."""


class InlineExecutor(ThreadPoolExecutor):
    """Runs submitted work at once on the calling thread: with it as every
    executor, the event loop's order of events depends on the seed alone."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        f: Future[Any] = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting coroutine
            f.set_exception(exc)
        return f


async def asgi_call(
    app: Any, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, bytes]:
    """One HTTP exchange with an ASGI app, without a socket."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8440),
    }
    sent = False
    done = asyncio.Event()  # the client hangs up only once the answer is whole
    status = 0
    out: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            out.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    await app(scope, receive, send)
    return status, b"".join(out)


class SimRemote(Remote):
    """`Remote` whose transport is the world's in-process server."""

    def __init__(self, world: World, life: ClientLife, token: str) -> None:
        super().__init__("http://sim", token)
        self.world = world
        self.life = life

    async def __aenter__(self) -> SimRemote:
        return self

    async def close(self) -> None:
        return None

    async def _exchange(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        headers: dict[str, str],
        body: bytes | list[bytes] | None,
        timeout: float | None,
    ) -> tuple[int, bytes]:
        if isinstance(body, list):
            body = b"".join(body)
        sent = [(b"authorization", self._headers["Authorization"].encode())]
        # No Accept-Encoding: the answer comes back as the application made it.
        sent += [(k.lower().encode(), v.encode()) for k, v in headers.items()
                 if k.lower() != "accept-encoding"]  # fmt: skip
        query = urllib.parse.urlencode(params or {})
        world, life = self.world, self.life
        await world.before_request(life, method, path)
        # Sent is sent: the server finishes a request even if the client hangs up.
        status, raw = await asyncio.shield(
            world.server.handle(method, path, query, sent, body or b"")
        )
        if status >= 500:  # the server never fails a well-formed request
            world.errors.append(f"{method} {path}: HTTP {status} {raw[:200]!r}")
        await world.after_request(life, method, path)
        return status, raw


def unavailable(what: str) -> RemoteUnavailable:
    return RemoteUnavailable(f"cannot reach http://sim: {what}")


async def yield_times(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)
