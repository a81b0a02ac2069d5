"""What ``linesync status`` tells: the last sync (recorded in the index when a
sync ends), what a sync would do now (counts and bytes each way), the files it
could not read or write and why, the last error, and the conflict copies.

Recording is a few ``meta`` rows of the index (``last_run``, ``last_synced_ns``,
``last_error``), written by the engine when a sync ends; :func:`summarize` is
pure, over the plan a preview made.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from linesync.client import planner as pl
from linesync.client.base import MassDelete, SyncResult
from linesync.client.index import Index
from linesync.client.localfs import STATE_DIR
from linesync.core import paths
from linesync.protocol.schemas import Kind

LAST_RUN = "last_run"
LAST_SYNCED = "last_synced_ns"
LAST_ERROR = "last_error"
MAX_KEPT = 200  # problems and per-path errors kept from one sync
CONFLICT_MARK = "(conflict from "


# -- recording (the engine calls these when a sync ends) ------------------------------


def record_result(index: Index, result: SyncResult, failed: Mapping[str, str], now_ns: int) -> None:
    """Record a finished sync: when, what it did, its problems, and the paths
    it could not read or write that are still not in sync (``failed``: path ->
    why); when it converged, also as the last successful sync."""
    still = set(index.dirty())
    errors = {
        p: why
        for p, why in sorted(failed.items())[:MAX_KEPT]
        if p in still or index.state(p).local is None  # (never read: not in the index)
    }
    run = {
        "finished_ns": now_ns,
        "converged": result.converged,
        "uploaded": result.uploaded,
        "downloaded": result.downloaded,
        "deleted_local": result.deleted_local,
        "deleted_remote": result.deleted_remote,
        "moved": result.moved,
        "merged": result.merged,
        "conflicts": result.conflicts[:MAX_KEPT],
        "problems": result.problems[:MAX_KEPT],
        "failed": errors,
        "skipped": dict(sorted(result.skipped.items())[:MAX_KEPT]),
    }
    with index.transaction():
        index.set(LAST_RUN, json.dumps(run))
        if result.converged:
            index.set(LAST_SYNCED, str(now_ns))


def record_error(index: Index, exc: BaseException, now_ns: int) -> None:
    """Record a sync that ended with an error (never raises: the error that
    ended the sync is the one the caller sees)."""
    try:
        if isinstance(exc, MassDelete) and exc.result is not None:
            record_result(index, exc.result, {}, now_ns)
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        with index.transaction():
            index.set(LAST_ERROR, json.dumps({"at_ns": now_ns, "message": message}))
    except Exception:  # the index itself failed: nothing more to record
        return


# -- reading --------------------------------------------------------------------


@dataclass
class Pending:
    """What a sync would do now, by direction: files and bytes."""

    upload_files: int = 0
    upload_bytes: int = 0
    download_files: int = 0
    download_bytes: int = 0
    delete_here: int = 0
    delete_on_server: int = 0
    moves: int = 0
    merges: int = 0
    conflicts: int = 0


def summarize(ops: Iterable[pl.Op]) -> Pending:
    """Count a plan's ops (folders count as neither files nor bytes)."""
    p = Pending()
    for op in ops:
        if isinstance(op, pl.Upload):
            if op.node.kind is not Kind.DIRECTORY:
                p.upload_files += 1
                p.upload_bytes += op.node.size
        elif isinstance(op, pl.Download):
            node = op.remote.node
            if node is not None and node.kind is not Kind.DIRECTORY:
                p.download_files += 1
                same = op.local is not None and op.local.node.chash == node.chash
                p.download_bytes += 0 if same else node.size
        elif isinstance(op, pl.DeleteRemote):
            p.delete_on_server += 1
        elif type(op) is pl.DeleteLocal:  # (not a subclass: those only unclutter)
            if op.local.node.kind is not Kind.DIRECTORY:
                p.delete_here += 1
        elif isinstance(op, (pl.MoveLocal, pl.MoveRemote)):
            p.moves += 1
        elif isinstance(op, pl.Merge):
            p.merges += 1
        elif isinstance(op, pl.Conflict):
            p.conflicts += 1
    return p


def conflict_copies(folder: Path) -> list[str]:
    """The conflict copies in ``folder`` (relative paths, sorted)."""
    found: list[str] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d != STATE_DIR]
        for name in (*names, *dirs):
            if CONFLICT_MARK in name:
                found.append(Path(root, name).relative_to(folder).as_posix())
    return sorted(found)


def unsynced_excluded(index: Index, excluded: Iterable[str]) -> list[str]:
    """Files here under excluded folders that the server does not have as they
    are (made or changed here): kept, never uploaded while excluded."""
    from linesync.client.selective import unsynced_below

    return sorted({p for e in excluded for p in unsynced_below(index, e)})


@dataclass
class Status:
    """Everything ``linesync status`` shows, as plain data (``--json``)."""

    folder: str
    server: str
    namespace: str
    read_only: bool
    last_synced_ns: int | None = None
    last_run: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None
    pending: Pending | None = None  # None: the server could not be asked
    pending_error: str | None = None
    held: int = 0  # deletions held back by the mass-delete rail
    unwritable: dict[str, str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    excluded_unsynced: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def recorded(index: Index) -> tuple[int | None, dict[str, Any] | None, dict[str, Any] | None]:
    """The last successful sync's time, the last run and the last error."""

    def load(key: str) -> dict[str, Any] | None:
        raw = index.get(key)
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    raw = index.get(LAST_SYNCED)
    synced = int(raw) if raw and raw.isdigit() else None
    return synced, load(LAST_RUN), load(LAST_ERROR)


def ago(ns: int | None, now: float | None = None) -> str:
    """``2026-12-07 01:02:03 (5 minutes ago)``, or ``never``."""
    if ns is None:
        return "never"
    seconds = ns / 1e9
    delta = (time.time() if now is None else now) - seconds
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
    if delta < 0:
        return when
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if delta >= size:
            n = int(delta // size)
            return f"{when} ({n} {unit}{'s' if n > 1 else ''} ago)"
    return f"{when} ({int(delta)} s ago)"


def under_any(path: str, folders: Iterable[str]) -> bool:
    return any(path == f or paths.is_under(path, f) for f in folders)


@dataclass
class Preview:
    """A status and the preview it was made from (for the op-by-op listing)."""

    status: Status
    ops: list[pl.Op] = field(default_factory=list)
    held_ops: list[pl.Op] = field(default_factory=list)
    hold: Any = None  # rail.Hold | None
    result: SyncResult = field(default_factory=SyncResult)


async def gather(folder: Path, report: Any = None) -> Preview:
    """The folder's status: what the index recorded, and what a sync would do
    now (asked of the server; when it cannot be asked, ``pending`` is None and
    ``pending_error`` says why). Sends nothing and changes no file."""
    from linesync.client.api import _open_index
    from linesync.client.config import FolderConfig
    from linesync.client.engine import Engine
    from linesync.client.remote import Remote
    from linesync.protocol.errors import LinesyncError

    cfg = FolderConfig.load(folder)
    excluded = list(getattr(cfg, "excluded", ()))
    st = Status(str(folder), cfg.server, cfg.namespace_name, cfg.read_only, excluded=excluded)
    out = Preview(st)
    index = _open_index(folder, report or (lambda _: None))
    try:
        try:
            async with Remote(cfg.server, cfg.token) as remote:
                engine = Engine(folder, cfg, remote, index)
                plan, held_ops, hold, result = await engine.preview()
            out.ops, out.held_ops, out.hold, out.result = plan.ops, held_ops, hold, result
            st.pending = summarize(plan.ops)
            st.held = len(held_ops)
        except LinesyncError as exc:
            st.pending_error = f"{exc.message} ({exc.code.value})"
        st.last_synced_ns, st.last_run, st.last_error = recorded(index)
        raw = index.get("unwritable")
        try:
            data = json.loads(raw) if raw else {}
            st.unwritable = {str(p): str(v[1]) for p, v in data.items()}
        except (ValueError, TypeError, IndexError, AttributeError):
            st.unwritable = {}
        st.excluded_unsynced = unsynced_excluded(index, excluded) if excluded else []
    finally:
        index.close()
    st.conflicts = conflict_copies(folder)
    return out
