from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.api import User, new_user
from tests.support.resources import start_server
from tests.support.server import ServerProc

Launch = Callable[..., ServerProc]


@pytest.fixture
def user(srv: ServerProc) -> User:
    """A fresh user with a read-write token on the module's server."""
    return new_user(srv)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start a fresh server of this test's own (``launch(extra, nofile=, umask=)``),
    for tests that measure the process or need other settings; all are stopped at
    the end of the test."""
    started: list[ServerProc] = []

    def go(
        extra: list[str] | None = None, *, nofile: int | None = None, umask: int | None = None
    ) -> ServerProc:
        srv = start_server(tmp_path / f"server{len(started)}", extra, nofile=nofile, umask=umask)
        started.append(srv)
        return srv

    yield go
    for srv in started:
        srv.stop()
