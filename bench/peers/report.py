"""Tables, goals, charts and the results file of a benchmark run."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

from . import corpus
from .runner import Row, median_rows

BEGIN = "<!-- bench-peers:begin -->"
END = "<!-- bench-peers:end -->"
KIB = 1024
MIB = 2**20
LS_MODES = ["linesync (one-shot)", "linesync (watch)"]
PEERS = ["rsync", "unison", "syncthing"]
CONTENT = ["edit-mid", "insert-top", "append-log", "binary-4k"]
METADATA = ["touch", "rename", "delete"]
SMALL_CHANGES = [c.key for c in corpus.CHANGES]

Agg = dict[str, Any]
SCALE_STEPS = {
    ("initial-upload", "linesync"): "first `linesync sync` in A (scan, hash, upload)",
    ("rescan", "linesync"): "`linesync sync` in A again, nothing changed",
    ("initial-download", "linesync"): "first `linesync sync` in B (download)",
    ("baseline-1-file", "linesync"): "`linesync sync` of a 1-file folder (RSS baseline)",
    ("index-size", "linesync"): "index size (A/.linesync)",
    ("watch-startup", "linesync"): "`sync --watch` on A and B: start-up until CPU is quiet",
    ("watch-change", "linesync"): "one file edited, watchers running: until B has it",
    (corpus.INITIAL, "rsync"): "first sync (A → empty B)",
    (corpus.NOOP, "rsync"): "sync again, nothing changed",
    ("rescan", "rsync"): "sync again, nothing changed",
    (corpus.INITIAL, "syncthing"): "first sync (A → empty B)",
}


# -- formatting -----------------------------------------------------------------------
def fsec(t: float | None) -> str:
    if t is None:
        return "—"
    return f"{t:.3f}" if t < 10 else f"{t:.1f}"


def fbytes(n: float | None) -> str:
    return "—" if n is None else f"{round(n):,}"


def fcpu(c: float | None) -> str:
    return "—" if c is None else f"{c:.2f}" if c < 10 else f"{c:.1f}"


def fmib(n: float | None) -> str:
    return "—" if n is None else f"{n / MIB:.1f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += [
        "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in r) + " |" for r in rows
    ]
    return "\n".join(out)


def short(err: str, n: int = 90) -> str:
    err = " ".join(err.split())
    return err if len(err) <= n else err[: n - 1] + "…"


class Report:
    def __init__(
        self,
        rows: list[Row],
        tools: list[str],
        missing: dict[str, str],
        notes: dict[str, list[str]],
        titles: dict[str, str],
        meta: dict[str, Any],
    ) -> None:
        self.rows = rows
        self.tools = tools
        self.missing = missing
        self.notes = notes
        self.titles = titles
        self.meta = meta
        self.med = median_rows(rows)

    def get(self, section: str, scenario: str, tool: str) -> Agg | None:
        a = self.med.get((section, scenario, tool))
        return a if a and "error" not in a else None

    def scenarios(self, section: str) -> list[str]:
        order = [corpus.INITIAL, corpus.NOOP, *SMALL_CHANGES, "edit-small", "big-file"]
        seen = {s for (sec, s, _t) in self.med if sec == section}
        return [s for s in order if s in seen] + sorted(seen - set(order))

    # -- tables --------------------------------------------------------------------------
    def scenario_table(self, sections: list[str]) -> str:
        out = []
        for section in sections:
            for sc in self.scenarios(section):
                for tool in self.tools:
                    a = self.med.get((section, sc, tool))
                    if a is None:
                        continue
                    title = self.titles.get(sc, sc)
                    if "error" in a:
                        out.append(
                            [title, tool, f"failed: {short(a['error'])}", "—", "—", "—", "—"]
                        )
                        continue
                    t = fsec(a["time"])
                    if a["time"] is None and sc == corpus.NOOP:
                        t = f"— ({a['extra'].get('window_s', 5):g} s watched)"
                    for note in (a.get("note"), a.get("extra", {}).get("note")):
                        if note:
                            t += f" ({short(note, 60)})"
                    out.append(
                        [
                            title,
                            tool,
                            t,
                            fbytes(a["up"]),
                            fbytes(a["down"]),
                            fbytes(a["total"]),
                            fcpu(a["cpu"]),
                        ]
                    )
        header = ["scenario", "tool", "time (s)", "bytes up", "bytes down", "total bytes", "CPU s"]
        return table(header, out)

    def latency_table(self) -> str:
        out = []
        for tool in self.tools:
            a = self.med.get(("latency", "watch-latency", tool))
            if a is None:
                continue
            if "error" in a:
                out.append([tool, f"failed: {short(a['error'])}", "—", "—", "—", "—", "—"])
                continue
            e = a["extra"]
            out.append(
                [
                    tool,
                    fsec(e.get("p50")),
                    fsec(e.get("p99")),
                    fsec(e.get("max")),
                    str(e.get("trials")),
                    fbytes(e.get("per_edit_bytes")),
                    fcpu(e.get("per_edit_cpu")),
                ]
            )
        header = [
            "tool",
            "p50 (s)",
            "p99 (s)",
            "max (s)",
            "trials",
            "bytes per edit",
            "CPU s per edit",
        ]
        return table(header, out)

    def idle_table(self) -> str:
        out = []
        for tool in self.tools:
            a = self.med.get(("idle", "idle", tool))
            if a is None:
                continue
            if "error" in a:
                out.append([tool, "—", f"failed: {short(a['error'])}", "—", "—"])
                continue
            e = a["extra"]
            for role, pct in e["cpu_pct"].items():
                out.append([tool, role, f"{pct:.3f}", fmib(e["rss"].get(role)), "—"])
            out.append(
                [
                    tool,
                    "**all**",
                    f"**{e['cpu_pct_total']:.3f}**",
                    f"**{fmib(sum(e['rss'].values()))}**",
                    fbytes(a["total"]),
                ]
            )
        header = ["tool", "process", "CPU % of one core", "peak RSS (MiB)", "bytes in the window"]
        return table(header, out)

    def scale_table(self) -> str:
        out = []
        for (section, sc, tool), a in self.med.items():
            if section != "scale":
                continue
            title = SCALE_STEPS.get((sc, tool.split(" ")[0]), sc)
            if "error" in a:
                out.append([title, tool, f"failed: {short(a['error'])}", "—", "—", "—", "—", "—"])
                continue
            e = a.get("extra", {})
            rss = e.get("peak_rss")
            if rss is None and isinstance(e.get("rss"), dict):
                rss = max(e["rss"].values(), default=None)
            per_file = e.get("rss_per_file")
            marginal = e.get("marginal_per_file")
            if sc == "index-size":
                size = f"{fbytes(e.get('bytes'))} B on disk ({e.get('per_file', 0):.0f} B per file)"
                out.append([title, tool, "—", size, "—", "—", "—", "—"])
                continue
            out.append(
                [
                    title,
                    tool,
                    fsec(a["time"]),
                    fbytes(a["total"]),
                    fcpu(a["cpu"]),
                    fmib(rss),
                    "—" if per_file is None else f"{per_file:,.0f}",
                    "—" if marginal is None else f"{marginal:,.0f}",
                ]
            )
        header = ["step", "tool", "time (s)", "total bytes", "CPU s", "RSS (MiB)",
                  "RSS / files (B)", "(RSS − 1-file RSS) / files (B)"]  # fmt: skip
        return table(header, out)

    # -- goals ---------------------------------------------------------------------------
    def goals(self) -> list[dict[str, Any]]:
        g: list[dict[str, Any]] = []

        def add(
            goal: str,
            tool: str,
            measured: str,
            limit: str,
            ratio: float | None,
            ok: bool | None,
            why: str = "",
        ) -> None:
            result = "n/a" if ok is None else ("pass" if ok else "miss")
            if why:
                result += f" ({why})"
            g.append(
                {
                    "goal": goal,
                    "tool": tool,
                    "measured": measured,
                    "limit": limit,
                    "ratio": ratio,
                    "result": result,
                }
            )

        def ratio_goal(
            goal: str, section: str, sc: str, field: str, peer: str, limit: float, unit: str
        ) -> None:
            if not any(k[0] == section for k in self.med):
                return  # the section was not run
            for mode in LS_MODES:
                if mode not in self.tools:
                    continue
                a, b = self.get(section, sc, mode), self.get(section, sc, peer)
                if a is None or b is None or not a.get(field) or not b.get(field):
                    why = "peer not run" if peer not in self.tools else "a run failed"
                    add(goal, mode, "—", f"≤ {limit:g}× {peer}", None, None, why)
                    continue
                r = a[field] / b[field]
                add(
                    goal,
                    mode,
                    f"{fsec(a[field])} {unit} vs {peer} {fsec(b[field])} {unit}",
                    f"≤ {limit:g}× {peer}",
                    r,
                    r <= limit,
                )

        ratio_goal("First sync time ≤ 2× rsync", "main", corpus.INITIAL, "time", "rsync", 2, "s")
        ratio_goal(
            "First sync time ≤ 0.5× Syncthing",
            "main",
            corpus.INITIAL,
            "time",
            "syncthing",
            0.5,
            "s",
        )
        ratio_goal("First sync CPU ≤ 3× rsync", "main", corpus.INITIAL, "cpu", "rsync", 3, "CPU-s")

        ran_main = any(k[0] == "main" for k in self.med)
        for sc in CONTENT if ran_main else []:
            for mode in LS_MODES:
                a = self.get("main", sc, mode)
                if mode not in self.tools:
                    continue
                if a is None:
                    add(
                        f"Content change ({sc}): fewer bytes than every peer, ≤ 2 KiB",
                        mode,
                        "—",
                        "",
                        None,
                        None,
                        "failed",
                    )
                    continue
                peers = [(p, self.get("main", sc, p)) for p in PEERS]
                peers_ok = [(p, x["total"]) for p, x in peers if x is not None]
                best = min(peers_ok, key=lambda x: x[1]) if peers_ok else None
                fewer = None if best is None else a["total"] < best[1]
                small_enough = None if sc == "binary-4k" else a["total"] <= 2 * KIB
                parts = [f"{fbytes(a['total'])} B"]
                if best:
                    parts.append(f"best peer {best[0]} {fbytes(best[1])} B")
                limit = "< every peer" + ("" if sc == "binary-4k" else ", ≤ 2,048 B")
                why = []
                if best is None:
                    why.append("no peer ran")
                if sc == "binary-4k":
                    why.append("2 KiB n/a: 4 KiB of random data cross each hop")
                checks = [c for c in (fewer, small_enough) if c is not None]
                ok = all(checks) if checks else None
                if fewer is False:
                    why.append(f"{best[0] if best else ''} sent fewer")
                if small_enough is False:
                    why.append("over 2 KiB")
                ratio = a["total"] / best[1] if best and best[1] else None
                add(
                    f"Content change: {self.titles.get(sc, sc)}",
                    mode,
                    "; ".join(parts),
                    limit,
                    ratio,
                    ok,
                    "; ".join(why),
                )

        sized = [(s, KIB) for s in METADATA] + [("move-folder", 2 * KIB)]
        for sc, limit_b in sized if ran_main else []:
            for mode in LS_MODES:
                if mode not in self.tools:
                    continue
                a = self.get("main", sc, mode)
                kind = "Metadata" if sc != "move-folder" else "Folder move"
                title = f"{kind}: {self.titles.get(sc, sc)}"
                if a is None:
                    add(title, mode, "—", f"≤ {limit_b:,} B", None, None, "failed")
                    continue
                add(
                    title,
                    mode,
                    f"{fbytes(a['total'])} B",
                    f"≤ {limit_b:,} B",
                    a["total"] / limit_b,
                    a["total"] <= limit_b,
                )

        for mode in LS_MODES if ran_main else []:
            if mode not in self.tools:
                continue
            got = [(sc, self.get("main", sc, mode)) for sc in SMALL_CHANGES]
            got_ok = [(sc, a["cpu"]) for sc, a in got if a is not None and a["cpu"] is not None]
            if not got_ok:
                add(
                    "CPU per small change ≤ 0.2 CPU-s (all processes)",
                    mode,
                    "—",
                    "≤ 0.2",
                    None,
                    None,
                )
                continue
            worst = max(got_ok, key=lambda x: x[1])
            over = [sc for sc, c in got_ok if c > 0.2]
            add(
                "CPU per small change ≤ 0.2 CPU-s (all processes)",
                mode,
                f"worst {worst[0]} {worst[1]:.3f} CPU-s"
                + (f"; over: {', '.join(over)}" if over else ""),
                "≤ 0.2 CPU-s",
                worst[1] / 0.2,
                not over,
            )

        lat = self.get("latency", "watch-latency", "linesync (watch)")
        if "linesync (watch)" in self.tools and ran_main:
            if lat is None:
                add(
                    "Watch latency p50 < 0.3 s, p99 < 1 s",
                    "linesync (watch)",
                    "—",
                    "",
                    None,
                    None,
                    "not measured or failed",
                )
            else:
                e = lat["extra"]
                add(
                    "Watch latency p50 < 0.3 s",
                    "linesync (watch)",
                    f"{e['p50']:.3f} s ({e['trials']} trials)",
                    "< 0.3 s",
                    e["p50"] / 0.3,
                    e["p50"] < 0.3,
                )
                add(
                    "Watch latency p99 < 1 s",
                    "linesync (watch)",
                    f"{e['p99']:.3f} s",
                    "< 1 s",
                    e["p99"] / 1.0,
                    e["p99"] < 1.0,
                )

        for mode in LS_MODES:
            a = self.get("idle", "idle", mode)
            if mode not in self.tools or a is None:
                continue
            e = a["extra"]
            pct = e["cpu_pct_total"]
            add(
                "Idle CPU ≤ 0.1% of one core (all processes)",
                mode,
                f"{pct:.3f}% over {a['time']:.0f} s",
                "≤ 0.1%",
                pct / 0.1,
                pct <= 0.1,
            )
            clients = [v for k, v in e["rss"].items() if k.startswith("client")]
            if clients:
                m = max(clients)
                add(
                    "Client RSS ≤ 80 MiB (idle, after first sync)",
                    mode,
                    f"{fmib(m)} MiB",
                    "≤ 80 MiB",
                    m / (80 * MIB),
                    m <= 80 * MIB,
                )
            s = e["rss"].get("server")
            if s is not None:
                add(
                    "Server RSS ≤ 100 MiB (idle, after first sync)",
                    mode,
                    f"{fmib(s)} MiB",
                    "≤ 100 MiB",
                    s / (100 * MIB),
                    s <= 100 * MIB,
                )

        ls1 = "linesync (one-shot)"
        rescan = self.get("scale", "rescan", ls1)
        if rescan is not None:
            n = rescan["extra"].get("files", 0)
            add(
                f"{n:,} files: unchanged rescan ≤ 2 s",
                ls1,
                f"{rescan['time']:.2f} s",
                "≤ 2 s",
                rescan["time"] / 2,
                rescan["time"] <= 2,
            )
            per = []
            for sc in ("initial-upload", "initial-download", "watch-change"):
                a = self.get("scale", sc, ls1)
                if a is not None and a["extra"].get("rss_per_file") is not None:
                    per.append((sc, a["extra"]["rss_per_file"]))
            marginal = [
                (sc, a["extra"]["marginal_per_file"])
                for sc in ("initial-upload", "initial-download")
                if (a := self.get("scale", sc, ls1)) and "marginal_per_file" in a["extra"]
            ]
            if marginal:
                add(
                    f"{n:,} files: client memory ≤ 1 KiB per file, above a 1-file sync's RSS",
                    ls1,
                    "; ".join(f"{sc} {v:,.0f} B" for sc, v in marginal),
                    "≤ 1,024 B per file ((RSS - 1-file RSS) / files)",
                    max(v for _, v in marginal) / KIB,
                    max(v for _, v in marginal) <= KIB,
                )
            if per:
                worst = max(per, key=lambda x: x[1])
                add(
                    f"{n:,} files: client memory ≤ 1 KiB per file",
                    ls1,
                    "; ".join(f"{sc} {v:,.0f} B" for sc, v in per),
                    "≤ 1,024 B per file (RSS / files)",
                    worst[1] / KIB,
                    worst[1] <= KIB,
                )
        ratio_goal(
            "Slow link: first sync of the small files ≤ 2× rsync",
            "slow",
            corpus.INITIAL,
            "time",
            "rsync",
            2,
            "s",
        )
        return g

    def goals_table(self, goals: list[dict[str, Any]]) -> str:
        rows = [
            [
                x["goal"],
                x["tool"],
                x["measured"],
                x["limit"],
                "—" if x["ratio"] is None else f"{x['ratio']:.2f}",
                f"**{x['result']}**" if x["result"].startswith("miss") else x["result"],
            ]
            for x in goals
        ]
        return table(["goal", "linesync", "measured", "limit", "ratio", "result"], rows)

    # -- charts --------------------------------------------------------------------------
    def charts(self, folder: Path) -> list[tuple[str, str]]:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return []
        folder.mkdir(parents=True, exist_ok=True)
        made: list[tuple[str, str]] = []
        scs = [s for s in self.scenarios("main")] + (["big-file"] if self.scenarios("big") else [])

        def value(sc: str, tool: str, field: str) -> float | None:
            a = self.get("big" if sc == "big-file" else "main", sc, tool)
            if a is None or a.get(field) is None:
                return None
            return float(a[field])

        for field, name, ylabel, floor in (
            ("time", "time.png", "seconds until B matches A (log)", 1e-3),
            ("total", "bytes.png", "bytes, both directions, every hop (log; 0 drawn as 1)", 1.0),
        ):
            fig, ax = plt.subplots(figsize=(13, 5.5))
            width = 0.8 / max(len(self.tools), 1)
            for i, tool in enumerate(self.tools):
                xs, ys = [], []
                for j, sc in enumerate(scs):
                    v = value(sc, tool, field)
                    if v is not None:
                        xs.append(j + i * width - 0.4 + width / 2)
                        ys.append(max(v, floor))
                ax.bar(xs, ys, width, label=tool)
            ax.set_yscale("log")
            ax.set_xticks(range(len(scs)))
            ax.set_xticklabels(
                [self.titles.get(s, s) for s in scs], rotation=30, ha="right", fontsize=8
            )
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=8)
            ax.grid(axis="y", alpha=0.3)
            fig.tight_layout()
            fig.savefig(folder / name, dpi=90)
            plt.close(fig)
            made.append((name, f"{field} per scenario per tool"))

        idle = [(t, self.get("idle", "idle", t)) for t in self.tools]
        idle_ok = [(t, a) for t, a in idle if a is not None]
        if idle_ok:
            fig, ax = plt.subplots(figsize=(8, 4.5))
            for i, (_tool, a) in enumerate(idle_ok):
                bottom = 0.0
                for role, rss in a["extra"]["rss"].items():
                    ax.bar(i, rss / MIB, bottom=bottom, color=None)
                    ax.text(i, bottom + rss / MIB / 2, role, ha="center", va="center", fontsize=7)
                    bottom += rss / MIB
            ax.set_xticks(range(len(idle_ok)))
            ax.set_xticklabels([t for t, _ in idle_ok], fontsize=8)
            ax.set_ylabel("RSS while idle (MiB), per process")
            ax.grid(axis="y", alpha=0.3)
            fig.tight_layout()
            fig.savefig(folder / "idle_rss.png", dpi=90)
            plt.close(fig)
            made.append(("idle_rss.png", "idle RSS per tool and process"))
        return made

    # -- documents -----------------------------------------------------------------------
    def markdown(self, charts: list[tuple[str, str]], chart_dir: str) -> str:
        m = self.meta
        goals = self.goals()
        parts = [
            "## linesync and its peers (`make bench-peers`)",
            "",
            f"Generated {m['date']} by `{m['command']}`; median of {m['runs']} run(s) "
            f"(the scale section and the 200 MB file: one run).",
            "",
            f"- Machine: {m['machine']['cpu']}, {m['machine']['cores']} cores, "
            f"{m['machine']['ram_gib']:.0f} GiB RAM, Linux {m['machine']['kernel']}, "
            f"Python {m['machine']['python']}; load average (1 min) {m['load']}.",
            "- Versions: " + "; ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
            f"- Corpus: {m['corpus']}.",
            "- Reproduce: `make bench-peers` (installs rsync, unison, syncthing and matplotlib "
            "when missing), or `.venv/bin/python -m bench.peers [--quick] [--runs N] "
            "[--only SCENARIO,...] [--tools linesync,rsync,unison,syncthing] [--scale N] [--slow] "
            "[--out docs/BENCHMARKS.md]`.",
        ]
        if self.missing:
            parts.append(
                "- Not run: " + "; ".join(f"{k} ({v})" for k, v in self.missing.items()) + "."
            )
        parts += ["", "### Goals", "", self.goals_table(goals), ""]
        parts += ["### Every scenario", "", self.scenario_table(["main", "big"]), ""]
        if any(k[0] == "latency" for k in self.med):
            parts += [
                "### Watch latency (a small file edited in A until B has it)",
                "",
                self.latency_table(),
                "",
            ]
        if any(k[0] == "idle" for k in self.med):
            parts += [
                f"### Idle ({m['idle_s']:g} s, nothing changing, after the scenarios)",
                "",
                self.idle_table(),
                "",
            ]
        if any(k[0] == "slow" for k in self.med):
            parts += [
                "### Slow link (RTT + 40 ms, 50 Mbit/s each way, through every proxy)",
                "",
                self.scenario_table(["slow"]),
                "",
            ]
        if any(k[0] == "scale" for k in self.med):
            parts += [f"### Scale ({m.get('scale', 0):,} small files)", "", self.scale_table(), ""]
        parts += ["### How it is measured", ""] + [f"- {x}" for x in m["method"]]
        for notes in self.notes.values():
            parts += [f"- {n}" for n in notes if n]
        if charts:
            parts += ["", "### Charts", ""]
            parts += [f"![{alt}]({chart_dir}/{name})" for name, alt in charts]
        return "\n".join(parts) + "\n"

    def stdout_text(self) -> str:
        goals = self.goals()
        parts = [
            "## Goals",
            "",
            self.goals_table(goals),
            "",
            "## Every scenario",
            "",
            self.scenario_table(["main", "big"]),
        ]
        for key, title, fn in (
            ("latency", "Watch latency", self.latency_table),
            ("idle", "Idle", self.idle_table),
            ("scale", "Scale", self.scale_table),
        ):
            if any(k[0] == key for k in self.med):
                parts += ["", f"## {title}", "", fn()]
        if any(k[0] == "slow" for k in self.med):
            parts += ["", "## Slow link", "", self.scenario_table(["slow"])]
        return "\n".join(parts) + "\n"

    def json(self) -> dict[str, Any]:
        return {
            **self.meta,
            "tools": self.tools,
            "not_run": self.missing,
            "notes": self.notes,
            "goals": self.goals(),
            "medians": [
                {"section": s, "scenario": sc, "tool": t, **a} for (s, sc, t), a in self.med.items()
            ],
            "rows": [r.to_json() for r in self.rows],
        }


def update_doc(path: Path, section: str) -> None:
    block = f"{BEGIN}\n{section}{END}\n"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            text = head + block.rstrip("\n") + tail
        else:
            text = text.rstrip("\n") + "\n\n" + block
    else:
        text = "# Benchmarks\n\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": psutil.virtual_memory().total / 2**30,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def git_describe(repo: Path) -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"git {rev}" + (" + uncommitted changes in src/" if dirty else "")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n")
