"""Long-polls from the other side: clients that hang up while their poll waits,
and a server stopped while thousands wait (server/longpoll.py)."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp

from tests.attack.conftest import Launch
from tests.attack.helpers import run
from tests.support.api import Api, admin, new_token, new_user, ns_path, parse_metrics
from tests.support.resources import own_open_files, served_files, wait_until
from tests.support.server import ServerProc

WAITING = "linesync_long_polls_waiting"


async def _waiting(srv: ServerProc, scraper: str) -> float:
    async with Api(srv.url, scraper) as api:
        return parse_metrics((await api.get("/metrics")).expect(200).body.decode())[WAITING]


async def _until_waiting(srv: ServerProc, scraper: str, n: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (now := await _waiting(srv, scraper)) != n:
        assert time.monotonic() < deadline, f"{now:g} long-polls waiting, not {n}"
        await asyncio.sleep(0.1)


def test_long_polls_of_clients_that_hung_up_are_let_go(launch: Launch) -> None:
    """300 long-polls (wait=60) wait; then 299 of their clients close their
    connections without a word. The server lets those go at once (its gauge of
    waiting polls drops to 1 and their sockets close) rather than holding each
    for its 60 s; the one left is still answered by a commit."""
    srv = launch()
    user = new_user(srv)
    scraper = admin(srv, "token", "create", user.name, "--device", "prom", "--metrics")
    port = int(srv.url.rsplit(":", 1)[1])
    polls = 300

    async def go() -> None:
        async with Api(srv.url, user.token) as api:
            cursor = (await api.get(ns_path(user.ns, "head"))).expect(200).json()["cursor"]
        assert await _waiting(srv, scraper) == 0
        # (the connections to PostgreSQL and S3, on shared stores, come and go
        # with load: only what the clients make the server hold is counted)
        baseline = served_files(srv)
        request = (
            f"GET {ns_path(user.ns, 'list')}?cursor={cursor}&wait=60 HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {user.token}\r\n\r\n"
        ).encode()
        conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            for _ in range(polls):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                conns.append((reader, writer))
            await _until_waiting(srv, scraper, polls, 30)
            for _, writer in conns[1:]:
                writer.close()
            hung_up = time.monotonic()
            await _until_waiting(srv, scraper, 1, 10)
            let_go = time.monotonic() - hung_up
            await asyncio.to_thread(
                wait_until, lambda: served_files(srv) <= baseline + 1, 10, "their sockets closed"
            )
            async with Api(srv.url, user.token) as api:
                body = {"ops": [{"path": "news", "kind": "directory"}]}
                (await api.post(ns_path(user.ns, "commit"), json_body=body)).expect(200)
            head = await asyncio.wait_for(conns[0][0].readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200"), head
        finally:
            for _, writer in conns:
                writer.close()
            await asyncio.gather(*(w.wait_closed() for _, w in conns), return_exceptions=True)
        print(f"{polls - 1} hung-up long-polls let go {let_go:.2f} s after their clients left")
        assert await _waiting(srv, scraper) == 0

    run(go())


def test_stopping_answers_thousands_of_waiting_long_polls_at_once(launch: Launch) -> None:
    """2,000 long-polls (four devices, 500 each: within each token's burst) wait
    when the server gets SIGTERM. Every one is answered
    (200, nothing new, its own cursor: the client just polls again, elsewhere or
    later) instead of being cut off after the graceful stop's timeout; the server
    exits cleanly, with no traceback in its log."""
    srv = launch()
    user = new_user(srv)
    scraper = admin(srv, "token", "create", user.name, "--device", "prom", "--metrics")
    tokens = [user.token] + [new_token(srv, user.name, f"dev{i}") for i in range(3)]
    polls = 2000

    async def go() -> None:
        async with Api(srv.url, user.token) as api:
            cursor = (await api.get(ns_path(user.ns, "head"))).expect(200).json()["cursor"]
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        timeout = aiohttp.ClientTimeout(total=90)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def poll(i: int) -> tuple[int, object]:
                async with session.get(
                    srv.url + ns_path(user.ns, "list"),
                    headers={"Authorization": f"Bearer {tokens[i % 4]}"},
                    params={"cursor": cursor, "wait": "60"},
                ) as r:
                    return r.status, await r.json()

            tasks = [asyncio.create_task(poll(i)) for i in range(polls)]
            await _until_waiting(srv, scraper, polls, 60)
            assert srv.proc is not None
            srv.proc.send_signal(signal.SIGTERM)
            done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        failed = [d for d in done if not isinstance(d, tuple)]
        assert not failed, (len(failed), failed[:3])
        for status, doc in done:  # type: ignore[misc]
            assert status == 200, doc
            assert doc == {"entries": [], "cursor": cursor}, doc

    with own_open_files(polls + 200):
        run(go())
    assert srv.proc is not None
    # (uvicorn raises the signal again once it has stopped: -SIGTERM is its clean exit)
    assert srv.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    log = "".join(srv.log)
    assert "Traceback" not in log, log[-3000:]
    assert "Exception in ASGI application" not in log, log[-3000:]
