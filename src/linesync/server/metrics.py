"""The server's metrics, exposed with ``prometheus_client`` at ``/metrics``.

Counters are made on first use (``inc(name, value, **labels)``: a name keeps
the label names of its first use), plus a latency histogram per route, gauges
set at scrape time, and readings taken at scrape time from counters kept
elsewhere (the caches'). Each ``Metrics`` has its own registry, so several
servers in one process (tests) never mix their numbers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HELP = {
    "linesync_requests_total": "Requests answered, by route and HTTP status.",
    "linesync_request_bytes_total": "Request body bytes received, by route.",
    "linesync_response_bytes_total": "Response body bytes sent, by route.",
    "linesync_auth_failures_total": "Requests refused for a missing, bad or revoked token.",
    "linesync_commit_paths_total": "Paths in commits, by result (ok, conflict, ...).",
    "linesync_chunks_received_total": "Chunks stored from uploads and inline commits.",
    "linesync_chunk_bytes_received_total": "Stored bytes of the chunks received.",
    "linesync_chunks_sent_total": "Chunks sent to clients.",
    "linesync_gc_runs_total": "Garbage-collection rounds run by this process.",
    "linesync_gc_chunks_deleted_total": "Chunks garbage collection deleted.",
    "linesync_long_polls_waiting": "Long-polls parked, waiting for a commit.",
    "linesync_journal_lag_entries": "How far behind its journal's head each list request "
    "started, in entries (a device catching up asks from far behind). No label names a "
    "device or namespace: a metrics token must not see other users' activity.",
    "linesync_cache_hits_total": "Cache hits, by cache.",
    "linesync_cache_misses_total": "Cache misses, by cache.",
}

# One reading: labels and value.
Reading = tuple[dict[str, str], float]


class _Readings(Collector):
    """Counters kept elsewhere, read at scrape time."""

    def __init__(self) -> None:
        self.sources: dict[str, list[Callable[[], Iterable[Reading]]]] = {}

    def collect(self) -> Iterator[Metric]:
        for name, sources in sorted(self.sources.items()):
            readings = [r for source in sources for r in source()]
            labels = sorted({k for lab, _ in readings for k in lab})
            family = CounterMetricFamily(name, HELP.get(name, name), labels=labels)
            for lab, value in readings:
                family.add_metric([lab.get(k, "") for k in labels], value)
            yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}
        self._readings = _Readings()
        self.registry.register(self._readings)
        self.lag = Histogram(
            "linesync_journal_lag_entries",
            HELP["linesync_journal_lag_entries"],
            buckets=(0, 1, 10, 100, 1_000, 10_000, 100_000),
            registry=self.registry,
        )
        self.latency = Histogram(
            "linesync_request_seconds",
            "Time to answer a request (a long-poll: its last pass), by route.",
            ["route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Counter(
                name, HELP.get(name, name), sorted(labels), registry=self.registry
            )
        (counter.labels(**labels) if labels else counter).inc(value)

    def observe(self, route: str, seconds: float) -> None:
        self.latency.labels(route=route).observe(seconds)

    def read(self, name: str, source: Callable[[], Iterable[Reading]]) -> None:
        """Report ``source()``'s readings as counter ``name`` at each scrape."""
        self._readings.sources.setdefault(name, []).append(source)

    def set(self, name: str, value: float, **labels: str) -> None:
        gauge = self._gauges.get(name)
        if gauge is None:
            gauge = self._gauges[name] = Gauge(
                name, HELP.get(name, name), sorted(labels), registry=self.registry
            )
        (gauge.labels(**labels) if labels else gauge).set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
