"""The client's metrics, for ``linesync sync --watch --metrics-port PORT``.

One registry per process (like logging): every ``Remote`` counts its requests
here, and a watching sync its passes. Served by ``prometheus_client`` on
127.0.0.1 only, never on another address: the numbers name no file, but they
are nobody else's business."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from linesync.client.base import SyncResult

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_NS = re.compile(r"^/v1/(?:ns/\d+/)?")
_ID = re.compile(r"/\d+(?=/|$)")


def route_of(path: str) -> str:
    """``/v1/ns/12/chunks/get`` -> ``chunks/get``; ``/v1/ns/3/entries/99`` ->
    ``entries/{id}``: a label with a bounded set of values."""
    return _ID.sub("/{id}", _NS.sub("", path)) or "/"


class ClientMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "linesync_client_requests",
            "Requests to the server, by route and outcome (HTTP status, or unreachable).",
            ["route", "status"],
            registry=r,
        )
        self.seconds = Histogram(
            "linesync_client_request_seconds",
            "Time for the server to answer, by route (a long-poll: its wait included).",
            ["route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.sent = Counter(
            "linesync_client_sent_bytes",
            "Request body bytes sent, by route.",
            ["route"],
            registry=r,
        )
        self.received = Counter(
            "linesync_client_received_bytes",
            "Answer body bytes received (after decompression), by route.",
            ["route"],
            registry=r,
        )
        self.passes = Counter(
            "linesync_client_sync_passes", "Sync passes run (converged or not).", registry=r
        )
        self.files = Counter(
            "linesync_client_files",
            "Files and folders synced, by action (uploaded, downloaded, deleted_local, "
            "deleted_remote, moved, merged).",
            ["action"],
            registry=r,
        )
        self.conflicts = Counter("linesync_client_conflicts", "Conflict copies made.", registry=r)
        self.problems = Counter(
            "linesync_client_problems",
            "Files a pass could not read or write (each pass counts them again).",
            registry=r,
        )
        self.last_sync = Gauge(
            "linesync_client_last_sync_timestamp_seconds",
            "When a pass last converged (unix time): time() minus this is how far the "
            "folder may lag behind the server.",
            registry=r,
        )
        self.lag = Gauge(
            "linesync_client_journal_lag_entries",
            "Journal entries this device was behind the server when its last pull began "
            "(how far its cursor moved to catch up): the server shows every device's lag "
            "only as a histogram, without names.",
            registry=r,
        )
        self.behind = Gauge(
            "linesync_client_unsynced",
            "1 while the last pass did not converge (changes left to send or fetch), else 0.",
            registry=r,
        )

    def request(self, path: str, status: str, seconds: float, sent: int, received: int) -> None:
        route = route_of(path)
        self.requests.labels(route=route, status=status).inc()
        self.seconds.labels(route=route).observe(seconds)
        if sent:
            self.sent.labels(route=route).inc(sent)
        if received:
            self.received.labels(route=route).inc(received)

    def sync_pass(self, r: SyncResult) -> None:
        self.passes.inc()
        for action in ("uploaded", "downloaded", "deleted_local", "deleted_remote", "moved",
                       "merged"):  # fmt: skip
            n = getattr(r, action)
            if n:
                self.files.labels(action=action).inc(n)
        if r.conflicts:
            self.conflicts.inc(len(r.conflicts))
        if r.problems:
            self.problems.inc(len(r.problems))
        self.behind.set(0 if r.converged else 1)
        if r.converged:
            self.last_sync.set(time.time())

    def serve(self, port: int) -> None:
        """Serve ``/metrics`` on 127.0.0.1:``port`` from a thread of its own;
        OSError when the port is taken."""
        start_http_server(port, addr="127.0.0.1", registry=self.registry)


METRICS = ClientMetrics()
