"""Names of conflict copies, both ways: pure (no I/O).

A client keeps the version it loses as a copy beside the original, named so
that the extension still opens it in the right program:

    ``name (conflict from DEVICE YYYY-MM-DD HHMMSS).ext``

and, when that name is taken, ``... HHMMSS 2).ext``, ``3``, and so on. Copies
made for other reasons say so in place of ``conflict`` (``case conflict``,
``name clash``: two names this disk cannot hold apart). The stamp is the
local time the copy was made; DEVICE is the device's name with every
character but letters, digits and ``-_.`` made ``-`` (:func:`device_label`).

:func:`format_conflict_name` makes a name; :func:`parse_conflict_name` reads
one back (the original's path, the device, the stamp), None for an ordinary
name. The client names copies with the first (``linesync.client.naming``);
anyone who shows them (the web interface) reads them with the second.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass

from linesync.core import paths

CONFLICT = "conflict"
CASE_CONFLICT = "case conflict"
NAME_CLASH = "name clash"
KINDS = (CONFLICT, CASE_CONFLICT, NAME_CLASH)  # what the client makes copies for

STAMP_FORMAT = "%Y-%m-%d %H%M%S"

_NAME = re.compile(
    r"^(?P<stem>.+) \((?P<what>[a-z]+(?: [a-z]+)*) from (?P<device>[\w.-]+) "
    r"(?P<stamp>\d{4}-\d{2}-\d{2} \d{6})(?: (?P<n>[1-9]\d*))?\)(?P<ext>(?:\.[^./]*)?)$",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class ConflictCopy:
    """What the name of a conflict copy says."""

    original: str  # the path it is a copy of (in the same folder)
    device: str  # the device that made it, as :func:`device_label` wrote it
    stamp: str  # "YYYY-MM-DD HHMMSS" (local time where it was made), as in the name
    what: str = CONFLICT  # why: one of KINDS
    n: int = 1  # the name's number among copies made in the same second


def split_ext(name: str) -> tuple[str, str]:
    """``name`` as stem and extension (with its dot): ``a.tar.gz`` → ``a.tar``,
    ``.gz``. No extension, or a dot file such as ``.bashrc``: the whole name."""
    dot = name.rfind(".")
    if dot <= 0:
        return name, ""
    return name[:dot], name[dot:]


def device_label(device: str) -> str:
    """A device's name as a copy's name holds it: letters, digits and ``-_.``
    kept, anything else ``-`` (``device`` when empty), NFC."""
    dev = "".join(c if c.isalnum() or c in "-_." else "-" for c in device) or "device"
    return unicodedata.normalize("NFC", dev)


def format_conflict_name(
    path: str, device: str, what: str = CONFLICT, when: float | None = None, n: int = 1
) -> str:
    """The path of a copy of ``path`` (a normalized path) made on ``device``
    at ``when`` (seconds since the epoch, shown in local time; None: now),
    the ``n``-th of that second. PathError if the name would be too long."""
    folder, _, name = path.rpartition("/")
    stem, ext = split_ext(name)
    stamp = time.strftime(STAMP_FORMAT, time.localtime(when))
    suffix = f" {n}" if n > 1 else ""
    new = f"{stem} ({what} from {device_label(device)} {stamp}{suffix}){ext}"
    return paths.normalize(f"{folder}/{new}" if folder else new)


def parse_conflict_name(path: str, kinds: Collection[str] = (CONFLICT,)) -> ConflictCopy | None:
    """What the name of the copy at ``path`` says (its original's path in the
    same folder, the device, the stamp), or None for an ordinary name or a
    copy made for a reason not in ``kinds`` (by default only conflicts:
    ``KINDS`` takes every copy the client makes)."""
    folder, _, name = path.rpartition("/")
    m = _NAME.match(name)
    if m is None or m.group("what") not in kinds:
        return None
    original = m.group("stem") + m.group("ext")
    return ConflictCopy(
        original=f"{folder}/{original}" if folder else original,
        device=m.group("device"),
        stamp=m.group("stamp"),
        what=m.group("what"),
        n=int(m.group("n") or 1),
    )
