from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from linesync.client.api import Client
from tests.support.deploy import drops_done, stores_for
from tests.support.pg import pg_url  # noqa: F401  (a database per test)
from tests.support.s3 import s3_objects, s3_server  # noqa: F401  (S3 server fixtures)
from tests.support.server import ServerProc


def pytest_configure(config: pytest.Config) -> None:
    """The client's settings file and log (XDG directories) are the test run's
    own: a developer's ~/.config/linesync/config.toml must not change what the
    tests see, and the tests must not write to their ~/.local/state."""
    home = Path(tempfile.mkdtemp(prefix="linesync-xdg-"))
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        os.environ[name] = str(home / name.lower())
    os.environ.pop("LINESYNC_CLIENT_CONFIG", None)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The databases of servers on shared stores are dropped on a thread of their
    own (tests/support/deploy.py): wait for the last of them."""
    failed = drops_done()
    if failed:
        print("\nlinesync tests: databases not dropped:", *failed, sep="\n  ")


@pytest.fixture(scope="module")
def srv(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ServerProc]:
    """One real server process per test module, for tests that isolate themselves
    by user. Many of them try bad tokens on purpose, all from 127.0.0.1: the
    per-address limit on failed sign-ins (tested in tests/attack) is lifted.
    With LINESYNC_TEST_STORES=postgres+s3, on a fresh database and S3 prefix
    (tests/support/deploy.py)."""
    stores = stores_for(request)
    proc = ServerProc(
        tmp_path_factory.mktemp("srv") / "server", extra=["--limit", "auth_fail_burst=1000000000"]
    )
    try:
        if stores is not None:
            stores.apply(proc)
        yield proc.start()
    finally:
        proc.stop()
        if stores is not None:
            stores.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProc]:
    """A real server process with a fresh data directory, on a free port."""
    srv = ServerProc(tmp_path / "server").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def pair(server: ServerProc, tmp_path: Path) -> Iterator[tuple[Client, Client]]:
    """Two folders syncing the admin's home namespace, on two devices."""
    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "alpha"))
    b = Client.init(tmp_path / "B", server=server.url, token=server.new_token("admin", "beta"))
    yield a, b
