"""The simulation's disk implements the whole `FileSystem` protocol, each
method with its faults: a disk call the engine can make and the simulation
cannot break would hide the bugs that call can cause."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from linesync.client.filesystem import FileSystem
from linesync.client.localfs import LocalFS
from tests.sim import simfs
from tests.sim.net import SimCrash
from tests.sim.simfs import SimFS

MEMBERS = sorted(n for n, v in vars(FileSystem).items() if callable(v) and not n.startswith("_"))
LISTS = {
    "CHANGING": simfs.CHANGING,
    "LOOKING": simfs.LOOKING,
    "HOLDING": simfs.HOLDING,
    "WRITTEN_OUT": simfs.WRITTEN_OUT,
}


def test_every_method_of_the_protocol_is_listed_once_with_its_faults() -> None:
    listed = [n for names in LISTS.values() for n in names]
    assert sorted(listed) == MEMBERS, "each protocol method in exactly one list of simfs.py"
    for name in MEMBERS:
        assert name in vars(SimFS), f"SimFS.{name} is not its own"


def test_the_simulated_disk_is_not_a_real_one_underneath() -> None:
    # Derived from LocalFS, a method added there would be inherited without faults.
    assert not issubclass(SimFS, LocalFS)


def test_a_new_method_of_the_real_disk_must_join_the_protocol() -> None:
    # The engine is type-checked against FileSystem, so a LocalFS method it
    # needs goes into the protocol, and from there into SimFS (test above).
    public = {
        n for n, v in vars(LocalFS).items()
        if not n.startswith("_") and (callable(v) or isinstance(v, staticmethod))
    }  # fmt: skip
    assert public - set(MEMBERS) == {"check", "disk"}  # what LocalFS uses itself


class _World:
    def __init__(self) -> None:
        self.hooks: list[str] = []

    def fs_hook(self, life: Any, name: str, path: str) -> None:
        self.hooks.append(name)

    def maybe_edit_under(self, life: Any, path: str) -> None:
        pass

    def write_fault(self, life: Any, path: str) -> str | None:
        return None

    def produced(self, data: bytes, merged_from: bytes | None = None) -> None:
        pass


def _fs(tmp_path: Path, dead: bool) -> tuple[SimFS, _World]:
    world = _World()
    life = SimpleNamespace(client=SimpleNamespace(folder=tmp_path, name="c0"), dead=dead)
    return SimFS(cast(Any, world), cast(Any, life)), world


@pytest.mark.parametrize("name", MEMBERS)
def test_a_dead_process_makes_no_disk_call(tmp_path: Path, name: str) -> None:
    fs, world = _fs(tmp_path, dead=True)
    sig = inspect.signature(getattr(FileSystem, name))
    required = [p for p in list(sig.parameters.values())[1:] if p.default is p.empty]
    args = [None for p in required if p.kind is not p.KEYWORD_ONLY]
    kwargs = {p.name: None for p in required if p.kind is p.KEYWORD_ONLY}
    with pytest.raises(SimCrash):
        out = getattr(fs, name)(*args, **kwargs)
        if hasattr(out, "__enter__"):
            with out:
                pass
    assert world.hooks == []


def test_a_change_can_be_cut_before_and_after_it(tmp_path: Path) -> None:
    fs, world = _fs(tmp_path, dead=False)
    fs.mkdir("a")
    stale = tmp_path / "a" / ".linesync-tmp-x"
    stale.write_bytes(b"left over")
    fs.remove_stale("a/.linesync-tmp-x")
    w = fs.create("a/big", exec=False)
    w.write([b"bytes\n"])
    w.finish(0, None)
    assert world.hooks == [
        "mkdir", "mkdir:done", "remove_stale", "remove_stale:done", "create", "create:done",
    ]  # fmt: skip
    assert not stale.exists() and (tmp_path / "a" / "big").read_bytes() == b"bytes\n"
