"""The simulated disk: the real `LocalFS` on a real folder, with the world
deciding, at each call, whether the process dies there, the disk is full, or
the user changes the file under the engine's feet."""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from linesync.client.localfs import TMP_PREFIX, LocalFS
from linesync.client.model import Stat
from tests.sim.net import SimCrash

if TYPE_CHECKING:
    from tests.sim.world import ClientLife, World

_T = TypeVar("_T")

# Calls that change the disk, and calls that only look at it.
_CHANGING = (
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
)
_LOOKING = ("walk", "lstat", "list_names", "exists", "read_range")


class SimFS(LocalFS):
    def __init__(self, world: World, life: ClientLife) -> None:
        super().__init__(life.client.folder)
        self.world = world
        self.life = life
        self.merging: bytes | None = None  # the local version a merge is writing over

    def _alive(self) -> None:
        if self.life.dead:
            raise SimCrash(f"{self.life.client.name} is dead")

    def read(self, path: str) -> tuple[bytes, Stat]:
        self._alive()
        self.world.fs_hook(self.life, "read", path)
        out = super().read(path)
        # The user saves again right after the engine read the file.
        self.world.maybe_edit_under(self.life, path)
        return out

    def write_file(
        self, path: str, pieces: Iterable[bytes], *, mtime_ns: int, exec: bool,
        expect: Stat | None, sync_dir: bool = True,
    ) -> Stat:  # fmt: skip
        def write(data: Iterable[bytes]) -> Stat:
            return super(SimFS, self).write_file(
                path, data, mtime_ns=mtime_ns, exec=exec, expect=expect, sync_dir=sync_dir
            )

        stat = self._faulty_write(path, pieces, write)
        self.world.fs_hook(self.life, "wrote", path)  # killed before the index heard of it
        return stat

    def write_temp(self, path: str, pieces: Iterable[bytes], *, mtime_ns: int, exec: bool) -> Path:
        def write(data: Iterable[bytes]) -> Path:
            return super(SimFS, self).write_temp(path, data, mtime_ns=mtime_ns, exec=exec)

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
            tmp = self.disk(path).parent / f"{TMP_PREFIX}{self.world.next_id()}"
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
        base = getattr(LocalFS, name)  # looked up now: a test may have patched it
        self._alive()
        path = args[0] if args and isinstance(args[0], str) else ""
        if changing:
            self.world.fs_hook(self.life, name, path)
        out = base(self, *args, **kwargs)
        if changing:
            self.world.fs_hook(self.life, name + ":done", path)
        return out

    method.__name__ = name
    return method


for _name in _CHANGING:
    setattr(SimFS, _name, _wrap(_name, True))
for _name in _LOOKING:
    setattr(SimFS, _name, _wrap(_name, False))
