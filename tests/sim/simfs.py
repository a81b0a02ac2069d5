"""The simulated disk: a `FileSystem` around the real `LocalFS` on a real
folder, with the world deciding, at each call, whether the process dies
there, the disk is full, or the user changes the file under the engine's
feet. It is built around a LocalFS, not derived from one: every method of
the protocol is listed here with the faults it gets (`test_simfs.py` checks
that none is missing), so a new disk call cannot slip past the faults."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from linesync.client.localfs import TMP_PREFIX, LocalFS, Reading
from linesync.client.model import Stat
from tests.sim.net import SimCrash

if TYPE_CHECKING:
    from tests.sim.world import ClientLife, World

_T = TypeVar("_T")

# Calls that change the disk (the process may die before and after each),
# calls that only look at it, and calls that hold the folder: the process
# must be alive for each. read, write_file and write_temp are written out below.
CHANGING = (
    "mkdir",
    "symlink",
    "remove",
    "rmdir",
    "rename",
    "touch",
    "rename_disk",
    "unlink_plain",
    "sync_parents",
    "sync_files",
    "put_in_place",
    "remove_stale",
    "discard",
    "create",
)
LOOKING = ("walk", "walk_paths", "lstat", "list_names", "exists", "read_range")
HOLDING = ("lock",)
WRITTEN_OUT = ("read", "open_read", "write_file", "write_temp")


class SimFS:
    def __init__(self, world: World, life: ClientLife) -> None:
        self.real = LocalFS(life.client.folder)
        self.world = world
        self.life = life
        self.merging: bytes | None = None  # the local version a merge is writing over

    def _alive(self) -> None:
        if self.life.dead:
            raise SimCrash(f"{self.life.client.name} is dead")

    def read(self, path: str) -> tuple[bytes, Stat]:
        self._alive()
        self.world.fs_hook(self.life, "read", path)
        out = self.real.read(path)
        # The user saves again right after the engine read the file.
        self.world.maybe_edit_under(self.life, path)
        return out

    @contextlib.contextmanager
    def open_read(self, path: str) -> Iterator[Reading]:
        """A big file read in blocks: the same faults as :meth:`read`."""
        self._alive()
        self.world.fs_hook(self.life, "open_read", path)
        with self.real.open_read(path) as r:
            yield r
        self.world.maybe_edit_under(self.life, path)

    def write_file(
        self, path: str, pieces: Iterable[bytes], *, mtime_ns: int, exec: bool,
        expect: Stat | None, sync_dir: bool = True,
    ) -> Stat:  # fmt: skip
        def write(data: Iterable[bytes]) -> Stat:
            return self.real.write_file(
                path, data, mtime_ns=mtime_ns, exec=exec, expect=expect, sync_dir=sync_dir
            )

        stat = self._faulty_write(path, pieces, write)
        self.world.fs_hook(self.life, "wrote", path)  # killed before the index heard of it
        return stat

    def write_temp(self, path: str, pieces: Iterable[bytes], *, mtime_ns: int, exec: bool) -> Path:
        def write(data: Iterable[bytes]) -> Path:
            return self.real.write_temp(path, data, mtime_ns=mtime_ns, exec=exec)

        tmp = self._faulty_write(path, pieces, write)
        self.world.fs_hook(self.life, "wrote-temp", path)
        return tmp

    def _faulty_write(
        self, path: str, pieces: Iterable[bytes], write: Callable[[Iterable[bytes]], _T]
    ) -> _T:
        """A write of ``pieces`` for ``path``, unless the world kills the process
        mid-write (a partial temporary file stays behind) or fills the disk."""
        self._alive()
        data = list(pieces)
        whole = b"".join(data)
        fault = self.world.write_fault(self.life, path)
        if fault == "crash":  # killed mid-write: a partial temporary file stays behind
            tmp = self.real.disk(path).parent / f"{TMP_PREFIX}{self.world.next_id()}"
            if tmp.parent.is_dir():
                tmp.write_bytes(whole[: len(whole) // 2])
            self.life.die()
            self.world.died_writing(self.life, path)  # with the power, maybe
            raise SimCrash("killed while writing " + path)
        if fault == "enospc":

            def some_then_full() -> Iterator[bytes]:
                yield whole[: len(whole) // 3]
                raise OSError(errno.ENOSPC, "No space left on device")

            return write(some_then_full())
        self.world.produced(whole, merged_from=self.merging)
        return write(data)


def _wrap(name: str, changing: bool) -> Any:
    def method(self: SimFS, *args: Any, **kwargs: Any) -> Any:
        real = getattr(self.real, name)  # looked up now: a test may have patched LocalFS
        self._alive()
        path = args[0] if args and isinstance(args[0], str) else ""
        if changing:
            self.world.fs_hook(self.life, name, path)
        out = real(*args, **kwargs)
        if changing:
            self.world.fs_hook(self.life, name + ":done", path)
        return out

    method.__name__ = name
    return method


for _name in CHANGING:
    setattr(SimFS, _name, _wrap(_name, True))
for _name in (*LOOKING, *HOLDING):
    setattr(SimFS, _name, _wrap(_name, False))
