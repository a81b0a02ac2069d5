"""Smoke test of `make bench-peers`: `python -m bench.peers --quick` against linesync
(both modes) and rsync, through the byte-counting proxies, writing a results
section into a scratch file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bench.peers.corpus import CHANGES, INITIAL, NOOP
from bench.peers.report import BEGIN, END

REPO = Path(__file__).resolve().parents[2]
HAVE_RSYNC = Path("/usr/bin/rsync").exists()
SCENARIOS = [INITIAL, NOOP, *(c.key for c in CHANGES)]
LINESYNC = ["linesync (watch)", "linesync (one-shot)"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench-peers") / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\nProse written by hand stays.\n")
    tools = "linesync,rsync" if HAVE_RSYNC else "linesync"
    args = [sys.executable, "-m", "bench.peers", "--quick", "--tools", tools,
            "--idle", "1", "--trials", "3", "--out", str(out)]  # fmt: skip
    run = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads((out.parent / "bench" / "results.json").read_text())
    return {"stdout": run.stdout, "stderr": run.stderr, "doc": out.read_text(), **results}


def _main_rows(bench: dict[str, Any], tool: str) -> dict[str, dict[str, Any]]:
    return {
        m["scenario"]: m for m in bench["medians"] if m["section"] == "main" and m["tool"] == tool
    }


def _check_tool(bench: dict[str, Any], tool: str) -> None:
    rows = _main_rows(bench, tool)
    assert sorted(rows) == sorted(SCENARIOS), (tool, sorted(rows))
    for scenario, m in rows.items():
        # Every scenario ends with B checked against A, file by file, by content hash.
        assert "error" not in m, (tool, scenario, m.get("error"), bench["stderr"][-3000:])
    first = rows[INITIAL]
    assert first["up"] > 0 and first["down"] > 0 and first["total"] > 0, first
    assert first["time"] > 0 and first["cpu"] > 0, first
    table_rows = [line for line in bench["stdout"].splitlines() if f"| {tool} |" in line]
    assert len(table_rows) >= len(SCENARIOS), table_rows


def test_linesync_rows_and_folders_match(bench: dict[str, Any]) -> None:
    for tool in LINESYNC:
        _check_tool(bench, tool)
        rows = _main_rows(bench, tool)
        # A one-line edit is cheap; a rename uploads nothing (generous bounds: a smoke test).
        assert rows["edit-mid"]["total"] < 64 * 1024, rows["edit-mid"]
        assert rows["rename"]["total"] < 64 * 1024, rows["rename"]
    lat = [m for m in bench["medians"] if m["section"] == "latency"]
    assert lat and "error" not in lat[0], lat
    idle = {m["tool"] for m in bench["medians"] if m["section"] == "idle"}
    assert set(LINESYNC) <= idle


def test_rsync_rows(bench: dict[str, Any]) -> None:
    if not HAVE_RSYNC:
        pytest.skip("rsync is not installed at /usr/bin/rsync: the benchmark ran without it")
    _check_tool(bench, "rsync")


def test_report_section_and_goals(bench: dict[str, Any]) -> None:
    doc = bench["doc"]
    assert doc.startswith("# Benchmarks\n\nProse written by hand stays.\n")
    assert doc.count(BEGIN) == 1 and doc.count(END) == 1
    assert "| goal |" in doc and "| scenario | tool | time (s) |" in doc
    goals = bench["goals"]
    assert goals and all(g["result"].split()[0] in {"pass", "miss", "n/a"} for g in goals)
