"""Runs every scenario for every tool and records what it cost: wall time until B
matches A, bytes each way through the proxies, CPU seconds of every process."""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support import corpus as gen

from . import corpus
from .fstree import Hasher, State, diff, du
from .procs import CmdResult, run_cmd
from .proxy import ProxyHub, Shape
from .tools import Linesync, Rsync, Syncthing, Tool, ToolError

POLL = 0.02  # a changed path is looked at every 20 ms
POLL_TREE = 0.1  # a whole tree (initial sync) every 100 ms
TIMEOUT = 120.0  # B must match A within this
QUIET = 1.0  # after B matches, traffic must stop for this long (at most SETTLE_CAP)
SETTLE_CAP = 10.0
INITIAL_TIMEOUT = 300.0  # the first sync of the main corpus
NOOP_WATCH = 5.0  # watchers: nothing changed, watched this long


@dataclass
class Row:
    section: str  # main | slow | big | scale | latency | idle
    scenario: str
    tool: str
    run: int = 1
    time: float | None = None
    up: int | None = None
    down: int | None = None
    cpu: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int | None:
        return None if self.up is None or self.down is None else self.up + self.down

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["total"] = self.total
        return d


@dataclass
class Options:
    quick: bool = False
    runs: int = 3
    only: set[str] | None = None
    tools: list[str] = field(default_factory=lambda: ["linesync", "rsync", "unison", "syncthing"])
    scale: int = 0
    slow: bool = False
    idle: float = 30.0
    latency_trials: int = 20
    big: bool = True
    keep: bool = False

    def wants(self, key: str) -> bool:
        return self.only is None or key in self.only


def log(msg: str) -> None:
    print(f"[bench-peers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, opts: Options, tmp: Path, tool_classes: list[type[Tool]]) -> None:
        self.opts = opts
        self.tmp = tmp
        self.tool_classes = tool_classes
        self.hub = ProxyHub()
        self.hasher = Hasher()
        self.rows: list[Row] = []
        self.notes: dict[str, list[str]] = {}
        self.spec = corpus.QUICK if opts.quick else corpus.FULL
        self.quiet = QUIET / 2 if opts.quick else QUIET
        self.noop_window = 1.0 if opts.quick else NOOP_WATCH
        self._templates: dict[str, tuple[Path, State, dict[str, int]]] = {}

    def close(self) -> None:
        self.hub.close()

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        what = f"{row.section}/{row.scenario} {row.tool} run {row.run}"
        if row.error:
            log(f"{what}: FAILED {row.error}")
        else:
            t = "-" if row.time is None else f"{row.time:.3f} s"
            cpu = "-" if row.cpu is None else f"{row.cpu:.2f}"
            log(f"{what}: {t}, {row.total or 0:,} B, {cpu} CPU-s {row.extra or ''}")
        return row

    # -- corpora -----------------------------------------------------------------------
    def template(
        self, name: str, build: Callable[[Path], None]
    ) -> tuple[Path, State, dict[str, int]]:
        if name not in self._templates:
            root = self.tmp / f"template-{name}"
            root.mkdir()
            t0 = time.monotonic()
            build(root)
            corpus.age(root)
            state = self.hasher.state(root)
            sizes = self.hasher.sizes(root)
            log(
                f"corpus {name}: {len(state):,} files, {sum(sizes.values()) / 1e6:.1f} MB "
                f"in {time.monotonic() - t0:.1f} s"
            )
            self._templates[name] = (root, state, sizes)
        return self._templates[name]

    def new_tool(
        self, cls: type[Tool], name: str, template: Path, shape: Shape | None = None
    ) -> Tool:
        work = self.tmp / name
        if work.exists():
            shutil.rmtree(work)
        work.mkdir()
        corpus.copy_tree(template, work / "A")
        (work / "B").mkdir()
        return cls(work, self.hub, shape)

    def drop_tool(self, tool: Tool) -> None:
        try:
            tool.stop()
        finally:
            self.notes.setdefault(tool.label, [])
            for n in tool.notes:
                if n not in self.notes[tool.label]:
                    self.notes[tool.label].append(n)
            if not self.opts.keep:
                shutil.rmtree(tool.work, ignore_errors=True)

    # -- one measurement ---------------------------------------------------------------
    def _cpu_delta(self, tool: Tool, base: dict[int, float]) -> float:
        return sum(v - base.get(pid, 0.0) for pid, v in tool.cpu().items())

    def _settle(self, tool: Tool) -> None:
        end = time.monotonic() + SETTLE_CAP
        while time.monotonic() < end and time.monotonic() - tool.last_activity() < self.quiet:
            time.sleep(0.05)

    def _wait_tree(
        self,
        tool: Tool,
        want: State,
        sizes: dict[str, int],
        timeout: float,
        poll: float = POLL_TREE,
    ) -> str | None:
        """Wait until B's tree is ``want``; None, or why not."""
        deadline = time.monotonic() + timeout
        while True:
            tool.check_alive()
            t0 = time.monotonic()
            if self.hasher.sizes(tool.b) == sizes and self.hasher.state(tool.b) == want:
                return None
            # A big tree takes a while to walk: walk at most a third of the time (the tools
            # under test need the CPU).
            poll = max(poll, 2 * (time.monotonic() - t0))
            if time.monotonic() > deadline:
                return f"B did not match A in {timeout:.0f} s: " + diff(
                    want, self.hasher.state(tool.b)
                )
            time.sleep(poll)

    def _verify(self, tool: Tool, timeout: float = 0.0) -> str | None:
        want = self.hasher.state(tool.a)
        if timeout:
            return self._wait_tree(tool, want, self.hasher.sizes(tool.a), timeout)
        got = self.hasher.state(tool.b)
        return None if got == want else "B differs from A: " + diff(want, got)

    def initial(
        self,
        tool: Tool,
        section: str,
        want: State,
        sizes: dict[str, int],
        run: int,
        timeout: float = INITIAL_TIMEOUT,
        poll: float = POLL_TREE,
    ) -> Row:
        row = Row(section, corpus.INITIAL, tool.label, run)
        tool.reset_counts()
        base = tool.cpu()
        try:
            if tool.one_shot:
                results = tool.sync()
                tool.after_sync()
                row.time = sum(r.elapsed for r in results)
                row.extra["peak_rss"] = max(r.maxrss for r in results)
                self._finish(row, tool, base, sum(r.cpu for r in results))
                row.error = self._verify(tool)
            else:
                tool.prestart()
                base = tool.cpu()  # the peer's start-up is not the sync's
                t0 = time.monotonic()
                tool.start_watch()
                row.error = self._wait_tree(tool, want, sizes, timeout, poll)
                row.time = time.monotonic() - t0
                self._settle(tool)
                self._finish(row, tool, base)
                row.extra["rss"] = {d.role: d.rss() for d in tool.daemons}
        except ToolError as e:
            row.error = str(e)
            self._finish(row, tool, base)
        return self.add(row)

    def noop(self, tool: Tool, section: str, run: int) -> Row:
        row = Row(section, corpus.NOOP, tool.label, run)
        tool.reset_counts()
        base = tool.cpu()
        try:
            if tool.one_shot:
                results = tool.sync()
                tool.after_sync()
                row.time = sum(r.elapsed for r in results)
                self._finish(row, tool, base, sum(r.cpu for r in results))
            else:
                time.sleep(self.noop_window)
                row.extra["window_s"] = self.noop_window
                self._finish(row, tool, base)
            row.error = self._verify(tool)
        except ToolError as e:
            row.error = str(e)
            self._finish(row, tool, base)
        return self.add(row)

    def _finish(self, row: Row, tool: Tool, base: dict[int, float], cmd_cpu: float = 0.0) -> None:
        """Record bytes and CPU now (before any verification, which is not the tool's)."""
        if row.cpu is not None:
            return
        c = tool.counts()
        row.up, row.down = c.up, c.down
        row.cpu = self._cpu_delta(tool, base) + cmd_cpu

    def change(self, tool: Tool, section: str, change: corpus.Change, run: int) -> Row:
        row = Row(section, change.key, tool.label, run)
        tool.reset_counts()
        base = tool.cpu()
        try:
            if tool.one_shot:
                change.apply(tool.a, run)
                results = tool.sync()
                tool.after_sync()
                row.time = sum(r.elapsed for r in results)
                self._finish(row, tool, base, sum(r.cpu for r in results))
                row.error = self._verify(tool)
                note = self._mtime_error(tool, change)
                if note:
                    row.extra["note"] = note
            else:
                t0 = time.monotonic()
                touched = change.apply(tool.a, run)
                row.error = self._wait_paths(tool, change, touched, t0 + TIMEOUT)
                row.time = time.monotonic() - t0
                self._settle(tool)
                self._finish(row, tool, base)
                if row.error is None:
                    row.error = self._verify(tool, timeout=15)
        except (ToolError, OSError) as e:
            row.error = f"{type(e).__name__}: {e}"
            self._finish(row, tool, base)
        return self.add(row)

    def _mtime_error(self, tool: Tool, change: corpus.Change) -> str | None:
        if not change.mtime:
            return None
        a = (tool.a / corpus.TOUCHED).stat().st_mtime_ns
        b = (tool.b / corpus.TOUCHED).stat().st_mtime_ns
        return None if abs(a - b) < 10**9 else "the new mtime did not reach B (content did)"

    def _wait_paths(
        self, tool: Tool, change: corpus.Change, touched: list[str], deadline: float
    ) -> str | None:
        want = {p: self.hasher.file(tool.a, p) for p in touched}
        mtimes = {p: (tool.a / p).stat().st_mtime_ns for p in touched} if change.mtime else {}
        checked = time.monotonic()
        while True:
            if all(self.hasher.file(tool.b, p) == h for p, h in want.items()):
                try:
                    if all(
                        abs((tool.b / p).stat().st_mtime_ns - t) < 10**9 for p, t in mtimes.items()
                    ):
                        return None
                except FileNotFoundError:
                    pass
            now = time.monotonic()
            if now > deadline:
                return f"B did not match A in {TIMEOUT:.0f} s"
            if now - checked > 1:
                tool.check_alive()
                checked = now
            time.sleep(POLL)

    # -- extras ----------------------------------------------------------------------
    def latency(self, tool: Tool, run: int) -> Row:
        row = Row("latency", "watch-latency", tool.label, run)
        a, b = tool.a / corpus.SMALL_EDIT, tool.b / corpus.SMALL_EDIT
        original = a.read_bytes()
        lat: list[float] = []
        tool.reset_counts()
        base = tool.cpu()
        trials = self.opts.latency_trials
        for i in range(trials):
            content = gen.edit_middle_line(original, f"Latency trial {i}, run {run}.".encode())
            t0 = time.monotonic()
            a.write_bytes(content)
            while True:
                try:
                    if b.read_bytes() == content:
                        lat.append(time.monotonic() - t0)
                        break
                except FileNotFoundError:
                    pass
                if time.monotonic() - t0 > 30:
                    row.error = f"trial {i}: the edit did not arrive in 30 s"
                    break
                time.sleep(0.005)
            if row.error:
                break
            time.sleep(0.3)
        self._settle(tool)
        c = tool.counts()
        if lat:
            s = sorted(lat)
            row.time = statistics.median(s)
            row.extra = {
                "trials": len(s),
                "p50": statistics.median(s),
                "p99": s[max(0, -(-99 * len(s) // 100) - 1)],  # nearest rank
                "max": s[-1],
                "per_edit_bytes": c.total / len(s),
                "per_edit_cpu": self._cpu_delta(tool, base) / len(s),
            }
        row.up, row.down = c.up, c.down
        row.cpu = self._cpu_delta(tool, base)
        return self.add(row)

    def idle(self, tools: list[Tool], run: int) -> None:
        """CPU and peak RSS of every long-running process over the idle window."""
        seconds = self.opts.idle
        log(f"idle window: {seconds:g} s, {len(tools)} tool(s)")
        for tool in tools:
            tool.reset_counts()
        base = {tool.key: tool.cpu() for tool in tools}
        rss: dict[str, dict[str, int]] = {t.key: {d.role: 0 for d in t.daemons} for t in tools}
        t0 = time.monotonic()
        end = t0 + seconds
        while True:
            for tool in tools:
                for d in tool.daemons:
                    rss[tool.key][d.role] = max(rss[tool.key][d.role], d.rss())
            left = end - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(1.0, left))
        elapsed = time.monotonic() - t0
        for tool in tools:
            now, b = tool.cpu(), base[tool.key]
            cpu_pct = {
                d.role: 100 * (now.get(d.pid, 0.0) - b.get(d.pid, 0.0)) / elapsed
                for d in tool.daemons
            }
            c = tool.counts()
            row = Row("idle", "idle", tool.label, run, time=elapsed, up=c.up, down=c.down)
            row.cpu = sum(now.values()) - sum(b.get(p, 0.0) for p in now)
            row.extra = {
                "cpu_pct": cpu_pct,
                "rss": rss[tool.key],
                "cpu_pct_total": sum(cpu_pct.values()),
            }
            self.add(row)

    def big_file(self, tool: Tool, run: int) -> Row:
        row = Row("big", "big-file", tool.label, run)
        src = self.tmp / "big-200MB.bin"
        if not src.exists():
            src.write_bytes(gen.random_bytes(200_000_000, seed=4242))
        want = self.hasher.file(src.parent, src.name)
        size = src.stat().st_size
        tool.reset_counts()
        base = tool.cpu()
        dst = tool.a / corpus.BIG_FILE
        try:
            if tool.one_shot:
                os.link(src, dst)
                results = tool.sync()
                tool.after_sync()
                row.time = sum(r.elapsed for r in results)
                self._finish(row, tool, base, sum(r.cpu for r in results))
                row.error = self._verify(tool)
            else:
                t0 = time.monotonic()
                os.link(src, dst)
                b = tool.b / corpus.BIG_FILE
                deadline = t0 + 600
                while True:
                    try:
                        if (
                            b.stat().st_size == size
                            and self.hasher.file(tool.b, corpus.BIG_FILE) == want
                        ):
                            break
                    except FileNotFoundError:
                        pass
                    if time.monotonic() > deadline:
                        row.error = "B did not have it in 600 s"
                        break
                    tool.check_alive()
                    time.sleep(0.05)
                row.time = time.monotonic() - t0
                self._settle(tool)
                self._finish(row, tool, base)
        except (ToolError, OSError) as e:
            row.error = f"{type(e).__name__}: {e}"
            self._finish(row, tool, base)
        return self.add(row)

    # -- sections ----------------------------------------------------------------------
    def main_section(self) -> None:
        root, want, sizes = self.template("main", lambda r: corpus.build(r, self.spec))
        runs = self.opts.runs
        changes = [c for c in corpus.CHANGES if self.opts.wants(c.key)]
        kept: list[Tool] = []  # the last run's tools, alive for the idle window and the big file
        try:
            for run in range(1, runs + 1):
                last = run == runs
                for cls in self.tool_classes:
                    log(f"run {run}/{runs}: {cls.label}")
                    tool = self.new_tool(cls, f"{cls.key}-main-{run}", root)
                    keep = False
                    try:
                        tool.setup()
                        first = self.initial(tool, "main", want, sizes, run)
                        if first.error:
                            self._skip_rest(tool, run, changes, "skipped: initial sync failed")
                            continue
                        if self.opts.wants(corpus.NOOP):
                            self.noop(tool, "main", run)
                        for ch in changes:
                            self.change(tool, "main", ch, run)
                        if last and not tool.one_shot and self.opts.wants("latency"):
                            self.latency(tool, run)
                        keep = last
                    except Exception as e:  # a broken peer must not stop the others
                        log(traceback.format_exc())
                        self.add(Row("main", "error", tool.label, run, error=_err(e)))
                    finally:
                        if keep:
                            kept.append(tool)
                        else:
                            self.drop_tool(tool)
            # Idle: every tool of the last run at once, each measured on its own processes.
            if kept and self.opts.wants("idle"):
                self.idle(kept, runs)
            if self.opts.big and self.opts.wants("big-file"):
                for tool in kept:
                    try:
                        self.big_file(tool, runs)
                    except Exception as e:
                        log(traceback.format_exc())
                        self.add(Row("big", "big-file", tool.label, runs, error=_err(e)))
                    finally:
                        self.drop_tool(tool)
        finally:
            for tool in kept:
                self.drop_tool(tool)

    def _skip_rest(self, tool: Tool, run: int, changes: list[corpus.Change], why: str) -> None:
        keys = [corpus.NOOP] + [c.key for c in changes]
        for k in keys:
            self.rows.append(Row("main", k, tool.label, run, error=why))

    def slow_section(self) -> None:
        n = self.spec.small
        root, want, sizes = self.template("small", lambda r: corpus.build_small(r, n))
        for run in range(1, self.opts.runs + 1):
            for cls in self.tool_classes:
                log(f"slow link, run {run}: {cls.label}")
                tool = self.new_tool(cls, f"{cls.key}-slow-{run}", root, Shape.slow())
                try:
                    tool.setup()
                    first = self.initial(tool, "slow", want, sizes, run)
                    if first.error:
                        continue
                    self.change(tool, "slow", corpus.EDIT_SMALL, run)
                except Exception as e:
                    log(traceback.format_exc())
                    self.add(
                        Row("slow", "error", tool.label, run, error=f"{type(e).__name__}: {e}")
                    )
                finally:
                    self.drop_tool(tool)

    def scale_section(self) -> None:
        n = self.opts.scale
        root, want, sizes = self.template(f"scale-{n}", lambda r: corpus.build_scale(r, n))
        for cls in self.tool_classes:
            if cls.key == "linesync-watch" or cls.key == "unison":
                continue  # linesync's one-shot run covers the watcher too; unison is not asked for
            log(f"scale {n:,}: {cls.label}")
            tool = self.new_tool(cls, f"{cls.key}-scale", root)
            try:
                tool.setup()
                if isinstance(tool, Linesync):
                    self._scale_linesync(tool, n)
                elif isinstance(tool, Rsync):
                    first = self.initial(tool, "scale", want, sizes, 1)
                    first.extra["files"] = n
                    if not first.error:
                        r = self.noop(tool, "scale", 1)
                        r.scenario = "rescan"
                elif isinstance(tool, Syncthing):
                    first = self.initial(tool, "scale", want, sizes, 1, timeout=1800, poll=1.0)
                    first.extra["files"] = n
            except Exception as e:
                log(traceback.format_exc())
                self.add(Row("scale", "error", tool.label, 1, error=f"{type(e).__name__}: {e}"))
            finally:
                self.drop_tool(tool)

    def _scale_cmd(self, tool: Linesync, scenario: str, folder: Path, n: int) -> Row:
        row = Row("scale", scenario, tool.label, 1, extra={"files": n})
        tool.reset_counts()
        base = tool.cpu()
        r: CmdResult = run_cmd([tool.exe, "sync", str(folder), "-q"], timeout=3600, sample_rss=True)
        row.time = r.elapsed
        row.cpu = r.cpu + self._cpu_delta(tool, base)
        c = tool.counts()
        row.up, row.down = c.up, c.down
        row.extra["peak_rss"] = r.maxrss
        row.extra["rss_per_file"] = r.maxrss / n
        if not r.ok:
            row.error = f"linesync sync exited {r.rc}: {r.output[-300:]}"
        return self.add(row)

    def _baseline_rss(self, tool: Linesync) -> int | None:
        """Peak RSS of a one-shot sync of a one-file folder (another user's namespace)."""
        folder = tool.work / "C"
        folder.mkdir()
        (folder / "one.md").write_bytes(b"one file\n")
        data = ["--data", str(tool.data)]
        steps = [
            [tool.exe, "user", "add", "baseline", *data],
            [tool.exe, "token", "create", "baseline", "--device", "c", *data],
        ]
        for cmd in steps:
            r = run_cmd(cmd, timeout=60)
            if not r.ok:
                log(f"baseline RSS: {' '.join(cmd[1:3])} failed: {r.output[-200:]}")
                return None
        token = r.output.strip().splitlines()[-1]
        url = f"http://127.0.0.1:{tool.links[0][0].target_port}"
        r = run_cmd([tool.exe, "init", str(folder), "--server", url, "--token", token], timeout=60)
        r2 = run_cmd([tool.exe, "sync", str(folder), "-q"], timeout=120, sample_rss=True)
        if not (r.ok and r2.ok):
            log(f"baseline RSS: init/sync failed: {r.output[-200:]} {r2.output[-200:]}")
            return None
        self.add(Row("scale", "baseline-1-file", tool.label, 1, time=r2.elapsed, cpu=r2.cpu,
                     extra={"peak_rss": r2.maxrss}))  # fmt: skip
        return r2.maxrss

    def _scale_linesync(self, tool: Linesync, n: int) -> None:
        first = self._scale_cmd(tool, "initial-upload", tool.a, n)
        if first.error:
            return
        self._scale_cmd(tool, "rescan", tool.a, n)
        down = self._scale_cmd(tool, "initial-download", tool.b, n)
        index = du(tool.a / ".linesync")
        self.add(
            Row("scale", "index-size", tool.label, 1, extra={"bytes": index, "per_file": index / n})
        )
        if down.error:
            return
        base_rss = self._baseline_rss(tool)
        if base_rss:
            for r in (first, down):
                r.extra["baseline_rss"] = base_rss
                r.extra["marginal_per_file"] = (r.extra["peak_rss"] - base_rss) / n
        # Both watchers on the synced folders; one file changes in A.
        tool.start_watch()
        tool.one_shot = False  # from here on, the watchers sync (a one-shot sync would wait)
        t_start = time.monotonic()
        quiet_deadline = t_start + 600
        while time.monotonic() < quiet_deadline:
            # Started: the first pass (a rescan) is over when their CPU stops moving.
            c0 = sum(tool.cpu().values())
            time.sleep(1.0)
            if sum(tool.cpu().values()) - c0 < 0.05:
                break
        self.add(
            Row(
                "scale",
                "watch-startup",
                tool.label,
                1,
                time=time.monotonic() - t_start - 1.0,
                extra={"rss": {d.role: d.rss() for d in tool.daemons}},
            )
        )
        ch = corpus.Change("scale-edit", "one file edited", _scale_edit, "content")
        row = self.change(tool, "scale", ch, 1)
        row.scenario = "watch-change"
        rss = {d.role: d.rss() for d in tool.daemons}
        row.extra["rss"] = rss
        row.extra["rss_per_file"] = max(rss.get("client A", 0), rss.get("client B", 0)) / n

    def run(self) -> None:
        main_keys = {corpus.INITIAL, corpus.NOOP, "latency", "idle", "big-file"}
        main_keys |= {c.key for c in corpus.CHANGES}
        if self.opts.only is None or self.opts.only & main_keys:
            self.main_section()
        if self.opts.slow or (self.opts.only and "slow" in self.opts.only):
            self.slow_section()
        if self.opts.scale > 0 and self.opts.wants("scale"):
            self.scale_section()


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _scale_edit(root: Path, run: int) -> list[str]:
    rel = "s00/d00/f000050.md"
    p = root / rel
    p.write_bytes(gen.edit_middle_line(p.read_bytes(), b"An edit among many files."))
    return [rel]


def median_rows(rows: list[Row]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Per (section, scenario, tool): the median of every successful run, and failures."""
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.section, r.scenario, r.tool), []).append(r)
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for key, rs in groups.items():
        ok = [r for r in rs if not r.error]
        agg: dict[str, Any] = {"runs": len(rs), "ok": len(ok)}
        if not ok:
            agg["error"] = rs[0].error
        else:
            if len(ok) < len(rs):
                agg["note"] = f"{len(rs) - len(ok)} of {len(rs)} runs failed: {rs[0].error or ''}"
            for f in ("time", "up", "down", "cpu", "total"):
                vals = [getattr(r, f) for r in ok if getattr(r, f) is not None]
                agg[f] = statistics.median(vals) if vals else None
            agg["extra"] = ok[len(ok) // 2].extra if len(ok) % 2 else ok[0].extra
            if len(ok) > 1:
                agg["extra"] = {**ok[0].extra, **_median_extra([r.extra for r in ok])}
        out[key] = agg
    return out


def _median_extra(extras: list[dict[str, Any]]) -> dict[str, Any]:
    keys = set.intersection(*(set(e) for e in extras))
    out: dict[str, Any] = {}
    for k in keys:
        vals = [e[k] for e in extras]
        if all(isinstance(v, int | float) for v in vals):
            out[k] = statistics.median(vals)
    return out


def tool_classes(names: list[str]) -> tuple[list[type[Tool]], dict[str, str]]:
    from .tools import TOOLS

    classes: list[type[Tool]] = []
    missing: dict[str, str] = {}
    for name in names:
        for cls in TOOLS[name]:
            why = cls.available()
            if why:
                missing[cls.label] = why
            else:
                classes.append(cls)
    return classes, missing
