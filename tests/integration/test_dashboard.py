"""The Grafana dashboard in docs/ asks only for metrics the server exposes."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from tests.support.api import Api, Remote, User, admin, dir_op
from tests.support.server import ServerProc

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "linesync-dashboard.json"
# PromQL functions and keywords (everything else in an expression that looks like
# an identifier is a metric name).
_NOT_METRICS = {"sum", "by", "rate", "increase", "histogram_quantile", "le", "route", "status",
                "cache", "rate_interval"}  # fmt: skip


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {n for n in names - _NOT_METRICS if not n.startswith("__")}


def test_every_panel_queries_metrics_the_server_exposes(srv: ServerProc, user: User) -> None:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    wanted = set().union(*(_metric_names(e) for e in exprs))
    scraper = admin(srv, "token", "create", user.name, "--device", "prom", "--metrics")

    async def go() -> str:
        async with Remote(srv.url, user.token) as r:
            await r.commit(user.ns, [dir_op("d")])
            await r.list_changes(user.ns, None)
        async with Api(srv.url, scraper) as api:
            return (await api.get("/metrics")).expect(200).body.decode()

    text = asyncio.run(go())
    families = set(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    exposed = set()
    for name, kind in families:
        exposed.add(name)
        if kind == "counter":
            exposed.add(name if name.endswith("_total") else name + "_total")
        if kind == "histogram":
            exposed |= {name + "_bucket", name + "_sum", name + "_count"}
    # (families made on first use, such as GC's, appear once it has run: the
    # dashboard may name those; everything else must be there now)
    later = {"linesync_gc_runs_total", "linesync_gc_chunks_deleted_total",
             "linesync_auth_failures_total", "linesync_chunks_received_total",
             "linesync_chunk_bytes_received_total", "linesync_chunks_sent_total"}  # fmt: skip
    missing = wanted - exposed - later
    assert not missing, f"the dashboard asks for metrics /metrics does not have: {missing}"
    assert later <= set(_known_names()), later - set(_known_names())


def _known_names() -> list[str]:
    from linesync.server.metrics import HELP

    return list(HELP)
