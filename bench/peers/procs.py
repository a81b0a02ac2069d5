"""Processes of the benchmark: long-running ones (servers, daemons, watchers) in
their own process groups, measured with psutil over their whole tree, and
one-shot commands measured with wait4's rusage (the command and every child it
waited for)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

_ALL: list[Proc] = []  # every long-running process, so a crash still kills them


def _tree(p: psutil.Process) -> list[psutil.Process]:
    try:
        return [p, *p.children(recursive=True)]
    except psutil.Error:
        return []


def tree_cpu(p: psutil.Process) -> float:
    """User+system seconds of a process tree, reaped children included."""
    total = 0.0
    for q in _tree(p):
        with contextlib.suppress(psutil.Error):
            t = q.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def tree_rss(p: psutil.Process) -> int:
    total = 0
    for q in _tree(p):
        with contextlib.suppress(psutil.Error):
            total += q.memory_info().rss
    return total


class Proc:
    """A long-running process in its own session (process group = pid)."""

    def __init__(
        self,
        role: str,
        args: list[str],
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.role = role
        self.args = args
        self.log = log
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.popen = subprocess.Popen(
                args,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        self.ps = psutil.Process(self.popen.pid)
        _ALL.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu(self) -> float:
        return tree_cpu(self.ps) if self.alive() else 0.0

    def rss(self) -> int:
        return tree_rss(self.ps) if self.alive() else 0

    def children(self) -> int:
        try:
            return len(self.ps.children(recursive=True))
        except psutil.Error:
            return 0

    def tail(self, n: int = 2000) -> str:
        if self.log and self.log.exists():
            return self.log.read_bytes()[-n:].decode(errors="replace")
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self in _ALL:
            _ALL.remove(self)
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Stragglers of the group (children that outlived the leader).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def stop_all() -> None:
    for p in list(_ALL):
        p.stop(timeout=5)


@dataclass
class CmdResult:
    args: list[str]
    rc: int
    elapsed: float
    cpu: float  # user+system of the command and the children it waited for
    # Bytes: peak RSS of the command's process tree, sampled every 50 ms. (Not wait4's
    # ru_maxrss: Linux counts in it the memory of the forking parent, the benchmark.)
    maxrss: int
    output: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out


def run_cmd(
    args: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300.0,
    sample_rss: bool = True,
) -> CmdResult:
    """Run a command to its end; its wall time, CPU seconds and peak RSS."""
    with tempfile.TemporaryFile() as out:
        t0 = time.monotonic()
        p = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timed_out = threading.Event()
        done = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        peak = [0]

        def sampler() -> None:
            try:
                ps = psutil.Process(p.pid)
            except psutil.Error:
                return
            while not done.wait(0.05):
                peak[0] = max(peak[0], tree_rss(ps))

        th = threading.Thread(target=sampler, daemon=True) if sample_rss else None
        if th:
            th.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            t1 = time.monotonic()
            done.set()
            timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        if th:
            th.join(1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)  # nothing of it may linger
        out.seek(0)
        text = out.read()[-4000:].decode(errors="replace")
    return CmdResult(
        args=args,
        rc=p.returncode,
        elapsed=t1 - t0,
        cpu=ru.ru_utime + ru.ru_stime,
        maxrss=peak[0],
        output=text,
        timed_out=timed_out.is_set(),
    )
