"""Path rules shared by client and server.

A linesync path is relative to the namespace root, uses ``/`` as separator and
is NFC-normalized. It never contains ``..`` or ``.`` segments, empty segments,
a NUL or other control characters, a backslash, more than 30 combining marks
in a row, or a segment longer than 255 UTF-8 bytes; the whole path is at most
4096 UTF-8 bytes. ``fold_key`` gives the key under which two paths collide on
a case-insensitive, normalization-insensitive file system.
"""

from __future__ import annotations

import re
import unicodedata

MAX_PATH_BYTES = 4096
MAX_SEGMENT_BYTES = 255
# Combining marks in a row, at most (as in Unicode's stream-safe text format,
# UAX #15): no real name has more, and normalizing a long run of marks takes
# time quadratic in its length (16,384 of them: about a second).
MAX_MARKS = 30
# Not combining themselves, but made of combining marks only (NFD).
_MARKLIKE = frozenset("\u0f73\u0f75\u0f81")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NON_ASCII = re.compile(rf"[^\x00-\x7f]{{{MAX_MARKS + 1},}}")  # where a run of marks can be


class PathError(ValueError):
    """A path that breaks the rules; the message says which rule."""


def normalize(path: str) -> str:
    """Return the canonical form of ``path`` or raise PathError.

    Canonical means NFC-normalized; everything else must already be right:
    the server never guesses what a malformed path meant.
    """
    if not isinstance(path, str):
        raise PathError("path must be a string")
    if path == "":
        raise PathError("path is empty")
    check_marks(path)
    nfc = unicodedata.normalize("NFC", path)
    if len(nfc.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise PathError(f"path is longer than {MAX_PATH_BYTES} bytes")
    if nfc.startswith("/"):
        raise PathError("path is absolute")
    if "\\" in nfc:
        raise PathError("path contains a backslash")
    for segment in nfc.split("/"):
        _check_segment(segment)
    return nfc


def check_child(path: str, name: str) -> None:
    """Raise PathError where :func:`normalize` would for ``path``, the path of
    the entry ``name`` (NFC, its marks checked) in a folder whose own path is
    valid: only what the new segment can break is checked."""
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise PathError(f"path is longer than {MAX_PATH_BYTES} bytes")
    if "\\" in name:
        raise PathError("path contains a backslash")
    if "/" in name:
        raise PathError("path has a '/' in a name")
    _check_segment(name)


def check_marks(path: str) -> None:
    """Refuse a run of more than MAX_MARKS combining marks, before normalizing."""
    for stretch in _NON_ASCII.findall(path):  # an ASCII character is no mark
        run = 0
        for ch in stretch:
            if unicodedata.combining(ch) or ch in _MARKLIKE:
                run += 1
                if run > MAX_MARKS:
                    raise PathError(f"path has more than {MAX_MARKS} combining marks in a row")
            else:
                run = 0


def _check_segment(segment: str) -> None:
    if segment == "":
        raise PathError("path has an empty segment")
    if segment in (".", ".."):
        raise PathError(f"path has a '{segment}' segment")
    try:
        size = len(segment.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise PathError("path is not valid Unicode") from exc
    if size > MAX_SEGMENT_BYTES:
        raise PathError(f"path segment is longer than {MAX_SEGMENT_BYTES} bytes")
    if _CONTROL.search(segment):
        raise PathError("path contains a control character")


def is_valid(path: str) -> bool:
    try:
        return normalize(path) == path
    except PathError:
        return False


def fold_key(path: str) -> str:
    """Collision key: paths with equal keys cannot coexist on macOS or Windows."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", path).casefold())


def parent(path: str) -> str:
    """The parent path, or "" for a top-level path."""
    head, _, _ = path.rpartition("/")
    return head


def ancestors(path: str) -> list[str]:
    """Every proper ancestor, outermost first: ``a/b/c`` → ``["a", "a/b"]``."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def is_under(path: str, folder: str) -> bool:
    """True when ``path`` lies strictly inside ``folder``."""
    return path.startswith(folder + "/")


def rebase(path: str, old_root: str, new_root: str) -> str:
    """Move ``path`` from under ``old_root`` to under ``new_root``."""
    if path == old_root:
        return new_root
    if not is_under(path, old_root):
        raise PathError(f"{path!r} is not under {old_root!r}")
    out = new_root + path[len(old_root) :]
    # Valid paths make a valid path here, but for its length.
    if len(out.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise PathError(f"a path moved there would be longer than {MAX_PATH_BYTES} bytes")
    return out
