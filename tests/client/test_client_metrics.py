"""`sync --watch --metrics-port`: a watching client's Prometheus metrics, on
127.0.0.1 only, naming no file."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from linesync.client.api import Client
from linesync.client.metrics import route_of
from tests.support.api import parse_metrics
from tests.support.server import ServerProc


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v1/me", "me"),
        ("/v1/ns/12/list", "list"),
        ("/v1/ns/3/chunks/get", "chunks/get"),
        ("/v1/ns/3/entries/99", "entries/{id}"),
        ("/v1/ns/3/pending/7", "pending/{id}"),
        ("/healthz", "/healthz"),
    ],
)
def test_routes_are_labels_of_a_bounded_set(path: str, route: str) -> None:
    assert route_of(path) == route


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def test_a_watching_client_serves_its_metrics_on_loopback(
    pair: tuple[Client, Client], server: ServerProc
) -> None:
    a, b = pair
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "linesync", "sync", str(a.folder), "--watch", "--quiet",
         "--metrics-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    secret = "very-private-recipe.md"
    try:
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline:
            try:
                text = _scrape(port)
                if "linesync_client_sync_passes_total 1.0" in text:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        (a.folder / secret).write_text("two eggs\n")
        while time.monotonic() < deadline:
            m = parse_metrics(_scrape(port))
            if m.get('linesync_client_files_total{action="uploaded"}', 0) >= 1:
                break
            time.sleep(0.1)
        # Another device writes three files: the watcher catches up three
        # journal entries (or more: its own commit's may come in the same pull).
        for i in range(3):
            (b.folder / f"from-b-{i}.md").write_text(f"line {i}\n")
        assert b.sync_once().uploaded == 3
        while time.monotonic() < deadline:
            m = parse_metrics(_scrape(port))
            if m.get('linesync_client_files_total{action="downloaded"}', 0) >= 3:
                break
            time.sleep(0.1)
        text = _scrape(port)
        m = parse_metrics(text)
        assert m['linesync_client_files_total{action="downloaded"}'] == 3, text
        assert 3 <= m["linesync_client_journal_lag_entries"] <= 4, text
        assert m['linesync_client_files_total{action="uploaded"}'] >= 1, text
        assert m['linesync_client_requests_total{route="commit",status="200"}'] >= 1, text
        assert m['linesync_client_sent_bytes_total{route="commit"}'] > len(secret)
        assert m["linesync_client_last_sync_timestamp_seconds"] > time.time() - 60
        assert secret not in text and str(a.folder) not in text
        # It listens on the loopback address only.
        listening = [
            c.laddr
            for c in psutil.Process(proc.pid).net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN
        ]
        assert [(addr.ip, addr.port) for addr in listening] == [("127.0.0.1", port)], listening
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out


def test_metrics_port_needs_watch_and_a_free_port(
    pair: tuple[Client, Client], server: ServerProc
) -> None:
    a, _ = pair
    once = subprocess.run(
        [sys.executable, "-m", "linesync", "sync", str(a.folder), "--metrics-port", "9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert once.returncode == 2 and "--metrics-port needs --watch" in once.stderr, once
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run(
            [sys.executable, "-m", "linesync", "sync", str(a.folder), "--watch",
             "--metrics-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    assert busy.returncode == 2, busy
    assert f"cannot serve metrics on 127.0.0.1:{port}" in busy.stderr, busy.stderr
    assert "Traceback" not in busy.stderr
