from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scenarios.helpers import World
from tests.support.api import User, new_user
from tests.support.server import ServerProc


@pytest.fixture
def user(srv: ServerProc) -> User:
    """A fresh user with a read-write token on the module's server."""
    return new_user(srv)


@pytest.fixture
def world(srv: ServerProc, tmp_path: Path) -> Iterator[World]:
    w = World(srv, tmp_path)
    try:
        yield w
    finally:
        w.close()
