"""Fault injection: the client is killed (SIGKILL) while it uploads a folder,
downloads it, and writes a large file to disk, at a seeded random moment of
that very operation.

Every trial proves that its kill landed where it says. The killed client is a
real ``linesync sync FOLDER`` process whose methods are wrapped to print markers
(see ``_CLIENT``): ``OP begin`` when the operation starts (upload: its first
commit or chunk request; download: the execution of the plan that downloads the
tree; write: the download of the large file, fetched and written in parts) and
``OP end`` when it is done. The test waits for ``begin``, sleeps a random
fraction of the operation's measured duration and kills; the try counts only if the client was still
running, had not said ``end``, and the state shows the operation half done
(upload: the server holds fewer files than the tree; download: the folder
does; write: the file is not in place). A try that came too late is repeated on
fresh folders with a shorter delay, at most ``TRIES`` times; a trial whose kill
never lands fails.

After the kill no partial file may be visible at any user path (every file
there has exactly the bytes the uploader had), temporary files (``.linesync-
tmp-*``) may remain but are never synced, and a restarted sync completes: both
folders then hold the source tree and the server holds no temporary path.

One server process serves the whole module; every try uses fresh folders
(and, for uploads, a fresh user and namespace). Each operation's duration is
measured once per module: the upload and the download on a whole, unkilled
run of the same client, the write as the median of a few runs writing the
file in parts.
The delays are seeded fractions of it (``random.Random``), so a failing trial
replays with the same seed.
"""

from __future__ import annotations

import asyncio
import os
import random
import select
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from linesync.client.api import Client
from linesync.client.base import COMMIT_BATCH
from linesync.client.localfs import LocalFS
from linesync.client.remote import Remote
from linesync.protocol.schemas import Kind
from tests.client.conftest import files
from tests.support.api import admin, new_token, unique
from tests.support.server import ServerProc

SEED = 20240611
UPLOAD_TRIALS = 18
DOWNLOAD_TRIALS = 18
WRITE_TRIALS = 14  # 50 trials in all
TRIES = 4  # per trial at most (see Delays)
WRITE_SAMPLES = 5  # runs of a write in parts that measure its duration
SMALL_FILES = 200
BIG_FILES = 2  # 1-8 MB each
HUGE = "huge.bin"
HUGE_SIZE = 30 << 20
TMP = ".linesync-tmp"
START_TIMEOUT = 60.0  # seconds for a client to reach the operation it is killed in
SYNC_TIMEOUT = 120.0


@dataclass
class Source:
    """A tree as the uploader has it, on disk and in memory."""

    folder: Path
    tree: dict[str, bytes]


@dataclass
class Filled:
    """A namespace that already holds a source tree, and its uploader. ``seconds``:
    the span of the uploader's upload (see ``_span``: from its first commit or
    chunk request to the start of the commit that follows the chunks)."""

    source: Source
    user: str
    uploader: Client
    seconds: float


def _make_source(folder: Path, rng: random.Random, *, huge: bool) -> Source:
    folder.mkdir(parents=True)
    if huge:
        # Alone, so that the client's only large write is this one.
        (folder / HUGE).write_bytes(rng.randbytes(HUGE_SIZE))
    else:
        for i in range(SMALL_FILES):
            p = folder / f"d{i % 12:02d}" / f"f{i:03d}.txt"
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(rng.randbytes(rng.randint(0, 4000)))
        for i in range(BIG_FILES):
            size = rng.randint(1 << 20, 8 << 20)
            (folder / "media" / f"big{i}.bin").parent.mkdir(exist_ok=True)
            (folder / "media" / f"big{i}.bin").write_bytes(rng.randbytes(size))
    return Source(folder, files(folder))


def _client(srv: ServerProc, folder: Path, user: str, device: str) -> Client:
    return Client.init(folder, server=srv.url, token=new_token(srv, user, device))


def _fill(srv: ServerProc, base: Path, source: Source) -> Filled:
    """Upload ``source`` into a fresh namespace with the marked client, timing it."""
    user = unique("f")
    admin(srv, "user", "add", user)
    shutil.copytree(source.folder, base / "uploader")
    up = _client(srv, base / "uploader", user, "uploader")
    seconds = _measure(up.folder, "upload")
    _assert_server_holds(up, source)
    return Filled(source, user, up, seconds)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """A few hundred small files and some 1-8 MB ones, in one commit batch."""
    source = _make_source(tmp_path_factory.mktemp("src") / "tree", random.Random(SEED), huge=False)
    assert len(source.tree) + len({p.rpartition("/")[0] for p in source.tree}) < COMMIT_BATCH
    return source


@pytest.fixture(scope="module")
def filled(srv: ServerProc, tree: Source, tmp_path_factory: pytest.TempPathFactory) -> Filled:
    return _fill(srv, tmp_path_factory.mktemp("filled"), tree)


@pytest.fixture(scope="module")
def download_seconds(
    srv: ServerProc, filled: Filled, tmp_path_factory: pytest.TempPathFactory
) -> float:
    """How long a fresh folder takes to download ``filled``'s tree."""
    c = _client(srv, tmp_path_factory.mktemp("dl") / "B", filled.user, "measure")
    seconds = _measure(c.folder, "download")
    assert _visible(c.folder) == filled.source.tree
    return seconds


@pytest.fixture(scope="module")
def huge(srv: ServerProc, tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """A namespace holding one 30 MB file."""
    base = tmp_path_factory.mktemp("huge")
    source = _make_source(base / "tree", random.Random(SEED + 1), huge=True)
    return _fill(srv, base, source)


@pytest.fixture(scope="module")
def write_seconds(huge: Filled, tmp_path_factory: pytest.TempPathFactory) -> float:
    """How long writing ``huge``'s file in parts takes on this disk, as a big
    file's download writes it (without the fetching in between): the median
    of a few runs (its fsync varies from run to run)."""
    folder = tmp_path_factory.mktemp("w")
    fs = LocalFS(folder)
    data = huge.source.tree[HUGE]
    took = []
    for _ in range(WRITE_SAMPLES):
        start = time.monotonic()
        w = fs.create(HUGE, exec=False)
        w.write(data[i : i + (8 << 20)] for i in range(0, len(data), 8 << 20))
        w.finish(time.time_ns(), expect=None)
        took.append(time.monotonic() - start)
        (folder / HUGE).unlink()
    return statistics.median(took)


# -- the marked client -----------------------------------------------------------


# ``linesync sync -q FOLDER``, with the client wrapped to print "OP begin T" and
# "OP end T" (T: its monotonic clock, which is the system's), each once, around the
# operation OP named on its command line:
# - upload: from its first commit or chunk upload request to the server's answer
#   to a commit that leaves nothing missing (the tree fits in one commit batch);
#   "upload last T" when the commit that follows the chunk uploads starts;
# - download: the execution of the plan that downloads the tree (its first);
# - write: the download of the large file (``Engine._download_big``: fetched and
#   written in parts), up to its rename into place.
_CLIENT = f"""\
import inspect, sys, time
from linesync.cli.main import main
from linesync.client.engine import Engine
from linesync.client.localfs import LocalFS
from linesync.client.remote import Remote

folder, op = sys.argv[1], sys.argv[2]
said = set()


def say(word):
    if word not in said:
        said.add(word)
        print(op, word, time.monotonic(), flush=True)


def around(cls, name, when=lambda *args: True):
    orig = getattr(cls, name)

    async def awrapped(self, *args, **kwargs):
        mark = when(*args)
        if mark:
            say("begin")
        out = await orig(self, *args, **kwargs)
        if mark:
            say("end")
        return out

    def wrapped(self, *args, **kwargs):
        mark = when(*args)
        if mark:
            say("begin")
        out = orig(self, *args, **kwargs)
        if mark:
            say("end")
        return out

    setattr(cls, name, awrapped if inspect.iscoroutinefunction(orig) else wrapped)


if op == "upload":
    upload, commit_full = Remote.upload, Remote.commit_full

    async def marked_upload(self, *args, **kwargs):
        say("begin")
        said.add("uploading")
        return await upload(self, *args, **kwargs)

    async def marked_commit(self, *args, **kwargs):
        say("begin")
        if "uploading" in said:
            say("last")
        resp = await commit_full(self, *args, **kwargs)
        if all(r.status != "missing" for r in resp.results):
            say("end")
        return resp

    Remote.upload, Remote.commit_full = marked_upload, marked_commit
elif op == "download":
    around(Engine, "execute")
elif op == "write":
    around(Engine, "_download_big", lambda path, *rest: path == {HUGE!r})
else:
    raise SystemExit("unknown operation " + op)
raise SystemExit(main(["sync", "-q", folder]))
"""


class _Lines:
    """The lines a child process prints, read without blocking past a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.buf = b""
        self.seen: list[str] = []
        self.eof = False

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not ready:
            return
        data = os.read(self.fd, 1 << 16)
        self.eof = not data
        *done, self.buf = (self.buf + data).split(b"\n")
        self.seen += [d.decode() for d in done]

    def find(self, prefix: str) -> str | None:
        return next((line for line in self.seen if line.startswith(prefix)), None)

    def wait_for(self, prefix: str, timeout: float) -> str | None:
        """The first line starting with ``prefix``, or None at EOF or the deadline."""
        deadline = time.monotonic() + timeout
        while (found := self.find(prefix)) is None and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._read(left)
        return found

    def drain(self, timeout: float = 10.0) -> None:
        """Everything up to EOF (the process has died: nothing more comes)."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._read(deadline - time.monotonic())


def _start(folder: Path, op: str) -> tuple[subprocess.Popen[bytes], _Lines, Path]:
    log = folder.parent / f"{folder.name}-{op}.stderr"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CLIENT, str(folder), op], stdout=subprocess.PIPE, stderr=err
        )
    return proc, _Lines(proc), log


def _span(lines: _Lines, op: str) -> float | None:
    """Seconds from ``OP begin`` to ``OP last`` if said (the span in which a kill
    leaves the upload half done on the server), else to ``OP end``; None if the
    operation did not end."""
    begin, end = lines.find(f"{op} begin"), lines.find(f"{op} end")
    if begin is None or end is None:
        return None
    stop = lines.find(f"{op} last") or end
    return float(stop.split()[2]) - float(begin.split()[2])


def _measure(folder: Path, op: str) -> float:
    """Run the marked client to the end; the span of ``op`` (see :func:`_span`)."""
    proc, lines, log = _start(folder, op)
    try:
        rc = proc.wait(timeout=SYNC_TIMEOUT)
        lines.drain()
    finally:
        proc.kill()
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()
    span = _span(lines, op)
    assert rc == 0 and span is not None, (
        f"the measuring sync failed ({rc}): {lines.seen}\n{log.read_text()}"
    )
    return span


@dataclass
class Kill:
    """One SIGKILL, ``delay`` seconds after the client said ``OP begin``."""

    op: str
    delay: float
    running: bool  # the client was still running when killed
    took: float | None  # the operation's span, if it ended before the kill

    @property
    def in_time(self) -> bool:
        return self.running and self.took is None

    def __str__(self) -> str:
        into = f"kill {self.delay * 1000:.1f} ms into the {self.op}"
        if self.took is None:
            return into
        return f"{into}, which it had done in {self.took * 1000:.1f} ms"


def _kill_during(folder: Path, op: str, delay: float) -> Kill:
    """Run the marked ``linesync sync FOLDER`` and SIGKILL it ``delay`` seconds
    after it began ``op``."""
    proc, lines, log = _start(folder, op)
    try:
        begun = lines.wait_for(f"{op} begin", START_TIMEOUT)
        if begun is not None:
            time.sleep(delay)
        running = proc.poll() is None
    finally:
        proc.kill()
        proc.wait(timeout=30)
    lines.drain()  # all it printed before it died
    assert proc.stdout is not None
    proc.stdout.close()
    said = f"; it said {lines.seen}; stderr:\n{log.read_text()}"
    assert begun is not None, f"the client never began the {op}{said}"
    took = _span(lines, op)
    # A client that stopped on its own without finishing the operation failed.
    assert running or took is not None, f"the client quit in the {op} before the kill{said}"
    return Kill(op, delay, running, took)


class Delays:
    """The tries of one trial: each kills a seeded random fraction of a span
    into the operation; the span is the operation's measured duration at first,
    then at most half the shortest seen (a try that came too late tells how long
    the operation took then). A trial whose kill never lands fails."""

    def __init__(self, rng: random.Random, op: str, seconds: float) -> None:
        self.rng = rng
        self.op = op
        self.measured = self.span = seconds
        self.log: list[str] = []

    def __iter__(self) -> Iterator[tuple[int, float]]:
        for i in range(TRIES):
            yield i, self.rng.uniform(0.0, self.span)

    def landed(self, kill: Kill, midway: bool, state: str) -> bool:
        """Did ``kill`` come while the operation ran, and does ``state`` (midway
        or not) show it half done?"""
        self.log.append(f"{kill}; {state}")
        if kill.in_time and midway:
            return True
        self.span = min(self.span, kill.took or self.span) / 2
        return False

    def failure(self) -> str:
        return (
            f"no kill landed in the {self.op} ({self.measured * 1000:.0f} ms when measured) "
            f"in {TRIES} tries:\n  " + "\n  ".join(self.log)
        )


# -- checks ----------------------------------------------------------------------


def _restart(folder: Path) -> None:
    """Run ``linesync sync FOLDER`` again, to completion."""
    out = subprocess.run(
        [sys.executable, "-m", "linesync", "sync", str(folder)],
        capture_output=True,
        text=True,
        timeout=SYNC_TIMEOUT,
    )
    assert out.returncode == 0, f"sync after the kill failed:\n{out.stdout}\n{out.stderr}"


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(TMP + "*") if ".linesync" not in p.relative_to(folder).parts]


def _visible(folder: Path) -> dict[str, bytes]:
    """What a user sees in the folder: every file but the state and temp files."""
    return {p: data for p, data in files(folder).items() if TMP not in p}


def _assert_no_partial_file(folder: Path, source: Source) -> None:
    for path, data in _visible(folder).items():
        assert path in source.tree, f"{path} appeared in {folder} but the uploader never had it"
        assert data == source.tree[path], (
            f"{path} in {folder} is partial or wrong: {len(data)} bytes, "
            f"the uploader had {len(source.tree[path])}"
        )


def _server_files(client: Client) -> dict[str, Kind]:
    """Every path the server's journal names, with its latest kind."""

    async def go() -> dict[str, Kind]:
        out: dict[str, Kind] = {}
        cursor = None
        async with Remote(client.config.server, client.config.token) as remote:
            for _ in range(1000):
                resp = await remote.list_changes(client.config.namespace, cursor)
                for e in resp.entries:
                    out[e.path] = e.kind
                cursor = resp.cursor
                if not resp.more:
                    return out
        raise AssertionError("the server's journal did not end in 1000 pages")

    return asyncio.run(go())


def _live_files(client: Client) -> set[str]:
    return {p for p, kind in _server_files(client).items() if kind is Kind.FILE}


def _assert_server_holds(client: Client, source: Source) -> None:
    listed = _server_files(client)
    assert not [p for p in listed if TMP in p], "a temporary file reached the server"
    live = {p for p, kind in listed.items() if kind is Kind.FILE}
    assert live == set(source.tree)


def _assert_converged(source: Source, *clients: Client) -> None:
    for c in clients:
        r = c.sync_once()
        assert r.converged, r.problems
        assert r.deleted_local == 0 and r.deleted_remote == 0
        assert _visible(c.folder) == source.tree, f"{c.folder} lost or changed files"
    _assert_server_holds(clients[0], source)


# -- the trials ----------------------------------------------------------------


@pytest.mark.parametrize("trial", range(UPLOAD_TRIALS))
def test_killed_during_upload(
    srv: ServerProc, tree: Source, filled: Filled, tmp_path: Path, trial: int
) -> None:
    rng = random.Random(f"{SEED}-upload-{trial}")
    delays = Delays(rng, "upload", filled.seconds)
    for i, delay in delays:
        user = unique("up")
        admin(srv, "user", "add", user)
        shutil.copytree(tree.folder, tmp_path / f"{i}" / "A")
        a = _client(srv, tmp_path / f"{i}" / "A", user, "alpha")
        b = _client(srv, tmp_path / f"{i}" / "B", user, "beta")
        kill = _kill_during(a.folder, "upload", delay)
        # Half done: the server took some of the files (perhaps none), not all.
        held = _live_files(b)
        state = f"the server holds {len(held)} of {len(tree.tree)} files"
        if delays.landed(kill, held < set(tree.tree), state):
            break
    else:
        pytest.fail(delays.failure())

    assert _visible(a.folder) == tree.tree, "the killed uploader changed its own folder"
    # What the server took so far reaches another device whole, or not at all.
    r = b.sync_once()
    assert r.converged, r.problems
    _assert_no_partial_file(b.folder, tree)
    assert not [p for p in _server_files(b) if TMP in p]

    _restart(a.folder)
    _assert_converged(tree, a, b)


@pytest.mark.parametrize("trial", range(DOWNLOAD_TRIALS))
def test_killed_during_download(
    srv: ServerProc, filled: Filled, download_seconds: float, tmp_path: Path, trial: int
) -> None:
    rng = random.Random(f"{SEED}-download-{trial}")
    source = filled.source
    delays = Delays(rng, "download", download_seconds)
    for i, delay in delays:
        b = _client(srv, tmp_path / f"B{i}", filled.user, f"dl{trial}-{i}")
        kill = _kill_during(b.folder, "download", delay)
        # Half done: some of the files (perhaps none) are in place, not all.
        got = set(_visible(b.folder))
        state = f"{len(got)} of {len(source.tree)} files in place"
        if delays.landed(kill, got < set(source.tree), state):
            break
    else:
        pytest.fail(delays.failure())

    _assert_no_partial_file(b.folder, source)
    _restart(b.folder)
    _assert_converged(source, b, filled.uploader)


@pytest.mark.parametrize("trial", range(WRITE_TRIALS))
def test_killed_while_writing_a_large_file(
    srv: ServerProc, huge: Filled, write_seconds: float, tmp_path: Path, trial: int
) -> None:
    rng = random.Random(f"{SEED}-write-{trial}")
    delays = Delays(rng, "write", write_seconds)
    for i, delay in delays:
        c = _client(srv, tmp_path / f"C{i}", huge.user, f"w{trial}-{i}")
        kill = _kill_during(c.folder, "write", delay)
        # Half done: the file is not in place yet.
        placed = HUGE in _visible(c.folder)
        if delays.landed(kill, not placed, f"{HUGE} {'in place' if placed else 'absent'}"):
            break
    else:
        pytest.fail(delays.failure())

    # huge.bin is absent; a half-written copy may only be a temp file.
    _assert_no_partial_file(c.folder, huge.source)
    for tmp in _temp_files(c.folder):
        assert tmp.parent == c.folder and tmp.stat().st_size <= HUGE_SIZE
    _restart(c.folder)
    _assert_converged(huge.source, c, huge.uploader)
