"""A FUSE file system that forgets what was not fsynced, in the spirit of
LazyFS and ALICE: a power cut for whatever runs on it.

The kernel's page cache survives SIGKILL, so a crash test never shows a
missing fsync. Here every change is held in this process's memory (the
"page cache") until it is made durable, and durable state lives in a backing
directory (the "disk"). A power cut is a SIGKILL of this process: its memory
is gone, the kernel aborts the FUSE connection, and a new process mounted on
the same place serves only what was durable.

What becomes durable, and when (a strict reading of POSIX, stricter than ext4):

- a file's bytes, size, mode and times: by ``fsync``/``fdatasync`` of that file;
- a directory's entries (a create, mkdir, symlink, rename or unlink in it): by
  ``fsync`` of that directory, which writes its whole list of names as it is
  then. A cross-directory rename is two changes: the new name is durable with
  the target directory, the removal of the old one with the source directory;
- an inode that first becomes durable through its name (its directory was
  fsynced, it was not) is durable as created: a file empty, a directory with
  no entries, a symlink with its target (a symlink cannot be fsynced);
- nothing else: ``close``, ``flush``, ``chmod`` or ``utime`` make nothing durable.

Optionally a cut is torn (LazyFS's torn writes): some unsynced changes reach
the disk first, as the kernel's write-back and a journal commit could have
written them: the pending names of some directories, and some unsynced pages
of some files, a few in order or any in any order (`LazyFS.tear`).

After a cut, the file system is what the backing directory holds, read from
the root: a name whose directory never became durable is gone, a file that was
never fsynced is empty. (A directory that the durable state reaches twice,
possible only when one side of a directory rename was fsynced, is kept where
it is first reached, in sorted order.)

Every handle opened before a cut fails (ENOTCONN) from then on: the processes
of the machine that lost power, and anything they left behind (an SQLite
connection being garbage-collected), can never write after the cut.

Run as ``python lazyfs.py BACKING MOUNTPOINT`` (single-threaded, so the order
of operations is the caller's); `LazyMount` does that, and cuts power with
`LazyMount.cut`. Needs Linux, /dev/fuse, libfuse3 and mfusepy; mounting needs
root (or fusermount3). `available()` says whether this machine can.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAME_MAX = 255
PATH_MAX = 4096
ROOT_INO = 1
MNT_DETACH = 2
_READY_TIMEOUT = 30.0
PAGE = 4096  # the unit in which unsynced bytes may reach the disk on their own
_UTIME_NOW, _UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
# Write a command to this file (never listed): see `LazyFS.control`.
CONTROL = "/.lazyfs-control"
CONTROL_FH = (1 << 62) + 1


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@dataclass(eq=False)
class Inode:
    ino: int
    kind: str  # "f" file, "d" directory, "l" symlink
    mode: int  # permission bits only
    mtime: int
    ctime: int
    data: bytearray = field(default_factory=bytearray)  # files
    target: str = ""  # symlinks
    entries: dict[str, int] = field(default_factory=dict)  # directories: name -> ino
    durable_entries: dict[str, int] = field(default_factory=dict)  # what the disk holds
    nlink: int = 0  # names that refer to it (directories: 1 while linked)
    opens: int = 0
    durable: bool = False  # the backing directory has a record of it
    dirty_lo: int = -1  # bytes [dirty_lo, dirty_hi) may differ from the durable copy
    dirty_hi: int = -1
    meta_dirty: bool = False

    def st_mode(self) -> int:
        kind = {"f": stat.S_IFREG, "d": stat.S_IFDIR, "l": stat.S_IFLNK}[self.kind]
        return kind | self.mode

    def mark(self, lo: int, hi: int) -> None:
        if hi <= lo:
            return
        if self.dirty_lo < 0:
            self.dirty_lo, self.dirty_hi = lo, hi
        else:
            self.dirty_lo, self.dirty_hi = min(self.dirty_lo, lo), max(self.dirty_hi, hi)


class Store:
    """The durable state: one JSON record per inode (``i<N>.json``: kind,
    mode, times, size, target or entries) and, for a file, its bytes
    (``i<N>.data``). Only this process writes it, one operation at a time, and
    it is killed only between operations, so each record is whole."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _meta(self, ino: int) -> Path:
        return self.root / f"i{ino}.json"

    def _data(self, ino: int) -> Path:
        return self.root / f"i{ino}.data"

    def write_meta(self, node: Inode, size: int) -> None:
        """The inode's record; a directory's names are ``node.durable_entries``."""
        rec: dict[str, Any] = {
            "kind": node.kind,
            "mode": node.mode,
            "mtime": node.mtime,
            "ctime": node.ctime,
            "size": size,
        }
        if node.kind == "l":
            rec["target"] = node.target
        if node.kind == "d":
            rec["entries"] = node.durable_entries
        self._meta(node.ino).write_text(json.dumps(rec))

    def write_data(self, node: Inode, lo: int, hi: int, size: int) -> None:
        path = self._data(node.ino)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if 0 <= lo < hi:
                os.pwrite(fd, bytes(node.data[lo:hi]), lo)
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def write_at(self, ino: int, data: bytes, offset: int) -> None:
        """Some bytes of a file reach the disk on their own (a torn write);
        its recorded size grows to cover them, nothing else of it changes."""
        fd = os.open(self._data(ino), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)
        rec = json.loads(self._meta(ino).read_text())
        rec["size"] = max(rec["size"], offset + len(data))
        self._meta(ino).write_text(json.dumps(rec))

    def read(self, ino: int) -> tuple[dict[str, Any], bytes] | None:
        try:
            rec = json.loads(self._meta(ino).read_text())
        except FileNotFoundError:
            return None
        data = b""
        if rec["kind"] == "f":
            try:
                data = self._data(ino).read_bytes()[: rec["size"]]
            except FileNotFoundError:
                data = b""
            data += b"\0" * (rec["size"] - len(data))
        return rec, data

    def highest(self) -> int:
        top = ROOT_INO
        for name in os.listdir(self.root):
            if name.startswith("i") and "." in name:
                with contextlib.suppress(ValueError):
                    top = max(top, int(name[1 : name.index(".")]))
        return top

    def forget(self, keep: set[int]) -> None:
        """Delete the records of inodes the durable tree no longer reaches."""
        for name in os.listdir(self.root):
            if name.startswith("i") and "." in name:
                with contextlib.suppress(ValueError):
                    if int(name[1 : name.index(".")]) not in keep:
                        os.unlink(self.root / name)


class LazyFS:
    """The file system's operations (mfusepy's high-level, path-based API)."""

    use_ns = True

    def __init__(self, backing: Path) -> None:
        self.store = Store(backing)
        self.nodes: dict[int, Inode] = {}
        self.handles: dict[int, int] = {}  # fh -> ino
        self._fh = 0
        self._clock = 0
        self.user_mode = False
        self._load()

    # -- the durable state -------------------------------------------------

    def now(self) -> int:
        self._clock = max(time.time_ns(), self._clock + 1)
        return self._clock

    def _load(self) -> None:
        self.next_ino = self.store.highest() + 1
        if self.store.read(ROOT_INO) is None:
            t = self.now()
            root = Inode(ROOT_INO, "d", 0o755, t, t, nlink=1)
            self.nodes[ROOT_INO] = root
            self._persist_dir(root)
            return
        links: dict[int, int] = {}
        queue, queued = [ROOT_INO], {ROOT_INO}
        while queue:
            ino = queue.pop(0)
            got = self.store.read(ino)
            if got is None:  # cannot happen: a name becomes durable with its inode
                raise RuntimeError(f"lazyfs: inode {ino} has no record")
            rec, data = got
            node = Inode(ino, rec["kind"], rec["mode"], rec["mtime"], rec["ctime"], durable=True)
            node.data = bytearray(data)
            node.target = rec.get("target", "")
            node.meta_dirty = False
            self.nodes[ino] = node
            if node.kind != "d":
                continue
            for name, child in sorted(rec["entries"].items()):
                seen = child in self.nodes or child in queued
                if seen and self._kind_of(child) == "d":
                    continue  # a directory reached twice: kept where first reached
                node.entries[name] = node.durable_entries[name] = child
                links[child] = links.get(child, 0) + 1
                if not seen:
                    queue.append(child)
                    queued.add(child)
        self.nodes[ROOT_INO].nlink = 1
        for ino, n in links.items():
            self.nodes[ino].nlink = n
        self.store.forget(set(self.nodes))

    def _kind_of(self, ino: int) -> str:
        node = self.nodes.get(ino)
        if node is not None:
            return node.kind
        got = self.store.read(ino)
        return got[0]["kind"] if got else "?"

    def _birth(self, node: Inode) -> None:
        """Make ``node`` durable as it was created (its name just became durable)."""
        if node.durable:
            return
        node.durable = True
        if node.kind == "f":
            self.store.write_data(node, 0, 0, 0)
            self.store.write_meta(node, 0)
            node.mark(0, len(node.data))
            node.meta_dirty = True
        elif node.kind == "d":
            node.durable_entries = {}
            self.store.write_meta(node, 0)
            node.meta_dirty = True
        else:
            self.store.write_meta(node, 0)

    def _persist_file(self, node: Inode) -> None:
        self.store.write_data(node, node.dirty_lo, node.dirty_hi, len(node.data))
        self.store.write_meta(node, len(node.data))
        node.durable = True
        node.dirty_lo = node.dirty_hi = -1
        node.meta_dirty = False

    def _persist_dir(self, node: Inode) -> None:
        for child in node.entries.values():
            self._birth(self.nodes[child])
        node.durable_entries = dict(node.entries)
        self.store.write_meta(node, 0)
        node.durable = True
        node.meta_dirty = False

    def _persist_name(self, parent: Inode, name: str) -> None:
        """Make one name of ``parent`` durable as it is now (added, replaced or
        removed), and nothing else of that directory: the user's own change."""
        ino = parent.entries.get(name)
        if ino is None:
            parent.durable_entries.pop(name, None)
        else:
            self._birth(self.nodes[ino])
            parent.durable_entries[name] = ino
        self.store.write_meta(parent, 0)
        parent.durable = True

    def _user_file(self, node: Inode) -> None:
        if self.user_mode and node.kind == "f":
            self._persist_file(node)

    def _user_name(self, parent: Inode, name: str) -> None:
        if self.user_mode:
            self._persist_name(parent, name)

    def sync_all(self) -> None:
        for node in list(self.nodes.values()):
            if node.kind == "f" and (node.meta_dirty or node.dirty_lo >= 0 or not node.durable):
                self._persist_file(node)
        for node in list(self.nodes.values()):
            if node.kind == "d":
                self._persist_dir(node)

    def tear(self, seed: int) -> None:
        """Some unsynced changes reach the disk before the power goes, as the
        kernel's write-back and the file system's journal may have written
        them (choices drawn from ``seed``, in inode order):
        - each directory with pending names, half the time: all its names as
          they are now (as an fsync of it would; a new file among them is
          durable as created, empty);
        - then, for each file with unsynced bytes, none of its unsynced pages,
          a first few of them (written back in order), or any of them (in any
          order). Its size grows to cover what reached the disk.
        Nothing else does: no mode, time or truncation."""
        rng = random.Random(seed)
        for node in sorted(self.nodes.values(), key=lambda n: n.ino):
            pending = node.kind == "d" and node.durable and node.entries != node.durable_entries
            if pending and rng.random() < 0.5:
                self._persist_dir(node)
        for node in sorted(self.nodes.values(), key=lambda n: n.ino):
            if node.kind != "f" or not node.durable or node.dirty_lo < 0:
                continue
            lo, hi = node.dirty_lo, min(node.dirty_hi, len(node.data))
            if hi <= lo:
                continue
            pages = list(range(lo // PAGE, (hi - 1) // PAGE + 1))
            how = rng.randrange(3)
            if how == 0:
                continue
            if how == 1:
                pages = pages[: rng.randint(1, len(pages))]
            else:
                pages = [p for p in pages if rng.random() < 0.5]
            for p in pages:
                a, b = max(p * PAGE, lo), min((p + 1) * PAGE, hi)
                self.store.write_at(node.ino, bytes(node.data[a:b]), a)

    def control(self, command: str) -> None:
        """``user 1``/``user 0``: from now on every change is durable at once,
        as an editor that fsyncs its saves and their directory would make it
        (each name on its own: other pending names of that directory stay
        pending); ``sync``: make everything durable now; ``tear SEED``: see
        `tear` (the power cut itself is the SIGKILL that follows)."""
        if command == "user 1":
            self.user_mode = True
        elif command == "user 0":
            self.user_mode = False
        elif command == "sync":
            self.sync_all()
        elif command.startswith("tear "):
            self.tear(int(command.split()[1]))
        else:
            raise _err(errno.EINVAL)

    # -- lookups -----------------------------------------------------------

    def _resolve(self, path: str | None) -> Inode:
        if path is None:
            raise _err(errno.EBADF)
        node = self.nodes[ROOT_INO]
        for part in path.split("/"):
            if not part:
                continue
            if node.kind != "d":
                raise _err(errno.ENOTDIR)
            child = node.entries.get(part)
            if child is None:
                raise _err(errno.ENOENT)
            node = self.nodes[child]
        return node

    def _node(self, path: str | None, fh: int | None) -> Inode:
        if fh is not None and fh in self.handles:
            return self.nodes[self.handles[fh]]
        return self._resolve(path)

    def _parent(self, path: str) -> tuple[Inode, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise _err(errno.ENAMETOOLONG)
        parent = self._resolve(head or "/")
        if parent.kind != "d":
            raise _err(errno.ENOTDIR)
        return parent, name

    def _new(self, kind: str, mode: int) -> Inode:
        t = self.now()
        node = Inode(self.next_ino, kind, mode & 0o7777, t, t)
        self.next_ino += 1
        self.nodes[node.ino] = node
        return node

    def _link(self, parent: Inode, name: str, node: Inode) -> None:
        parent.entries[name] = node.ino
        node.nlink += 1
        parent.mtime = parent.ctime = self.now()
        parent.meta_dirty = True

    def _unlink(self, parent: Inode, name: str) -> None:
        node = self.nodes[parent.entries.pop(name)]
        node.nlink -= 1
        node.ctime = parent.mtime = parent.ctime = self.now()
        parent.meta_dirty = True
        self._drop_if_gone(node)

    def _drop_if_gone(self, node: Inode) -> None:
        if node.nlink <= 0 and node.opens <= 0 and node.ino != ROOT_INO:
            self.nodes.pop(node.ino, None)

    def _open(self, node: Inode) -> int:
        self._fh += 1
        self.handles[self._fh] = node.ino
        node.opens += 1
        return self._fh

    # -- operations ----------------------------------------------------------

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, int]:
        if path == CONTROL or fh == CONTROL_FH:
            return {"st_mode": stat.S_IFREG | 0o200, "st_ino": CONTROL_FH, "st_nlink": 1}
        node = self._node(path, fh)
        size = len(node.data)
        if node.kind == "l":
            size = len(node.target.encode("utf-8", "surrogateescape"))
        nlink = node.nlink
        if node.kind == "d":
            subdirs = sum(1 for c in node.entries.values() if self.nodes[c].kind == "d")
            nlink = 2 + subdirs
        return {
            "st_mode": node.st_mode(),
            "st_ino": node.ino,
            "st_nlink": nlink,
            "st_uid": os.getuid(),
            "st_gid": os.getgid(),
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_blksize": 4096,
            "st_atime": node.mtime,
            "st_mtime": node.mtime,
            "st_ctime": node.ctime,
        }

    def access(self, path: str, amode: int) -> int:
        if path != CONTROL:
            self._resolve(path)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return {
            "f_bsize": 4096,
            "f_frsize": 4096,
            "f_blocks": 1 << 24,
            "f_bfree": 1 << 23,
            "f_bavail": 1 << 23,
            "f_files": 1 << 20,
            "f_ffree": 1 << 19,
            "f_favail": 1 << 19,
            "f_namemax": NAME_MAX,
        }

    def readlink(self, path: str) -> str:
        node = self._resolve(path)
        if node.kind != "l":
            raise _err(errno.EINVAL)
        return node.target

    def mkdir(self, path: str, mode: int) -> int:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise _err(errno.EEXIST)
        self._link(parent, name, self._new("d", mode))
        self._user_name(parent, name)
        return 0

    def symlink(self, path: str, target: str) -> int:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise _err(errno.EEXIST)
        if len(target.encode("utf-8", "surrogateescape")) >= PATH_MAX:
            raise _err(errno.ENAMETOOLONG)
        node = self._new("l", 0o777)
        node.target = target
        self._link(parent, name, node)
        self._user_name(parent, name)
        return 0

    def unlink(self, path: str) -> int:
        parent, name = self._parent(path)
        child = parent.entries.get(name)
        if child is None:
            raise _err(errno.ENOENT)
        if self.nodes[child].kind == "d":
            raise _err(errno.EISDIR)
        self._unlink(parent, name)
        self._user_name(parent, name)
        return 0

    def rmdir(self, path: str) -> int:
        parent, name = self._parent(path)
        child = parent.entries.get(name)
        if child is None:
            raise _err(errno.ENOENT)
        node = self.nodes[child]
        if node.kind != "d":
            raise _err(errno.ENOTDIR)
        if node.entries:
            raise _err(errno.ENOTEMPTY)
        self._unlink(parent, name)
        self._user_name(parent, name)
        return 0

    def rename(self, old: str, new: str) -> int:
        src_dir, src_name = self._parent(old)
        dst_dir, dst_name = self._parent(new)
        ino = src_dir.entries.get(src_name)
        if ino is None:
            raise _err(errno.ENOENT)
        node = self.nodes[ino]
        if node.kind == "d":  # not into itself
            probe = dst_dir
            while True:
                if probe.ino == node.ino:
                    raise _err(errno.EINVAL)
                if probe.ino == ROOT_INO:
                    break
                probe = self._parent_of(probe)
        there = dst_dir.entries.get(dst_name)
        if there == ino:
            return 0
        if there is not None:
            other = self.nodes[there]
            if node.kind == "d" and other.kind != "d":
                raise _err(errno.ENOTDIR)
            if node.kind != "d" and other.kind == "d":
                raise _err(errno.EISDIR)
            if other.kind == "d" and other.entries:
                raise _err(errno.ENOTEMPTY)
            self._unlink(dst_dir, dst_name)
        del src_dir.entries[src_name]
        dst_dir.entries[dst_name] = ino
        t = self.now()
        src_dir.mtime = src_dir.ctime = dst_dir.mtime = dst_dir.ctime = t
        src_dir.meta_dirty = dst_dir.meta_dirty = True
        self._user_name(src_dir, src_name)
        self._user_name(dst_dir, dst_name)
        return 0

    def _parent_of(self, node: Inode) -> Inode:
        for other in self.nodes.values():
            if other.kind == "d" and node.ino in other.entries.values():
                return other
        return self.nodes[ROOT_INO]

    def link(self, target: str, source: str) -> int:
        raise _err(errno.EPERM)

    def chmod(self, path: str | None, mode: int, fh: int | None = None) -> int:
        node = self._node(path, fh)
        node.mode = mode & 0o7777
        node.ctime = self.now()
        node.meta_dirty = True
        self._user_file(node)
        return 0

    def chown(self, path: str | None, uid: int, gid: int) -> int:
        return 0

    def utimens(self, path: str | None, mtime: int | None = None, fh: int | None = None) -> int:
        node = self._node(path, fh)
        node.mtime = mtime if mtime is not None else self.now()
        node.ctime = self.now()
        node.meta_dirty = True
        self._user_file(node)
        return 0

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        if path == CONTROL and fh is None:
            return 0
        node = self._node(path, fh)
        if node.kind != "f":
            raise _err(errno.EISDIR if node.kind == "d" else errno.EINVAL)
        self._truncate(node, length)
        self._user_file(node)
        return 0

    def _truncate(self, node: Inode, length: int) -> None:
        old = len(node.data)
        if length < old:
            del node.data[length:]
        elif length > old:
            node.data.extend(b"\0" * (length - old))
            node.mark(old, length)
        node.mtime = node.ctime = self.now()
        node.meta_dirty = True

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        parent, name = self._parent(path)
        if name in parent.entries:
            if flags & os.O_EXCL:
                raise _err(errno.EEXIST)
            return self.open(path, flags)
        node = self._new("f", mode)
        self._link(parent, name, node)
        self._user_name(parent, name)
        return self._open(node)

    def open(self, path: str, flags: int) -> int:
        if path == CONTROL:
            return CONTROL_FH
        node = self._resolve(path)
        if node.kind == "d" and flags & (os.O_WRONLY | os.O_RDWR):
            raise _err(errno.EISDIR)
        if flags & os.O_TRUNC and node.kind == "f" and node.data:
            self._truncate(node, 0)
            self._user_file(node)
        return self._open(node)

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        node = self._node(path, fh)
        return bytes(node.data[offset : offset + size])

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        if fh == CONTROL_FH:
            self.control(data.decode().strip())
            return len(data)
        node = self._node(path, fh)
        end = offset + len(data)
        if offset > len(node.data):
            node.data.extend(b"\0" * (offset - len(node.data)))
        node.data[offset:end] = data
        node.mark(offset, end)
        node.mtime = node.ctime = self.now()
        node.meta_dirty = True
        self._user_file(node)
        return len(data)

    def flush(self, path: str | None, fh: int) -> int:
        return 0

    def release(self, path: str | None, fh: int) -> int:
        if fh == CONTROL_FH:
            return 0
        ino = self.handles.pop(fh, None)
        if ino is not None and ino in self.nodes:
            node = self.nodes[ino]
            node.opens -= 1
            self._drop_if_gone(node)
        return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        if fh == CONTROL_FH:
            return 0
        node = self._node(path, fh)
        if node.kind == "f":
            self._persist_file(node)
        elif node.kind == "d":
            self._persist_dir(node)
        return 0

    def opendir(self, path: str) -> int:
        node = self._resolve(path)
        if node.kind != "d":
            raise _err(errno.ENOTDIR)
        return self._open(node)

    def readdir(self, path: str | None, fh: int) -> list[tuple[str, dict[str, int], int]]:
        node = self._node(path, fh)
        out = [(".", {"st_mode": stat.S_IFDIR, "st_ino": node.ino}, 0)]
        out.append(("..", {"st_mode": stat.S_IFDIR}, 0))
        for name, ino in sorted(node.entries.items()):
            child = self.nodes[ino]
            out.append((name, {"st_mode": child.st_mode(), "st_ino": ino}, 0))
        return out

    def releasedir(self, path: str | None, fh: int) -> int:
        return self.release(path, fh)

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        node = self._node(path, fh)
        self._persist_dir(node)
        return 0


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def serve(backing: str, mountpoint: str) -> None:
    """Mount and serve until killed (the power cut) or unmounted."""
    _die_with_parent()
    import mfusepy

    class _Fuse(mfusepy.FUSE):  # type: ignore[misc]
        """Pass the file handle where mfusepy leaves it out (ftruncate,
        fchmod, futimens of a file whose name is gone)."""

        def _fh(self, fip: Any) -> int | None:
            return int(fip.contents.fh) if fip else None

        def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
            p = None if path is None else path.decode(self.encoding, self.errors)
            return int(self.operations.truncate(p, length, self._fh(fip)))

        def chmod_fuse_3(self, path: bytes | None, mode: int, fip: Any) -> int:
            p = None if path is None else path.decode(self.encoding, self.errors)
            return int(self.operations.chmod(p, mode, self._fh(fip)))

        def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
            p = None if path is None else path.decode(self.encoding, self.errors)
            mtime = None  # UTIME_NOW, or no times given: now
            if buf:
                ts = buf.contents.modtime
                if ts.tv_nsec == _UTIME_OMIT:
                    return 0
                if ts.tv_nsec != _UTIME_NOW:
                    mtime = ts.tv_sec * 10**9 + ts.tv_nsec
            return int(self.operations.utimens(p, mtime, self._fh(fip)))

        def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
            if flags:  # RENAME_NOREPLACE / RENAME_EXCHANGE: not modelled
                return -errno.EINVAL
            return int(self.rename_fuse_2(old, new))

    _Fuse(
        LazyFS(Path(backing)),
        mountpoint,
        foreground=True,
        nothreads=True,
        fsname="lazyfs",
        hard_remove=True,  # an open file whose name is gone stays open, unnamed
        use_ino=True,  # st_ino is ours, stable across remounts
        # The kernel may cache names and attributes: every change goes through this
        # mount, so its caches stay true, and a cut comes with a new mount.
        attr_timeout=1,
        entry_timeout=1,
        negative_timeout=1,
    )


# -- the harness: mount, cut power, unmount ---------------------------------------


def available() -> str | None:
    """None if a LazyFS can be mounted here, else why not."""
    if not sys.platform.startswith("linux"):
        return "FUSE power-loss tests need Linux"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable by this user"
    if os.geteuid() != 0 and shutil.which("fusermount3") is None:
        return "not root, and fusermount3 is missing (apt-get install fuse3)"
    try:
        import ctypes.util

        if ctypes.util.find_library("fuse3") is None:
            return "libfuse3 is missing (apt-get install libfuse3-3)"
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy cannot load: {exc}"
    return None


def _detach(path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(str(path).encode(), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code == errno.EPERM and shutil.which("fusermount3"):
            subprocess.run(["fusermount3", "-u", "-z", str(path)], check=False)
        elif code not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not mounted
            raise _err(code)


def _mountpoints() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f]


def _mounted(path: Path) -> bool:
    return str(path) in _mountpoints()


def unmount_under(root: Path) -> None:
    """Detach every mount below ``root`` (left by a run that died), deepest first."""
    prefix = str(root).rstrip("/") + "/"
    for point in sorted((p for p in _mountpoints() if p.startswith(prefix)), reverse=True):
        _detach(Path(point))


def can_mount(scratch: Path) -> str | None:
    """None if a LazyFS mounts (and cuts) in ``scratch``, else why not."""
    why = available()
    if why is not None:
        return why
    mount = LazyMount(scratch / "disk", scratch / "mnt")
    try:
        mount.start()
        (mount.mountpoint / "probe").write_bytes(b"probe")
        mount.cut()
        mount.start()
        if (mount.mountpoint / "probe").exists():
            return "lazyfs kept a file that was never fsynced"
    except (OSError, RuntimeError) as exc:
        return f"cannot mount a FUSE file system here: {exc}"
    finally:
        mount.stop()
    return None


class _Zygote:
    """A process with mfusepy loaded that forks one daemon per mount: a boot
    costs a fork, not a Python start (about 0.15 s). One per process that
    mounts; it dies with it."""

    _proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def ask(cls, request: dict[str, Any]) -> dict[str, Any]:
        proc = cls._proc
        if proc is None or proc.poll() is not None:
            env = {**os.environ, "FUSE_LIBRARY_PATH": _library()}
            proc = cls._proc = subprocess.Popen(
                [sys.executable, __file__, "--zygote"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            atexit.register(cls.close)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("lazyfs: the fork server died")
        answer: dict[str, Any] = json.loads(line)
        return answer

    @classmethod
    def close(cls) -> None:
        """End the fork server (it kills no daemon: each dies with it, or was cut)."""
        proc, cls._proc = cls._proc, None
        if proc is not None:
            assert proc.stdin is not None and proc.stdout is not None
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()


def daemon_cpu() -> float:
    """CPU seconds used by the file-system daemons of this process that have
    ended (been cut or stopped): the cost of the disks, apart from the caller's."""
    return float(_Zygote.ask({"op": "cpu"})["cpu"])


def _library() -> str:
    import ctypes.util

    return ctypes.util.find_library("fuse3") or "libfuse3.so.3"


def zygote() -> None:
    """Serve `_Zygote` requests on stdin: start a daemon (fork), or kill one."""
    _die_with_parent()
    import mfusepy  # noqa: F401  (loaded once, inherited by every fork)

    for line in sys.stdin.buffer:
        req = json.loads(line)
        if req["op"] == "start":
            log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            pid = os.fork()
            if pid == 0:  # the daemon
                code = 1
                try:
                    null = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(null, 0)
                    os.dup2(log, 1)
                    os.dup2(log, 2)
                    serve(req["backing"], req["mount"])
                    code = 0
                finally:
                    os._exit(code)
            os.close(log)
            answer: dict[str, Any] = {"pid": pid}
        elif req["op"] == "cpu":  # seconds of CPU the daemons it reaped used
            t = os.times()
            answer = {"cpu": t.children_user + t.children_system}
        else:  # kill: SIGKILL, then reap, so that its FUSE connection is gone
            with contextlib.suppress(ProcessLookupError):
                os.kill(req["pid"], signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(req["pid"], 0)
            answer = {"ok": True}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


class LazyMount:
    """One LazyFS at ``mountpoint`` over ``backing``: the disk of one machine."""

    def __init__(self, backing: Path, mountpoint: Path) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.pid: int | None = None
        self.cuts = 0
        self.log = backing.with_name(backing.name + ".log")

    @property
    def up(self) -> bool:
        return self.pid is not None

    def start(self) -> None:
        assert self.pid is None, "already mounted"
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        before = os.stat(self.mountpoint).st_dev
        request = {"backing": str(self.backing), "mount": str(self.mountpoint)}
        self.pid = _Zygote.ask({"op": "start", "log": str(self.log), **request})["pid"]
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            with contextlib.suppress(OSError):
                if os.stat(self.mountpoint).st_dev != before:
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"lazyfs did not mount {self.mountpoint}: see {self.log}")
            time.sleep(0.0005)

    def _kill(self) -> None:
        if self.pid is not None:
            _Zygote.ask({"op": "kill", "pid": self.pid})
            self.pid = None

    def cut(self, tear: int | None = None) -> None:
        """Power cut: what was not durable is gone, and so is every handle
        into the old mount. With ``tear`` (a seed), some unsynced pages of some
        files reached the disk first (`LazyFS.tear`). Call `start` to boot again."""
        if self.pid is None:
            return
        if tear is not None:
            self.control(f"tear {tear}")
        self._kill()
        self.cuts += 1
        _detach(self.mountpoint)

    def stop(self) -> None:
        """Unmount (everything not durable is dropped, as in a cut)."""
        self._kill()
        if _mounted(self.mountpoint):
            _detach(self.mountpoint)

    def control(self, command: str) -> None:
        fd = os.open(str(self.mountpoint) + CONTROL, os.O_WRONLY)
        try:
            os.write(fd, command.encode())
        finally:
            os.close(fd)

    def sync(self) -> None:
        """Make everything durable now (``sync`` of the whole file system)."""
        self.control("sync")

    @contextlib.contextmanager
    def user(self) -> Iterator[None]:
        """What is done inside is durable at once, name by name: the user's
        editor fsyncs its saves and the directories of the names it changes."""
        self.control("user 1")
        try:
            yield
        finally:
            self.control("user 0")


def fsync_file(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


if __name__ == "__main__":
    if sys.argv[1:] == ["--zygote"]:
        zygote()
    else:
        serve(sys.argv[1], sys.argv[2])
