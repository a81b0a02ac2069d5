"""`linesync serve` as a new user meets it: a port in use, bad option values,
Ctrl-C while devices are connected, and the commands it prints on first start
(finding 11 of issue 9)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from linesync.client.remote import Remote
from tests.support.server import ServerProc


def _serve(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linesync", "serve", "--data", str(data), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = _serve(tmp_path / "data", "--port", str(port))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "--port" in out.stderr  # it says what to do


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rate", "0"], "greater than 0"),
        (["--rate", "-5"], "greater than 0"),
        (["--rate", "nan"], "greater than 0"),
        (["--header-timeout", "soon"], "is not a number"),
        (["--max-connections", "0"], "greater than 0"),
        (["--limit", "max_chunk"], "unknown limit"),
        (["--limit", "no_such_limit=5"], "unknown limit"),
        (["--limit", "max_request_decoded=lots"], "is not a number"),
        (["--limit", "max_request_decoded=0"], "greater than 0"),
    ],
)
def test_bad_option_values_are_refused_clearly(tmp_path: Path, args: list[str], says: str) -> None:
    out = _serve(tmp_path / "data", "--port", "0", *args)
    assert out.returncode == 2, out.stdout
    assert "Traceback" not in out.stderr and "Error" not in out.stderr
    assert says in out.stderr


def test_limit_by_name_takes_effect(tmp_path: Path) -> None:
    """``--limit NAME=VALUE`` reaches the server: a 1 KiB JSON body limit
    refuses a 2 KiB body with that limit in the answer."""
    srv = ServerProc(tmp_path / "data", extra=["--limit", "max_json_body=1KiB"]).start()
    try:

        async def go() -> None:
            async with Remote(srv.url, srv.token) as r:
                me = await r.me()
                with pytest.raises(Exception) as err:
                    await r.missing(me.namespaces[0].id, [bytes(32)] * 60)
                assert "1024" in str(err.value)

        asyncio.run(go())
    finally:
        srv.stop()


def test_ctrl_c_with_devices_connected_stops_at_once_and_quietly(tmp_path: Path) -> None:
    """Two long-polls wait when the server gets SIGINT: they are answered at
    once (not cancelled after the graceful timeout), and the log has no
    traceback and no cancelled tasks."""
    srv = ServerProc(tmp_path / "data", extra=["--log-level", "info"]).start()
    answered: list[float] = []

    async def go() -> None:
        async with Remote(srv.url, srv.token) as r:
            me = await r.me()
            ns = me.namespaces[0]

            async def poll() -> None:
                await r.list_changes(ns.id, ns.cursor, wait=30)
                answered.append(time.monotonic())

            polls = [asyncio.create_task(poll()) for _ in range(2)]
            await asyncio.sleep(1.0)  # both are waiting now
            assert not answered
            assert srv.proc is not None
            srv.proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*polls), 20)
            assert all(t - sent < 2.5 for t in answered), "long-polls waited for the timeout"

    try:
        asyncio.run(go())
        assert srv.proc is not None
        assert srv.proc.wait(timeout=20) == 0
    finally:
        srv.stop()
    log = "".join(srv.log)
    assert "Traceback" not in log, log
    assert "Cancel" not in log, log
    assert "Exception in ASGI application" not in log, log


def test_first_start_prints_commands_that_run(tmp_path: Path) -> None:
    """The announced commands name a linesync that exists (``make serve`` does
    not put it on the PATH) and the data directory it must use."""
    srv = ServerProc(tmp_path / "data").start()
    # (the lines after "serving" are printed just after it; stopping the server
    # before they are would lose them)
    deadline = time.monotonic() + 20
    while not any(line.startswith("Another device:") for line in srv.log):
        assert time.monotonic() < deadline, "".join(srv.log)
        time.sleep(0.05)
    srv.stop()
    text = "".join(srv.log)
    init = next(line for line in text.splitlines() if line.startswith("Sync a folder:"))
    exe = init.split()[3]
    assert exe == "linesync" or os.access(exe, os.X_OK), init
    another = next(line for line in text.splitlines() if line.startswith("Another device:"))
    assert f"--data {(tmp_path / 'data').resolve()}" in another


def _wakeups(pid: int) -> int:
    """Times the server's main thread (the event loop) went to sleep and woke."""
    with open(f"/proc/{pid}/task/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc")


def test_an_idle_server_wakes_about_once_a_second_and_still_stops_at_once(
    tmp_path: Path,
) -> None:
    """uvicorn's loop ticks ten times a second (0.35% of a core here with no
    client at all); ours ticks once a second, and a signal still stops it at
    once rather than at the next tick."""
    srv = ServerProc(tmp_path / "data").start()
    try:
        assert srv.proc is not None
        pid = srv.proc.pid
        time.sleep(1.0)  # start-up done
        before = _wakeups(pid)
        time.sleep(4.0)
        woke = _wakeups(pid) - before
        assert woke <= 12, f"the idle server's loop woke {woke} times in 4 s"
        srv.proc.send_signal(signal.SIGINT)
        assert srv.proc.wait(timeout=20) == 0
    finally:
        srv.stop()
