"""The synced folder on disk: walking it, and changing it safely.

Every change is made so that each path holds its old or its new contents at
every moment: new bytes go to a temporary file in the same folder, are
fsynced, and replace the destination by rename only if the destination is
still what the index last saw. Symlinks are never followed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat as st
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from linesync.client.ignore import IgnoreRules
from linesync.client.model import Node, Stat
from linesync.core import paths
from linesync.protocol.schemas import Kind

STATE_DIR = ".linesync"
TMP_PREFIX = ".linesync-tmp-"
LOCK_FILE = "lock"


class FolderMissing(Exception):
    """The synced folder (or its state) is gone: nothing may be read as deleted."""


class FolderBusy(Exception):
    """Another linesync process is syncing this folder right now."""


class Changed(Exception):
    """A path changed on disk since the index saw it; the operation was not done."""


@dataclass(frozen=True, slots=True)
class DiskEntry:
    path: str  # linesync path (NFC)
    disk: str  # relative path on disk (may be NFD)
    node: Node  # chash not filled in here
    stat: Stat


@dataclass
class Walk:
    entries: dict[str, DiskEntry] = field(default_factory=dict)
    # Names that map to a path already taken (NFC/NFD twins): renamed by the engine.
    duplicates: list[DiskEntry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # with the reason
    # Our own temporary files (disk paths): left by a process that died mid-write.
    stale: list[str] = field(default_factory=list)
    # Ignored .git folders (paths): the engine says once what happens to them.
    repositories: list[str] = field(default_factory=list)


SYNC_THREADS = 4  # fsyncs in flight at once for a group of new files

Unchanged = Callable[[str, os.stat_result], bool]
"""Says whether a regular file (path, stat) is as last seen."""


def _stat(s: os.stat_result) -> Stat:
    return Stat(s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino)


def _node(s: os.stat_result, target: str | None) -> Node | None:
    if st.S_ISLNK(s.st_mode):
        return Node(Kind.SYMLINK, target=target)
    if st.S_ISDIR(s.st_mode):
        return Node(Kind.DIRECTORY)
    if st.S_ISREG(s.st_mode):
        return Node(Kind.FILE, s.st_size, s.st_mtime_ns, bool(s.st_mode & 0o100))
    return None


def current_umask() -> int:
    """The process's umask, read without changing it where the OS tells
    (Linux); elsewhere set and put back at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8) & 0o777
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(exec: bool, umask: int) -> int:
    """The mode of a file linesync writes: what the user's umask allows (the
    executable bit is the synced property: set wherever the umask lets it be),
    always readable and writable by the owner (and executable, if it is)."""
    base = 0o777 if exec else 0o666
    return (base & ~umask) | (0o700 if exec else 0o600)


def fsync_path(path: Path, flags: int = 0) -> None:
    """Make what the file at ``path`` holds durable."""
    fd = os.open(path, os.O_RDONLY | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make the names in a folder durable (a create, rename or unlink in it)."""
    fsync_path(path, os.O_DIRECTORY)


def _name(e: os.DirEntry[str]) -> str:
    """A name as the walk compares it (one that is not UTF-8 matches nothing)."""
    try:
        e.name.encode("utf-8")
    except UnicodeEncodeError:
        return ""
    return e.name


class Reading:
    """A file open for reading, and its stat when opened."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path
        self.stat = _stat(os.fstat(fd))

    def blocks(self, size: int) -> Iterator[bytes]:
        """The file's bytes in blocks of ``size``; Changed at the end if it
        changed meanwhile."""
        offset = 0
        while block := os.pread(self.fd, size, offset):
            offset += len(block)
            yield block
        if _stat(os.fstat(self.fd)) != self.stat or offset != self.stat.size:
            raise Changed(f"{self.path} changed while it was read")


class Writing:
    """A temporary file that replaces its path when finished, atomically and
    durably (see LocalFS.write_file)."""

    def __init__(self, fs: LocalFS, path: str, tmp: Path, f: BinaryIO, mode: int) -> None:
        self.fs, self.path, self.tmp, self.f, self.mode = fs, path, tmp, f, mode

    def write(self, pieces: Iterable[bytes]) -> None:
        for piece in pieces:
            self.f.write(piece)

    def finish(self, mtime_ns: int, expect: Stat | None, sync_dir: bool = True) -> Stat:
        self.close(mtime_ns, durable=True)
        return self.fs._replace(self.tmp, self.path, expect, sync_dir)

    def close(self, mtime_ns: int, durable: bool) -> Path:
        """Close the temporary file with its mode and time (the time set before
        the fsync: it must be as durable as the bytes); not durable: see
        LocalFS.sync_files."""
        try:
            with self.f:
                self.f.flush()
                os.fchmod(self.f.fileno(), self.mode)
                os.utime(self.f.fileno(), ns=(mtime_ns, mtime_ns))
                if durable:
                    os.fsync(self.f.fileno())
        except BaseException:
            self.abort()
            raise
        return self.tmp

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.f.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


class LocalFS:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.umask = current_umask()  # files we write honour it (see file_mode)
        self._disk: dict[str, str] = {}  # linesync path -> disk path, where they differ
        self._unchanged: Unchanged | None = None  # during a walk: see walk()

    # -- checks ------------------------------------------------------------

    def check(self) -> None:
        """Refuse to go on if the folder or its state directory vanished
        (unmounted disk, deleted folder): that must never read as "all deleted"."""
        if not self.root.is_dir():
            raise FolderMissing(f"{self.root} is missing or not a folder")
        if not (self.root / STATE_DIR).is_dir():
            raise FolderMissing(
                f"{self.root} has no {STATE_DIR}/ (unmounted, or not a linesync folder?)"
            )

    def disk(self, path: str) -> Path:
        """Where ``path`` is on disk: a folder whose name is NFD there keeps it."""
        found = self._disk.get(path)
        if found is not None:
            return self.root / found
        for anc in reversed(paths.ancestors(path)):
            found = self._disk.get(anc)
            if found is not None:
                return self.root / (found + path[len(anc) :])
        return self.root / path

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for one sync: two processes syncing one folder at
        once would each take the other's temporary files for leftovers."""
        self.check()
        fd = os.open(self.root / STATE_DIR / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)  # one made by an older linesync
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FolderBusy(f"another linesync process is syncing {self.root}") from None
            yield
        finally:
            os.close(fd)  # releases the lock

    def remove_stale(self, disk: str) -> None:
        """Delete a temporary file of ours that a dead process left behind."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.root / disk)

    # -- walking -----------------------------------------------------------

    def walk(self, ignore: IgnoreRules, unchanged: Unchanged | None = None) -> Walk:
        """Every entry below the root that is not ignored. ``unchanged``: a
        regular file it says True for (given its path and stat) is left out
        of the entries; such a file is as its caller last saw it, so a scan
        of an unchanged folder keeps nothing per file."""
        self.check()
        out = Walk()
        self._disk = {}
        self._unchanged = unchanged
        try:
            self._walk_dir("", "", ignore, out)
        finally:
            self._unchanged = None
        return out

    def walk_paths(self, focus: Iterable[str], ignore: IgnoreRules) -> Walk:
        """What :meth:`walk` would find at the paths in ``focus`` and below them,
        and nothing else: a watcher's events name what changed, so a change
        costs about what it touched, not the whole folder."""
        self.check()
        out = Walk()
        wanted = set(focus)
        by_parent: dict[str, set[str]] = {}
        for path in wanted:
            ancestors = paths.ancestors(path)
            if any(a in wanted for a in ancestors):
                continue  # walked with its folder
            if ancestors and ancestors[0] == STATE_DIR:
                continue
            if any(ignore.ignored(a, True) for a in ancestors):
                continue  # in an ignored folder: as the whole walk, not there
            parent, _, name = path.rpartition("/")
            by_parent.setdefault(parent, set()).add(name)
            for known in [k for k in self._disk if k == path or paths.is_under(k, path)]:
                del self._disk[known]
        for parent, names in sorted(by_parent.items()):
            disk_parent = str(self.disk(parent).relative_to(self.root)) if parent else ""
            if disk_parent == ".":
                disk_parent = ""
            try:
                it = os.scandir(self.root / disk_parent if disk_parent else self.root)
            except OSError:
                continue  # its folder is gone (or is no folder): nothing there
            with it:
                items = sorted(
                    (e for e in it if unicodedata.normalize("NFC", _name(e)) in names),
                    key=lambda e: e.name,
                )
            taken: set[str] = set()
            for item in items:
                self._visit(parent, disk_parent, item, ignore, out, taken)
        return out

    def _walk_dir(self, prefix: str, disk_prefix: str, ignore: IgnoreRules, out: Walk) -> None:
        try:
            it = os.scandir(self.root / disk_prefix if disk_prefix else self.root)
        except OSError as exc:
            out.skipped.append(f"{prefix or '.'}: cannot list: {exc.strerror}")
            return
        with it:
            items = sorted(it, key=lambda e: e.name)
        taken: set[str] = set()  # the names found here, NFC: a twin's is taken
        for item in items:
            self._visit(prefix, disk_prefix, item, ignore, out, taken)

    def _visit(
        self,
        prefix: str,
        disk_prefix: str,
        item: os.DirEntry[str],
        ignore: IgnoreRules,
        out: Walk,
        taken: set[str],
    ) -> None:
        """One entry of a folder being walked (and, for a folder, all below it);
        its folder is not ignored."""
        if not prefix and item.name == STATE_DIR:
            return
        name = item.name
        try:
            name.encode("utf-8")
            paths.check_marks(name)  # before normalizing: a long run takes long
        except (UnicodeEncodeError, paths.PathError) as exc:
            why = "name is not valid UTF-8" if isinstance(exc, UnicodeEncodeError) else str(exc)
            out.skipped.append(f"{disk_prefix}/{name!r}: {why}")
            return
        nfc = unicodedata.normalize("NFC", name)
        path = f"{prefix}/{nfc}" if prefix else nfc
        if nfc == name and disk_prefix == prefix:
            disk = path  # (one string, not two equal ones, for each entry kept)
        else:
            disk = f"{disk_prefix}/{name}" if disk_prefix else name
        try:
            s = item.stat(follow_symlinks=False)
        except OSError:
            return  # vanished meanwhile: the next scan sees it as it is
        regular = st.S_ISREG(s.st_mode)
        if regular and name.startswith(TMP_PREFIX):
            out.stale.append(disk)
            return
        is_dir = st.S_ISDIR(s.st_mode)
        if ignore.ignored_here(path, is_dir):
            if is_dir and nfc == ".git":
                out.repositories.append(path)
            return
        try:
            paths.check_child(path, nfc)
        except paths.PathError as exc:
            out.skipped.append(f"{disk}: {exc}")
            return
        twin = nfc in taken
        taken.add(nfc)
        if disk != path and not twin:
            self._disk[path] = disk
        if regular and not twin and self._unchanged is not None and self._unchanged(path, s):
            return
        target = None
        if st.S_ISLNK(s.st_mode):
            try:
                target = os.readlink(self.root / disk)
            except OSError:
                return
        node = _node(s, target)
        if node is None:
            out.skipped.append(f"{disk}: not a file, folder or symlink")
            return
        entry = DiskEntry(path, disk, node, _stat(s))
        if twin:
            out.duplicates.append(entry)
            return
        out.entries[path] = entry
        if is_dir:
            self._walk_dir(path, disk, ignore, out)

    def lstat(self, path: str) -> tuple[Node, Stat] | None:
        try:
            s = os.lstat(self.disk(path))
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        target = os.readlink(self.disk(path)) if st.S_ISLNK(s.st_mode) else None
        node = _node(s, target)
        return (node, _stat(s)) if node is not None else None

    # -- reading -----------------------------------------------------------

    def read(self, path: str) -> tuple[bytes, Stat]:
        """The file's bytes and the stat they go with; Changed if it moved under us."""
        p = self.disk(path)
        with open(p, "rb") as f:
            before = os.fstat(f.fileno())
            data = f.read()
            after = os.fstat(f.fileno())
        if _stat(before) != _stat(after) or len(data) != after.st_size:
            raise Changed(f"{path} changed while it was read")
        return data, _stat(after)

    @contextlib.contextmanager
    def open_read(self, path: str) -> Iterator[Reading]:
        """The file open for reading in blocks (one too big to read whole)."""
        fd = os.open(self.disk(path), os.O_RDONLY | os.O_NOFOLLOW)
        try:
            yield Reading(fd, path)
        finally:
            os.close(fd)

    def read_range(self, path: str, offset: int, length: int) -> bytes | None:
        try:
            with open(self.disk(path), "rb") as f:
                return os.pread(f.fileno(), length, offset)
        except OSError:
            return None

    # -- changing ----------------------------------------------------------

    def _expect(self, path: str, expect: Stat | None) -> None:
        """The destination is still as the index saw it (absent for None)."""
        try:
            s = os.lstat(self.disk(path))
        except FileNotFoundError:
            if expect is not None:
                raise Changed(f"{path} vanished") from None
            return
        if expect is None:
            raise Changed(f"{path} appeared")
        if st.S_ISDIR(s.st_mode):
            raise Changed(f"{path} is now a folder")
        if _stat(s) != expect:
            raise Changed(f"{path} changed")

    def write_file(
        self,
        path: str,
        pieces: Iterable[bytes],
        *,
        mtime_ns: int,
        exec: bool,
        expect: Stat | None,
        sync_dir: bool = True,
    ) -> Stat:
        """Replace ``path`` with ``pieces`` atomically and durably. With
        ``sync_dir=False`` the new name is made durable by the caller, with
        :meth:`sync_parents` (one fsync for many files of one folder)."""
        return self._written(path, pieces, exec).finish(mtime_ns, expect, sync_dir)

    def write_temp(self, path: str, pieces: Iterable[bytes], *, mtime_ns: int, exec: bool) -> Path:
        """``pieces`` in a new temporary file beside ``path``, with its mode and
        time; neither durable nor in place until :meth:`sync_files` and
        :meth:`put_in_place` (a group of files: one pass each, so that the file
        system commits their fsyncs together)."""
        return self._written(path, pieces, exec).close(mtime_ns, durable=False)

    def _written(self, path: str, pieces: Iterable[bytes], exec: bool) -> Writing:
        """A temporary file for ``path`` holding ``pieces`` (gone if that fails)."""
        w = self.create(path, exec)
        try:
            w.write(pieces)
        except BaseException:
            w.abort()
            raise
        return w

    def sync_files(self, tmps: Sequence[Path]) -> None:
        """Make these files' bytes durable (a few threads at once: the file
        system commits their fsyncs together)."""

        if len(tmps) < SYNC_THREADS * 2:
            for p in tmps:
                fsync_path(p)
            return
        with ThreadPoolExecutor(SYNC_THREADS) as pool:
            for _ in pool.map(fsync_path, tmps):
                pass

    def put_in_place(self, tmp: Path, path: str, expect: Stat | None) -> Stat:
        """Rename a durable temporary file over ``path`` if that is still as
        the index saw it (the name made durable by :meth:`sync_parents`)."""
        return self._replace(tmp, path, expect, sync_dir=False)

    @staticmethod
    def discard(tmp: Path) -> None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)

    def create(self, path: str, exec: bool) -> Writing:
        """A new temporary file that will replace ``path`` (written in parts,
        for a file too big to hold in memory)."""
        dest = self.disk(path)
        tmp = dest.parent / (TMP_PREFIX + secrets.token_hex(6))
        mode = file_mode(exec, self.umask)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        return Writing(self, path, tmp, os.fdopen(fd, "wb"), mode)

    def sync_parents(self, paths_: Iterable[str]) -> None:
        """Make durable the names just written in the folders of ``paths_``:
        each folder once."""
        for parent in {self.disk(p).parent for p in paths_}:
            self._fsync_dir(parent)

    def _replace(self, tmp: Path, path: str, expect: Stat | None, sync_dir: bool = True) -> Stat:
        """Rename ``tmp`` over ``path`` if that is still as the index saw it."""
        dest = self.disk(path)
        try:
            self._expect(path, expect)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if sync_dir:
            self._fsync_dir(dest.parent)
        return _stat(os.lstat(dest))

    def mkdir(self, path: str) -> None:
        p = self.disk(path)
        if p.is_symlink() or (p.exists() and not p.is_dir()):
            raise Changed(f"{path} exists and is not a folder")
        p.mkdir(exist_ok=True)
        self._fsync_dir(p.parent)

    def symlink(self, path: str, target: str, expect: Stat | None) -> Stat:
        dest = self.disk(path)
        tmp = dest.parent / (TMP_PREFIX + secrets.token_hex(6))
        os.symlink(target, tmp)
        return self._replace(tmp, path, expect)

    def remove(self, path: str, expect: Stat) -> None:
        """Delete a file or symlink, only if it is still what the index saw."""
        self._expect(path, expect)
        os.unlink(self.disk(path))
        self._fsync_dir(self.disk(path).parent)

    def rmdir(self, path: str) -> bool:
        """Remove an empty folder; False (and nothing done) if it is not empty."""
        try:
            os.rmdir(self.disk(path))
        except FileNotFoundError:
            return True
        except OSError:
            return False
        self._fsync_dir(self.disk(path).parent)
        return True

    def rename(self, src: str, dst: str, expect: Stat | None, dst_expect: Stat | None) -> Stat:
        """Move ``src`` to ``dst`` if both are as the index saw them. A folder is
        moved whole (its own stat changes with its contents: ``expect`` None)."""
        if expect is not None:
            self._expect(src, expect)
        elif not self.disk(src).exists() and not self.disk(src).is_symlink():
            raise Changed(f"{src} vanished")
        s_disk, d_disk = self.disk(src), self.disk(dst)
        # (A case-only rename sees its own source there on a case-insensitive disk.)
        taken = d_disk.exists() or d_disk.is_symlink()
        if (
            dst_expect is None
            and taken
            and not (d_disk.exists() and os.path.samefile(s_disk, d_disk))
        ):
            raise Changed(f"{dst} appeared")
        os.rename(s_disk, d_disk)
        self._disk.pop(src, None)
        self._fsync_dir(d_disk.parent)
        if s_disk.parent != d_disk.parent:
            self._fsync_dir(s_disk.parent)
        return _stat(os.lstat(d_disk))

    def touch(self, path: str, mtime_ns: int, exec: bool, expect: Stat | None) -> Stat:
        """Set a file's modification time and executable bit (its bytes stay)."""
        self._expect(path, expect)
        p = self.disk(path)
        mode = os.lstat(p).st_mode
        new = (mode | (0o111 & ~self.umask) | 0o100) if exec else (mode & ~0o111)
        if new != mode:
            os.chmod(p, new & 0o7777)
        os.utime(p, ns=(mtime_ns, mtime_ns))
        self._fsync_file(p)  # durable before the index records it
        return _stat(os.lstat(p))

    def rename_disk(self, disk: str, new_path: str) -> None:
        """Rename an on-disk name (say, an NFD twin) to a new linesync path."""
        dest = self.root / new_path
        if dest.exists() or dest.is_symlink():
            raise FileExistsError(new_path)
        os.rename(self.root / disk, dest)
        self._fsync_dir(dest.parent)

    def list_names(self, path: str) -> list[tuple[str, bool]] | None:
        """The names in a folder, each with whether it is a folder (None if gone)."""
        try:
            with os.scandir(self.disk(path)) as it:
                return [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        except OSError:
            return None

    def unlink_plain(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.disk(path))

    def exists(self, path: str) -> bool:
        p = self.disk(path)
        return p.exists() or p.is_symlink()

    @staticmethod
    def _fsync_file(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _fsync_dir(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            fsync_dir(path)
