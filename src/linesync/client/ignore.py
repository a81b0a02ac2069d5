"""Ignore rules: the folder's ``.linesyncignore`` plus built-in defaults.

The file uses gitignore syntax (comments, ``!`` negation, ``dir/`` for
directories only, ``/x`` anchored at the folder root, ``**``), matched by
``pathspec``'s ``GitIgnoreSpec``. As in git, a path is ignored when it or any
of its parent directories is ignored: a file inside an ignored directory
cannot be un-ignored.

Two sets of defaults come before the user's lines:

- ``PROTECTED_PATTERNS``: the client's own state folder and temporary files.
  Always ignored; the user's file cannot negate them.
- ``TEMPORARY_PATTERNS``: editor and OS temporaries. The user's file can
  negate them (``!*.part``).

``.linesyncignore`` itself is not ignored by any default, so it syncs like
any other file. A line that does not parse is skipped and described in
``warnings``; building rules never raises.

Pure: no I/O (the caller reads the file and passes its text).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from pathspec import GitIgnoreSpec

__all__ = [
    "DEFAULT_PATTERNS",
    "IGNORE_FILE",
    "PROTECTED_PATTERNS",
    "TEMPORARY_PATTERNS",
    "IgnoreRules",
]

IGNORE_FILE = ".linesyncignore"

PROTECTED_PATTERNS: tuple[str, ...] = (
    ".linesync",  # the client's state folder (ignored as a file too, to be safe)
    "*.linesync-tmp",
    ".linesync-tmp-*",
)

TEMPORARY_PATTERNS: tuple[str, ...] = (
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    "._*",
    "*.swp",
    "*.swo",
    "*.swx",
    "*~",
    ".#*",
    "\\#*#",  # Emacs auto-save; escaped because a leading # starts a comment
    ".~lock.*#",
    "~$*",
    "*.crdownload",
    "*.part",
    ".Trash-*/",
    ".directory",
)

DEFAULT_PATTERNS: tuple[str, ...] = PROTECTED_PATTERNS + TEMPORARY_PATTERNS

_DIR_CACHE_LIMIT = 65_536


def _parse(lines: Iterable[str], origin: str, warnings: list[str]) -> list[str]:
    """The lines that parse on their own; each one that does not is described."""
    good: list[str] = []
    for number, line in enumerate(lines, start=1):
        try:
            GitIgnoreSpec.from_lines([line])
        except Exception as exc:  # pathspec raises several types, re.error too
            warnings.append(f"{origin} line {number}: skipped {line!r}: {exc}")
            continue
        good.append(line)
    return good


def _compile(lines: list[str], warnings: list[str]) -> GitIgnoreSpec:
    try:
        return GitIgnoreSpec.from_lines(lines)
    except Exception as exc:  # not expected once every line parsed alone
        warnings.append(f"cannot compile the ignore patterns, using none of them: {exc}")
        return GitIgnoreSpec.from_lines([])


class IgnoreRules:
    """Decides which linesync paths are left out of sync."""

    def __init__(self, text: str | bytes = "", *, origin: str = IGNORE_FILE) -> None:
        """Rules from the text of an ignore file (``""`` for defaults only)."""
        self.warnings: list[str] = []
        if isinstance(text, bytes):
            raw = text
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.warnings.append(f"{origin}: not valid UTF-8; undecodable bytes replaced")
                text = raw.decode("utf-8", "replace")
        text = unicodedata.normalize("NFC", text.removeprefix("\ufeff"))
        self.user_lines: tuple[str, ...] = tuple(text.splitlines())
        good = _parse(self.user_lines, origin, self.warnings)
        # Defaults first, so that the user's lines can negate them; the
        # protected patterns are a separate spec that nothing negates.
        self._protected = _compile(list(PROTECTED_PATTERNS), self.warnings)
        self._spec = _compile([*TEMPORARY_PATTERNS, *good], self.warnings)
        self._dir_cache: dict[str, bool] = {}

    @classmethod
    def default(cls) -> IgnoreRules:
        """The built-in defaults only (no ignore file)."""
        return cls("")

    def ignored(self, path: str, is_dir: bool) -> bool:
        """True if ``path`` (relative, ``/``-separated) is left out of sync.

        ``is_dir`` says whether the path itself is a directory; its parents
        always are. A path is ignored if it or any parent directory is.
        """
        parts = [part for part in path.split("/") if part]
        if not parts:
            return False  # the folder root
        for depth in range(1, len(parts)):
            if self._dir_ignored("/".join(parts[:depth])):
                return True
        whole = "/".join(parts)
        if is_dir:
            return self._dir_ignored(whole)
        return self._match(whole)

    def _dir_ignored(self, path: str) -> bool:
        cached = self._dir_cache.get(path)
        if cached is None:
            cached = self._match(path + "/")
            if len(self._dir_cache) >= _DIR_CACHE_LIMIT:
                self._dir_cache.clear()
            self._dir_cache[path] = cached
        return cached

    def _match(self, path: str) -> bool:
        return self._protected.match_file(path) or self._spec.match_file(path)
