"""What a server process costs: peak memory, CPU seconds, open files; and a server
started under resource limits (a small open-file limit, a loose umask).

Linux only, like the server's deployment target: peak RSS is the kernel's
high-water mark (``VmHWM``), reset by writing 5 to ``/proc/PID/clear_refs``, so
a measurement sees the peak of the window it covers and nothing before it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import psutil  # type: ignore[import-untyped]

from tests.support.deploy import SharedStores
from tests.support.server import ServerProc

MB = 10**6


def pid_of(srv: ServerProc) -> int:
    assert srv.proc is not None and srv.proc.poll() is None, "the server is not running"
    return srv.proc.pid


def _status(pid: int, key: str) -> int:
    """A ``kB`` line of /proc/PID/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def rss(pid: int) -> int:
    """Resident memory now, in bytes."""
    return _status(pid, "VmRSS")


def peak_rss(pid: int) -> int:
    """The highest resident memory since the process started or since the last
    :func:`reset_peak_rss`, in bytes."""
    return _status(pid, "VmHWM")


def reset_peak_rss(pid: int) -> None:
    """Start a new peak: VmHWM becomes the current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    assert peak_rss(pid) <= rss(pid) + 4 * 2**20, "clear_refs did not reset VmHWM"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process used so far (all its threads)."""
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def open_files(pid: int) -> int:
    """Open file descriptors of the process: files, sockets, pipes."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def connections(pid: int) -> int:
    """The process's TCP sockets that are connected (not listening)."""
    return sum(1 for c in psutil.Process(pid).net_connections(kind="tcp") if c.status != "LISTEN")


def _port(srv: ServerProc) -> int:
    return int(srv.url.rsplit(":", 1)[1].split("/")[0])


def client_connections(srv: ServerProc) -> int:
    """The server's TCP connections with its clients (on its own port)."""
    port = _port(srv)
    conns = psutil.Process(pid_of(srv)).net_connections(kind="tcp")
    return sum(1 for c in conns if c.status != "LISTEN" and c.laddr.port == port)


def store_connections(srv: ServerProc) -> int:
    """The TCP connections the server opened itself: to its stores (PostgreSQL's
    pools and listener, S3's connection pool). None on the embedded stores."""
    port = _port(srv)
    conns = psutil.Process(pid_of(srv)).net_connections(kind="tcp")
    return sum(1 for c in conns if c.status != "LISTEN" and c.laddr.port != port)


def served_files(srv: ServerProc) -> int:
    """Open files of the server but its connections to its stores (bounded pools
    that grow with load and shrink on their own time): what its clients make it
    hold. On the embedded stores, all of its open files."""
    return open_files(pid_of(srv)) - store_connections(srv)


@dataclass
class Usage:
    """What a process spent in a window: its peak RSS and CPU seconds, the most
    open files seen by :meth:`Meter.sample`."""

    peak_rss: int = 0
    cpu: float = 0.0
    max_open_files: int = 0
    samples: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"peak RSS {self.peak_rss / MB:.0f} MB, CPU {self.cpu:.2f} s, "
            f"open files up to {self.max_open_files}"
        )


class Meter:
    """``with Meter(pid) as m: ...``: after the block, ``m.usage`` holds the peak RSS
    and CPU seconds of the process during the block. ``m.sample()`` inside the block
    records the open files at that moment."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.usage = Usage()
        self._cpu0 = 0.0

    def __enter__(self) -> Meter:
        reset_peak_rss(self.pid)
        self._cpu0 = cpu_seconds(self.pid)
        self.usage.max_open_files = open_files(self.pid)
        return self

    def sample(self) -> int:
        n = open_files(self.pid)
        self.usage.samples.append(n)
        self.usage.max_open_files = max(self.usage.max_open_files, n)
        return n

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self.usage.peak_rss = peak_rss(self.pid)
        self.usage.cpu = cpu_seconds(self.pid) - self._cpu0


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll ``check`` until it holds; the seconds it took. AssertionError after
    ``timeout`` seconds, naming ``what``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - started


# -- servers under limits ------------------------------------------------------------


@contextlib.contextmanager
def _child_setup(setup: Callable[[], None]) -> Iterator[None]:
    """Run ``setup`` in the child between fork and exec of the processes that
    ``ServerProc.start`` spawns (it takes no ``preexec_fn`` of its own)."""
    real = subprocess.Popen

    def popen(*args: object, **kw: object) -> subprocess.Popen[str]:
        assert "preexec_fn" not in kw
        return real(*args, preexec_fn=setup, **kw)  # type: ignore[call-overload,no-any-return]

    with mock.patch.object(subprocess, "Popen", popen):  # the one ServerProc.start calls
        yield


def limits_setup(nofile: int | None = None, umask: int | None = None) -> Callable[[], None]:
    """A child setup that sets the open-file limit (soft and hard: the process
    cannot raise it) and the umask."""

    def setup() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        if umask is not None:
            os.umask(umask)

    return setup


def start_server(
    data: Path,
    extra: list[str] | None = None,
    *,
    nofile: int | None = None,
    umask: int | None = None,
    stores: SharedStores | None = None,
) -> ServerProc:
    """``ServerProc(data, extra).start()``, the process under ``nofile`` open files
    (soft and hard limit) and ``umask`` when given, on ``stores`` when given (else
    on the embedded stores in its data directory)."""
    srv = ServerProc(data, extra=list(extra or []))
    if stores is not None:
        stores.apply(srv)
    if nofile is None and umask is None:
        return srv.start()
    with _child_setup(limits_setup(nofile, umask)):
        return srv.start()


@contextlib.contextmanager
def own_open_files(at_least: int) -> Iterator[None]:
    """Raise this process's soft open-file limit to ``at_least`` (within its hard
    limit) for the block: a test that opens thousands of sockets itself."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = at_least if hard == resource.RLIM_INFINITY else min(at_least, hard)
    assert want >= at_least, f"the hard open-file limit ({hard}) is below {at_least}"
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        yield
    finally:
        if want > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def nofile_limit(pid: int) -> tuple[int, int]:
    """The process's (soft, hard) open-file limit."""
    return resource.prlimit(pid, resource.RLIMIT_NOFILE)
