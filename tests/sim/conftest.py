from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sim.world import sim_root
from tests.support import lazyfs


@pytest.fixture(scope="session")
def fuse() -> None:
    """The power-loss tests need a LazyFS (FUSE). Where it cannot mount they
    skip and say why, except under CI (``make test`` installs FUSE first),
    where that is a failure."""
    scratch = Path(tempfile.mkdtemp(prefix="linesync-lazyfs-probe-", dir=sim_root()))
    try:
        why = lazyfs.can_mount(scratch)
    finally:
        lazyfs.unmount_under(scratch)
        shutil.rmtree(scratch, ignore_errors=True)
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the power-loss tests must run under CI, but: {why}")
    pytest.skip(f"power-loss tests need FUSE: {why}")


@pytest.fixture
def power_where(fuse: None) -> Iterator[Path]:
    """A folder for a world on LazyFS mounts; whatever is left mounted in it
    (a run that failed half-way) is detached before it is removed."""
    root = Path(tempfile.mkdtemp(prefix="linesync-power-", dir=sim_root()))
    try:
        yield root
    finally:
        lazyfs.unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)
