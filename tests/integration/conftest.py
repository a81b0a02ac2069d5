from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.api import User, new_user
from tests.support.server import ServerProc


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """One server per test module, for tests that isolate themselves by user."""
    proc = ServerProc(tmp_path_factory.mktemp("srv") / "server").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def user(srv: ServerProc) -> User:
    """A fresh user with a read-write token on the module's server."""
    return new_user(srv)
