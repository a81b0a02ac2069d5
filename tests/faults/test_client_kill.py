"""Fault injection: the client is killed (SIGKILL) at random moments while it
uploads a folder, downloads it, and writes a large file to disk.

After every kill no partial file may be visible at any user path (every file
there has exactly the bytes the uploader had), temporary files (``.linesync-
tmp-*``) may remain but are never synced, and a restarted sync completes: both
folders then hold the source tree and the server holds no temporary path.

One server process serves the whole module; every trial uses fresh folders
(and, for uploads, a fresh user and namespace). The killed client is a real
``python -m linesync sync FOLDER`` process; the delays come from a seeded
``random.Random``, so a failing trial replays with the same seed.
"""

from __future__ import annotations

import asyncio
import random
import select
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from linesync.client.api import Client
from linesync.client.remote import Remote
from linesync.protocol.schemas import Kind
from tests.client.conftest import files
from tests.support.api import admin, new_token, unique
from tests.support.server import ServerProc

SEED = 20240611
UPLOAD_TRIALS = 18
DOWNLOAD_TRIALS = 18
WRITE_TRIALS = 14  # 50 trials in all
MAX_DELAY = 0.6  # seconds from the client's start to its SIGKILL
WRITE_DELAY = 0.05  # seconds from its first temporary file to its SIGKILL
SMALL_FILES = 200
BIG_FILES = 2  # 1-8 MB each
HUGE_SIZE = 30 << 20
TMP = ".linesync-tmp"
SYNC_TIMEOUT = 120.0


@dataclass
class Source:
    """A tree as the uploader has it, on disk and in memory."""

    folder: Path
    tree: dict[str, bytes]


@dataclass
class Filled:
    """A namespace that already holds a source tree, and its uploader."""

    source: Source
    user: str
    uploader: Client


def _make_source(folder: Path, rng: random.Random, *, huge: bool) -> Source:
    folder.mkdir(parents=True)
    if huge:
        # Alone, so that the client's first temporary file is this one's.
        (folder / "huge.bin").write_bytes(rng.randbytes(HUGE_SIZE))
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
    user = unique("f")
    admin(srv, "user", "add", user)
    shutil.copytree(source.folder, base / "uploader")
    up = _client(srv, base / "uploader", user, "uploader")
    r = up.sync_once()
    assert r.converged, r.problems
    return Filled(source, user, up)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """A few hundred small files and some 1-8 MB ones."""
    return _make_source(tmp_path_factory.mktemp("src") / "tree", random.Random(SEED), huge=False)


@pytest.fixture(scope="module")
def filled(srv: ServerProc, tree: Source, tmp_path_factory: pytest.TempPathFactory) -> Filled:
    return _fill(srv, tmp_path_factory.mktemp("filled"), tree)


@pytest.fixture(scope="module")
def huge(srv: ServerProc, tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """A namespace holding one 30 MB file."""
    base = tmp_path_factory.mktemp("huge")
    source = _make_source(base / "tree", random.Random(SEED + 1), huge=True)
    return _fill(srv, base, source)


# -- helpers -------------------------------------------------------------------


# ``python -m linesync sync FOLDER``, but saying "ready" once its imports are
# done: the random delay then falls in the sync itself, not in Python's start-up.
_CLIENT = """\
import sys
from linesync.cli.main import main
import linesync.cli.client_cmds, linesync.client.api
print("ready", flush=True)
raise SystemExit(main(["sync", "-q", sys.argv[1]]))
"""


def _kill_at_random(folder: Path, rng: random.Random, *, on_temp_file: bool = False) -> bool:
    """Run ``linesync sync FOLDER`` and SIGKILL it after a random delay: 0-0.6 s
    after it is ready, or (``on_temp_file``) 0-0.05 s after its first temporary
    file appears, so the kill lands while a large file is written. True if it was
    still running when killed."""
    delay = rng.uniform(0.0, WRITE_DELAY if on_temp_file else MAX_DELAY)
    proc = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)
        assert ready and proc.stdout.readline() == "ready\n", "the client did not start"
        if on_temp_file:
            deadline = time.monotonic() + 10.0
            while proc.poll() is None and time.monotonic() < deadline and not _temp_files(folder):
                time.sleep(0.002)
        time.sleep(delay)
        running = proc.poll() is None
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    return running


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
def test_killed_during_upload(srv: ServerProc, tree: Source, tmp_path: Path, trial: int) -> None:
    rng = random.Random(f"{SEED}-upload-{trial}")
    user = unique("up")
    admin(srv, "user", "add", user)
    shutil.copytree(tree.folder, tmp_path / "A")
    a = _client(srv, tmp_path / "A", user, "alpha")
    b = _client(srv, tmp_path / "B", user, "beta")

    _kill_at_random(a.folder, rng)

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
    srv: ServerProc, filled: Filled, tmp_path: Path, trial: int
) -> None:
    rng = random.Random(f"{SEED}-download-{trial}")
    b = _client(srv, tmp_path / "B", filled.user, f"dl{trial}")

    _kill_at_random(b.folder, rng)

    _assert_no_partial_file(b.folder, filled.source)
    _restart(b.folder)
    _assert_converged(filled.source, b, filled.uploader)


@pytest.mark.parametrize("trial", range(WRITE_TRIALS))
def test_killed_while_writing_a_large_file(
    srv: ServerProc, huge: Filled, tmp_path: Path, trial: int
) -> None:
    rng = random.Random(f"{SEED}-write-{trial}")
    c = _client(srv, tmp_path / "C", huge.user, f"w{trial}")

    _kill_at_random(c.folder, rng, on_temp_file=True)

    # huge.bin is absent or whole; a half-written copy may only be a temp file.
    _assert_no_partial_file(c.folder, huge.source)
    for tmp in _temp_files(c.folder):
        assert tmp.parent == c.folder and tmp.stat().st_size <= HUGE_SIZE
    _restart(c.folder)
    _assert_converged(huge.source, c, huge.uploader)
