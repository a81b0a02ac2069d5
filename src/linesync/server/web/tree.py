"""What the folder pages show, from journal rows: a folder's children, its
breadcrumbs, conflict copies beside their originals, sizes and download
names. Pure, no I/O."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from linesync.core import paths
from linesync.core.conflicts import ConflictCopy, parse_conflict_name
from linesync.protocol.schemas import Kind
from linesync.server.model import Row


def conflict_of(path: str) -> ConflictCopy | None:
    """What a conflict copy's name says (its original's path...), or None
    for an ordinary name."""
    return parse_conflict_name(path)


@dataclass(frozen=True, slots=True)
class Item:
    """One child of a folder, as the folder page lists it."""

    name: str
    path: str
    kind: Kind  # file, directory, symlink; tombstone: deleted (shown on request)
    size: int
    mtime_ns: int
    jid: int
    device: str
    conflict_of: str | None = None  # for a conflict copy: the original's name

    @property
    def deleted(self) -> bool:
        return self.kind is Kind.TOMBSTONE


def children(rows: Iterable[Row], folder: str, deleted: bool = False) -> list[Item]:
    """The entries right inside ``folder`` ("" for the top), folders first, then
    by name, each conflict copy right after its original; deleted ones only
    with ``deleted``."""
    prefix = f"{folder}/" if folder else ""
    found: list[Item] = []
    for r in rows:
        if not r.path.startswith(prefix) or "/" in r.path[len(prefix) :]:
            continue
        if r.kind is Kind.TOMBSTONE and not deleted:
            continue
        c = conflict_of(r.path) if r.kind is Kind.FILE else None
        found.append(
            Item(
                name=r.path[len(prefix) :],
                path=r.path,
                kind=r.kind,
                size=r.size,
                mtime_ns=r.mtime_ns,
                jid=r.jid,
                device=r.device,
                conflict_of=c.original[len(prefix) :] if c else None,
            )
        )

    def key(i: Item) -> tuple[int, str, int, str]:
        base = i.conflict_of or i.name
        return (0 if i.kind is Kind.DIRECTORY else 1, base.casefold(), 1 if i.conflict_of else 0,
                i.name)  # fmt: skip

    return sorted(found, key=key)


def conflicts(rows: Iterable[Row]) -> list[tuple[Row, Row | None]]:
    """Every live conflict copy with its original's current row (None: the
    original is gone), by path."""
    live = {r.path: r for r in rows if r.kind is not Kind.TOMBSTONE}
    out = []
    for path in sorted(live):
        c = conflict_of(path) if live[path].kind is Kind.FILE else None
        if c is not None:
            out.append((live[path], live.get(c.original)))
    return out


def crumbs(path: str) -> list[tuple[str, str]]:
    """(name, path) of each folder from the top down to ``path``."""
    out: list[tuple[str, str]] = []
    acc = ""
    for part in [p for p in path.split("/") if p]:
        acc = f"{acc}/{part}" if acc else part
        out.append((part, acc))
    return out


def clean_folder(path: str | None) -> str:
    """A folder path from a query string: "" for the top, else normalized and
    checked by the path rules (PathError when it breaks them)."""
    if path is None or path.strip("/") == "":
        return ""
    return paths.normalize(path.strip("/"))


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # unreachable


def when(seconds: float | None) -> str:
    """A time for people (UTC): "2026-12-07 01:40"."""
    if seconds is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(seconds))


def attachment(name: str) -> str:
    """A Content-Disposition that always downloads (never shows) ``name``."""
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{ascii_name or 'download'}\"; filename*=UTF-8''{quote(name)}"
