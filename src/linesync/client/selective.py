"""Selective sync: folders of a namespace this device leaves out.

The folders live in the folder's ``.linesync/config.json`` (``excluded``).
What it means is decided by the planner (``planner.plan(excluded=...)``):
nothing at or below them is downloaded here, nothing there is deleted (or
moved) on the server because it is absent here, and nothing made here is
uploaded; files that are here as they were last synced are removed here.
This module reads and changes the list.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from linesync.client.config import INDEX_FILE, FolderConfig
from linesync.client.index import Index
from linesync.client.localfs import STATE_DIR
from linesync.core import paths
from linesync.protocol.schemas import Kind

MAX_LISTED = 10  # unsynced files named when an exclusion is refused


def excluded_in(folder: Path, config: FolderConfig) -> frozenset[str]:
    """The folders left out now: read again from the folder's config at each
    sync (a running ``sync --watch`` is woken by the config file's change, see
    :mod:`linesync.client.watcher`); ``config``'s if the file cannot be read."""
    try:
        return frozenset(FolderConfig.load(folder).excluded)
    except (OSError, ValueError):
        return frozenset(config.excluded)


def folder_path(folder: Path, text: str, cwd: Path | None = None) -> str:
    """``text`` as a path inside ``folder`` (``/``-separated, relative to its
    root): an absolute path inside it, a path relative to the current folder
    when that lies inside it, else a path relative to the root. ValueError
    when it names the root, the client's state or nothing valid."""
    cwd = Path.cwd() if cwd is None else cwd
    p = Path(text)
    rel: str
    if p.is_absolute():
        try:
            rel = Path(os.path.normpath(p)).relative_to(folder).as_posix()
        except ValueError:
            raise ValueError(f"{text} is not inside {folder}") from None
    else:
        here = Path(os.path.normpath(cwd / p))
        if (cwd == folder or folder in cwd.parents) and here != folder:
            rel = here.relative_to(folder).as_posix()
        else:
            rel = os.path.normpath(text).replace(os.sep, "/")
    rel = rel.strip("/")
    if rel in ("", ".") or rel.startswith("../") or rel == "..":
        raise ValueError(
            f"{text}: give a folder inside {folder} (the whole folder cannot be left out)"
        )
    try:
        rel = paths.normalize(rel)
    except paths.PathError as exc:
        raise ValueError(f"{text}: {exc}") from None
    if rel.split("/")[0] == STATE_DIR:
        raise ValueError(f"{text}: that is linesync's own state")
    return rel


def unsynced_below(index: Index, path: str) -> list[str]:
    """Files at or below ``path`` that are here but not as last synced (made
    or changed here): leaving the folder out now would keep them from the
    server. (As of the last scan.)"""
    out = []
    for p, s in index.states_at([path]).items():
        ln = s.local_node
        if ln is None or ln.kind is Kind.DIRECTORY:
            continue
        if not ln.same(s.synced_node):
            out.append(p)
    return sorted(out)


def add(folder: Path, wanted: Iterable[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Leave out ``wanted`` (paths as :func:`folder_path` gives them). Those
    holding files made or changed here and not synced yet are refused (path ->
    those files); the rest are saved. Returns (added, refused)."""
    cfg = FolderConfig.load(folder)
    index = Index.open(folder / STATE_DIR / INDEX_FILE)
    try:
        refused = {p: found for p in wanted if (found := unsynced_below(index, p))}
    finally:
        index.close()
    have = list(cfg.excluded)
    added = [p for p in wanted if p not in refused and p not in have]
    if added:
        dataclasses.replace(cfg, excluded=tuple(sorted({*have, *added}))).save(folder)
    return added, refused


def remove(folder: Path, wanted: Iterable[str]) -> list[str]:
    """Include ``wanted`` again; the paths that were left out."""
    cfg = FolderConfig.load(folder)
    gone = [p for p in wanted if p in cfg.excluded]
    if gone:
        keep = tuple(p for p in cfg.excluded if p not in gone)
        dataclasses.replace(cfg, excluded=keep).save(folder)
    return gone
