"""A one-shot sync retries what passes (server unreachable, 429, 502/503/504)
with backoff and the server's Retry-After, for a bounded time, then stops with
a clear message and exit code 5 (finding 8 of the audit)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiohttp import web

from linesync.cli.main import main as cli_main
from linesync.client.api import Client
from linesync.client.remote import Remote, RemoteUnavailable
from linesync.client.retry import (
    RetriesExhausted,
    RetryPolicy,
    delay,
    parse_retry_after,
    retry_after,
    retryable,
)
from linesync.protocol.errors import Code, LinesyncError
from tests.support.server import ServerProc
from tests.support.watch import wait_until, watching

# -- the pure parts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "asked", "jitter", "want"),
    [
        (0, 0.0, 0.0, 0.5),
        (1, 0.0, 0.0, 1.0),
        (5, 0.0, 0.0, 16.0),
        (6, 0.0, 0.0, 30.0),  # capped
        (60, 0.0, 0.0, 30.0),
        (10_000, 0.0, 0.0, 30.0),  # no overflow
        (0, 7.0, 0.0, 7.0),  # Retry-After wins when longer
        (6, 7.0, 0.0, 30.0),  # ...and the backoff when that is
        (5, 0.0, 1.0, 16.0 * 0.8),  # jitter takes up to a fifth off
        (5, 0.0, 0.5, 16.0 * 0.9),
        (5, 20.0, 1.0, 20.0),  # never under Retry-After
    ],
)
def test_backoff_doubles_is_capped_and_honours_retry_after(
    attempt: int, asked: float, jitter: float, want: float
) -> None:
    assert delay(attempt, first=0.5, cap=30.0, asked=asked, jitter=jitter) == pytest.approx(want)


@pytest.mark.parametrize(
    ("header", "want"),
    [
        ("3", 3.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("999999999", 86400.0),  # bounded
        ("-1", None),
        ("soon", None),
        ("1.5", None),  # the header is whole seconds or a date
        (None, None),
        ("", None),
    ],
)
def test_retry_after_header_in_seconds(header: str | None, want: float | None) -> None:
    assert parse_retry_after(header) == want


def test_retry_after_header_as_a_date() -> None:
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(42.0)
    earlier = format_datetime(now - timedelta(seconds=42), usegmt=True)
    assert parse_retry_after(earlier, now=now.timestamp()) == 0.0


@pytest.mark.parametrize(
    ("code", "worth"),
    [
        (Code.UNAVAILABLE, True),
        (Code.RATE_LIMITED, True),
        (Code.REQUEST_TIMEOUT, True),
        (Code.BAD_REQUEST, False),
        (Code.UNAUTHENTICATED, False),
        (Code.FORBIDDEN, False),
        (Code.CURSOR_INVALID, False),
        (Code.INTERNAL, False),
        (Code.PAYLOAD_TOO_LARGE, False),
    ],
)
def test_only_passing_failures_are_retried(code: Code, worth: bool) -> None:
    assert retryable(LinesyncError(code, "x")) is worth


def test_the_wait_asked_for_is_read_from_the_error() -> None:
    assert retry_after(LinesyncError(Code.RATE_LIMITED, "x", retry_after=4)) == 4.0
    for bad in ("4", None, True, -3, float("nan"), float("inf")):
        assert retry_after(LinesyncError(Code.RATE_LIMITED, "x", retry_after=bad)) == 0.0


def test_a_policy_gives_up_when_the_next_wait_would_end_past_its_time() -> None:
    now = [100.0]
    p = RetryPolicy(retry_for=10.0, clock=lambda: now[0])
    err = RemoteUnavailable("down")
    assert p.next_wait(0, 100.0, err) == 0.5
    now[0] = 105.0
    assert p.next_wait(3, 100.0, err) == 4.0  # ends at 109: still within 10 s
    now[0] = 107.0
    assert p.next_wait(3, 100.0, err) is None  # would end at 111
    slow = LinesyncError(Code.RATE_LIMITED, "slow down", retry_after=60)
    assert p.next_wait(0, 107.0, slow) is None  # the server asks for more than is left
    assert RetryPolicy(retry_for=0).next_wait(0, 100.0, err) is None
    assert p.next_wait(0, 107.0, LinesyncError(Code.BAD_REQUEST, "no")) is None


# -- against HTTP ----------------------------------------------------------------------

ME = b'{"user":"u","device":"d","token_role":"rw","namespaces":[]}'


@contextlib.contextmanager
def _flaky_server(answers: list[tuple[int, dict[str, str], bytes]]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that gives ``answers`` in turn (the last one
    for ever after); its URL."""
    served: list[int] = []
    loop = asyncio.new_event_loop()
    started = threading.Event()
    url: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        status, headers, body = answers[min(len(served), len(answers) - 1)]
        served.append(status)
        return web.Response(status=status, headers=headers, body=body)

    async def main() -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        url.append(f"http://127.0.0.1:{port}")
        return runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(main())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield url[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _me(url: str, policy: RetryPolicy) -> object:
    async def go() -> object:
        async with Remote(url, "lst_x", retry=policy) as r:
            return await r.me()

    return asyncio.run(go())


def test_429_and_503_are_retried_after_what_retry_after_says() -> None:
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    heard: list[tuple[Code, float]] = []
    answers = [
        (429, {"Retry-After": "3"}, b"slow down"),  # a proxy's, not ours: no JSON
        (503, {"Retry-After": "1"}, b"<html>maintenance</html>"),
        (502, {}, b"bad gateway"),
        (200, {"Content-Type": "application/json"}, ME),
    ]
    with _flaky_server(answers) as url:
        me = _me(
            url,
            RetryPolicy(retry_for=60, sleep=sleep, on_retry=lambda e, w: heard.append((e.code, w))),
        )
    assert getattr(me, "user", None) == "u"
    assert waits == [3.0, 1.0, 2.0]  # Retry-After where asked, else the backoff (0.5, 1, 2)
    assert [c for c, _ in heard] == [Code.RATE_LIMITED, Code.UNAVAILABLE, Code.UNAVAILABLE]


def test_a_server_that_keeps_failing_is_given_up_on_with_a_clear_error() -> None:
    clock = [0.0]

    async def sleep(s: float) -> None:
        clock[0] += s

    with _flaky_server([(503, {}, b"down")]) as url, pytest.raises(RetriesExhausted) as err:
        _me(url, RetryPolicy(retry_for=20, sleep=sleep, clock=lambda: clock[0]))
    assert err.value.attempts == 6  # waits 0.5 + 1 + 2 + 4 + 8 = 15.5; 16 more is past 20
    assert err.value.code is Code.UNAVAILABLE
    assert "could not be reached or was unavailable for 16 s" in err.value.message
    assert "--retry-for" in err.value.message


def test_an_answer_is_never_retried() -> None:
    body = b'{"error":{"code":"forbidden","message":"no"}}'
    answers = [(403, {"Retry-After": "1"}, body), (200, {}, ME)]
    with _flaky_server(answers) as url, pytest.raises(LinesyncError) as err:
        _me(url, RetryPolicy(retry_for=60, sleep=lambda s: asyncio.sleep(0)))
    assert err.value.code is Code.FORBIDDEN


# -- a one-shot sync against a real server -----------------------------------------------


def _restart_on_same_port(server: ServerProc, url: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    server.extra = [*server.extra, "--port", str(port)]
    server.start()
    assert server.url == url


def test_a_one_shot_sync_waits_for_a_server_that_comes_back(
    pair: tuple[Client, Client], server: ServerProc
) -> None:
    a, b = pair
    (a.folder / "x.md").write_text("x\n")
    assert a.sync_once().converged
    url = server.url
    server.stop()
    (a.folder / "y.md").write_text("written while the server is down\n")
    heard: list[tuple[Code, float]] = []
    out: list[object] = []

    def run() -> None:
        try:
            out.append(asyncio.run(a.sync(retry_for=60, on_retry=lambda e, w: heard.append(
                (e.code, w)))))  # fmt: skip
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert wait_until(lambda: len(heard) >= 3, 30), heard  # 0.5, 1, 2 s apart
    assert not out  # still trying
    _restart_on_same_port(server, url)
    t.join(60)
    assert out and not isinstance(out[0], BaseException), out
    r = out[0]
    assert getattr(r, "converged", False) and getattr(r, "uploaded", 0) == 1
    assert all(code is Code.UNAVAILABLE for code, _ in heard)
    assert [w for _, w in heard[:3]] == pytest.approx([0.5, 1.0, 2.0], rel=0.21)
    assert b.sync_once().converged
    assert (b.folder / "y.md").read_text() == "written while the server is down\n"


def test_a_rate_limited_sync_waits_as_long_as_the_server_asks(
    tmp_path: Path,
) -> None:
    server = ServerProc(tmp_path / "server", extra=["--rate", "0.5"]).start()  # burst 2.5
    try:
        a = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "a"))
        heard: list[tuple[LinesyncError, float]] = []
        for i in range(4):
            (a.folder / f"n{i}.md").write_text(f"note {i}\n")
            r = asyncio.run(a.sync(retry_for=60, on_retry=lambda e, w: heard.append((e, w))))
            assert r.converged and r.uploaded == 1
        assert heard, "the server never limited the rate"
        for exc, wait in heard:
            assert exc.code is Code.RATE_LIMITED
            assert exc.detail["retry_after"] >= 1
            assert wait >= exc.detail["retry_after"]  # never sooner than asked
        # Without retries the same burst is refused.
        with pytest.raises(LinesyncError) as err:
            for i in range(4):
                (a.folder / f"m{i}.md").write_text(f"more {i}\n")
                a.sync_once()
        assert err.value.code is Code.RATE_LIMITED
    finally:
        server.stop()


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli_main(list(args))
        except SystemExit as exc:  # argparse
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


def test_the_cli_gives_up_after_retry_for_with_exit_code_5(
    pair: tuple[Client, Client],
) -> None:
    a, _ = pair
    cfg = a.config.__class__(**{**a.config.__dict__, "server": _dead_url()})
    cfg.save(a.folder)
    (a.folder / "z.md").write_text("z\n")
    rc, out, err = _cli("sync", str(a.folder), "--retry-for", "2")
    assert rc == 5, (out, err)
    assert "retrying in" in err  # it did retry
    assert "could not be reached or was unavailable for" in err
    assert "nothing was deleted" in err and "--retry-for" in err
    rc, out, err = _cli("sync", str(a.folder), "--retry-for", "0")
    assert rc == 5, (out, err)
    assert "retrying in" not in err
    assert "cannot reach" in err


def test_watch_waits_as_long_as_a_rate_limiting_server_asks(tmp_path: Path) -> None:
    """The watch loop and its long-poll honour Retry-After too: after a 429 they
    wait what the server asked (5 s at one request per 5 s), not their own 1 s."""
    server = ServerProc(tmp_path / "server", extra=["--rate", "0.2"]).start()  # burst 1
    try:
        reports: list[str] = []
        Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "a"))
        a = Client(tmp_path / "A", report=reports.append)
        (a.folder / "note.md").write_text("hello\n")
        with watching(a) as (w,):
            assert wait_until(lambda: any(r.converged and r.uploaded for r in w.snapshot()), 90), (
                reports,
                w.snapshot(),
            )
        waits = [int(m.rsplit("retrying in ", 1)[1].split()[0]) for m in reports
                 if "too many requests" in m]  # fmt: skip
        assert waits, reports  # the server did limit it
        assert all(s >= 5 for s in waits), reports
    finally:
        server.stop()
