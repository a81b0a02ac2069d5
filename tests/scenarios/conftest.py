"""Fixtures of the end-to-end scenarios: one server per module, a World per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scenarios.helpers import World
from tests.support.server import ServerProc


@pytest.fixture
def world(srv: ServerProc, tmp_path: Path) -> Iterator[World]:
    w = World(srv, tmp_path)
    try:
        yield w
    finally:
        w.close()
