"""Folder contents by content hash (BLAKE3), ignoring the tools' own state, with a
cache keyed by (size, mtime, inode) so a poll re-reads only what changed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import blake3

# The tools' state and temporaries never count as content.
IGNORED_DIRS = {".linesync", ".stfolder", ".stversions", ".unison"}
IGNORED_FILES = {".stignore"}
RECENT_NS = 300_000_000  # files touched this recently are hashed again each time

State = dict[str, str]  # relative posix path -> hash


def _hash_file(path: str) -> str:
    h = blake3.blake3()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Hasher:
    def __init__(self) -> None:
        self._cache: dict[tuple[str, int, int, int], str] = {}

    def _digest(self, path: str, st: os.stat_result) -> str:
        key = (path, st.st_size, st.st_mtime_ns, st.st_ino)
        got = self._cache.get(key)
        if got is not None:
            return got
        digest = _hash_file(path)
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RECENT_NS:
            self._cache[key] = digest
        return digest

    def file(self, root: Path, rel: str) -> str | None:
        """The hash of one file, None if it is missing (or not a file)."""
        path = os.path.join(root, rel)
        try:
            st = os.stat(path)
            if not os.path.isfile(path):
                return None
            return self._digest(path, st)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return None

    def sizes(self, root: Path) -> dict[str, int]:
        """Every file's size (cheap: no reads)."""
        out: dict[str, int] = {}
        for rel, st in walk(root):
            out[rel] = st.st_size
        return out

    def state(self, root: Path) -> State:
        out: State = {}
        for rel, st in walk(root):
            try:
                out[rel] = self._digest(os.path.join(root, rel), st)
            except (FileNotFoundError, PermissionError):
                continue
        return out


def walk(root: Path) -> list[tuple[str, os.stat_result]]:
    """(relative path, stat) of every regular file, outside the ignored dirs."""
    out: list[tuple[str, os.stat_result]] = []
    stack = [("", str(root))]
    while stack:
        rel, path = stack.pop()
        try:
            it = os.scandir(path)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with it:
            for e in it:
                r = f"{rel}{e.name}"
                try:
                    if e.is_dir(follow_symlinks=False):
                        if e.name not in IGNORED_DIRS:
                            stack.append((r + "/", e.path))
                    elif e.is_file(follow_symlinks=False) and e.name not in IGNORED_FILES:
                        out.append((r, e.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue
    return out


def du(path: Path) -> int:
    """Bytes allocated on disk under a folder."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


def diff(a: State, b: State, limit: int = 5) -> str:
    """A short description of how two states differ."""
    missing = sorted(set(a) - set(b))
    extra = sorted(set(b) - set(a))
    changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    parts = []
    for name, items in (("missing in B", missing), ("extra in B", extra), ("differ", changed)):
        if items:
            parts.append(f"{len(items)} {name} (e.g. {', '.join(items[:limit])})")
    return "; ".join(parts) or "same"
