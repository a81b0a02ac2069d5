from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from linesync.client.api import Client
from tests.support.server import ServerProc


@pytest.fixture
def pair(server: ServerProc, tmp_path: Path) -> Iterator[tuple[Client, Client]]:
    """Two folders syncing the admin's home namespace, on two devices."""
    a = Client.init(tmp_path / "A", server=server.url, token=server.new_token("admin", "alpha"))
    b = Client.init(tmp_path / "B", server=server.url, token=server.new_token("admin", "beta"))
    yield a, b


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".linesync" not in p.relative_to(folder).parts
    }
