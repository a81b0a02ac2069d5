from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProc


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProc]:
    """A real server process with a fresh data directory, on a free port."""
    srv = ServerProc(tmp_path / "server").start()
    try:
        yield srv
    finally:
        srv.stop()
