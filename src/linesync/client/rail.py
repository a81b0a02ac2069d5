"""The mass-delete rail: pure decisions about local deletions, no I/O.

A deletion is judged whole before any of it goes to the server. The paths
the plan would delete on the server form the *pending set*; it lives in the
index between passes (see ``Hold``), so deletions that a watcher sees arrive
over several scans (an ``rm -rf`` of a big folder takes a while) are judged
together:

- **settle**: while the pending set keeps changing, nothing is sent; once it
  has not changed for ``settle_ns`` (a watcher waits about 2 s, a one-shot
  sync not at all), it is judged;
- **judge**: the pending files and the files this folder deleted on the
  server within ``window_ns`` count together, against the tree as it was
  before they started (the synced files, pending ones included, plus those
  recent deletions). Most of it gone (at least ``floor`` files, more than
  ``ratio`` of the tree): refused until the user confirms
  (``linesync sync --confirm-deletes``) or undoes it (the files come back
  locally, and the pending set is empty again);
- a refusal holds the deletions only: everything else keeps syncing, and
  nothing is restored locally by linesync itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import Enum

SECOND = 10**9


@dataclass(frozen=True)
class Rail:
    ratio: float = 0.5
    floor: int = 10
    settle_ns: int = 0  # a one-shot sync judges at once; a watcher waits
    window_ns: int = 120 * SECOND  # how long a committed deletion still counts


WATCH_SETTLE_NS = 2 * SECOND


@dataclass(frozen=True)
class Hold:
    """The pending deletions as the index keeps them between passes."""

    since_ns: int  # when this set of deletions was first seen
    changed_ns: int  # when it last changed (it settles after settle_ns)
    digest: str  # of the pending paths, to tell whether the set changed
    count: int  # files (and symlinks) among them
    total: int  # files in the tree before they started (synced + recently deleted)
    recent: int  # files this folder deleted on the server within the window
    refused: bool = False

    def dumps(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def loads(cls, text: str | None) -> Hold | None:
        if not text:
            return None
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None  # damaged: judged again from scratch (it only delays)


class Action(Enum):
    NONE = "none"  # nothing to delete on the server
    WAIT = "wait"  # still changing: hold until it settles
    SEND = "send"  # commit the deletions
    REFUSE = "refuse"  # hold until confirmed or undone


@dataclass(frozen=True)
class Verdict:
    action: Action
    hold: Hold | None  # what the index keeps now (None: nothing pending)
    wake_ns: int | None = None  # WAIT: when to judge again


def digest(paths: Iterable[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in sorted(paths):
        h.update(p.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def recent_count(recent: Iterable[tuple[int, int]], now_ns: int, window_ns: int) -> int:
    """Files deleted on the server within the window, from (time, count) pairs."""
    return sum(n for t, n in recent if now_ns - window_ns <= t <= now_ns)


def prune(recent: Iterable[tuple[int, int]], now_ns: int, window_ns: int) -> list[tuple[int, int]]:
    return [(t, n) for t, n in recent if now_ns - window_ns <= t <= now_ns]


def judge(
    prev: Hold | None,
    *,
    pending: str,
    paths: int,
    files: int,
    synced_files: int,
    recent: int,
    now_ns: int,
    rail: Rail,
    confirmed: bool = False,
) -> Verdict:
    """What to do with the deletions a plan would send.

    ``pending``: the digest of the paths to delete on the server; ``paths``:
    how many (folders included); ``files``: how many of them are files or
    symlinks; ``synced_files``: files in the synced view (pending ones
    included, they are not deleted there yet); ``recent``: files deleted on
    the server within the window; ``confirmed``: the user confirmed
    (``--confirm-deletes``)."""
    if paths == 0:
        return Verdict(Action.NONE, None)
    changed = prev is None or prev.digest != pending
    since = prev.since_ns if prev is not None else now_ns
    changed_ns = now_ns if changed or prev is None else prev.changed_ns
    # The tree before the deletion started: what was added since does not dilute it.
    total = prev.total if prev is not None else synced_files + recent
    gone = files + recent
    mass = gone >= rail.floor and gone > rail.ratio * total
    hold = Hold(since, changed_ns, pending, files, total, recent, refused=False)
    settle_at = changed_ns + rail.settle_ns
    if now_ns < settle_at:
        keep = prev is not None and prev.refused and mass and not confirmed
        return Verdict(Action.WAIT, _with(hold, refused=keep), settle_at)
    if mass and not confirmed:
        return Verdict(Action.REFUSE, _with(hold, refused=True))
    return Verdict(Action.SEND, hold)


def _with(hold: Hold, *, refused: bool) -> Hold:
    if hold.refused == refused:
        return hold
    return Hold(hold.since_ns, hold.changed_ns, hold.digest, hold.count, hold.total,
                hold.recent, refused)  # fmt: skip


def describe(hold: Hold, folder: str = "FOLDER") -> str:
    """The refusal, for the user: how many, of how many, and what to do."""
    also = f" (and {hold.recent} deleted there just before)" if hold.recent else ""
    return (
        f"holding the deletion of {hold.count} of {hold.total} files on the server{also}: "
        f"most of the folder vanished. If you deleted them, run `linesync sync {folder} "
        "--confirm-deletes`; if not, put them back and nothing happens"
    )
