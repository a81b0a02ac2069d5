"""Ignore rules: the folder's ``.linesyncignore`` plus built-in defaults.

The file uses gitignore syntax (comments, ``!`` negation, ``dir/`` for
directories only, ``/x`` anchored at the folder root, ``**``), matched by
``pathspec``'s gitignore patterns. Matching follows git's own algorithm:
each directory on the way down is checked first, and a path inside an
excluded directory is excluded whatever later lines say; otherwise the last
pattern that matches the path itself decides (``!`` re-includes). A pattern
matches a path exactly (``foo`` matches ``a/foo`` but is not re-tested on
``a/foo/bar``, which is decided by the walk); ``dir/`` matches directories
only.

Two sets of defaults come before the user's lines:

- ``PROTECTED_PATTERNS``: the client's own state folder and temporary files.
  Always ignored; the user's file cannot negate them.
- ``TEMPORARY_PATTERNS``: editor and OS temporaries. The user's file can
  negate them (``!*.part``).
- ``REPOSITORY_PATTERNS``: ``.git`` (a repository's database: git syncs it
  itself). The user's file can negate it (``!.git``).

``.linesyncignore`` itself is not ignored by any default, so it syncs like
any other file. A line that does not parse is skipped and described in
``warnings``; building rules never raises.

Pure: no I/O (the caller reads the file and passes its text).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from pathspec import GitIgnoreSpec

__all__ = [
    "DEFAULT_PATTERNS",
    "IGNORE_FILE",
    "PROTECTED_PATTERNS",
    "REPOSITORY_PATTERNS",
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

# Left out by default, for another reason: a git repository's own database.
# Two devices writing one .git at once corrupt it (conflict copies of
# .git/index, of refs, of packs half-written); git syncs itself (push/pull).
# A ``!.git`` line in the user's file syncs it anyway.
REPOSITORY_PATTERNS: tuple[str, ...] = (".git",)

DEFAULT_PATTERNS: tuple[str, ...] = PROTECTED_PATTERNS + TEMPORARY_PATTERNS + REPOSITORY_PATTERNS

_DIR_CACHE_LIMIT = 65_536


_DIR_MARK = "ps_d"  # pathspec's group for "matched a directory, followed by /"


@dataclass(frozen=True, slots=True)
class _Rule:
    """One compiled pattern line."""

    include: bool  # False for a ``!`` line
    dir_only: bool  # the line ended with ``/``
    regex: re.Pattern[str]  # matches the path itself, never only a parent of it

    def matches(self, path: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        return self.regex.search(path) is not None


def _trim_spaces(text: str) -> str:
    """``text`` without its trailing spaces, except one escaped by a backslash."""
    while text.endswith(" ") and not text.endswith("\\ "):
        text = text[:-1]
    return text


def _compile_line(line: str) -> _Rule | None:
    """The rule for one line, None for blanks and comments; raises if invalid.

    The trailing ``/`` of a directory-only line is taken off here and kept
    as a flag; pathspec turns the rest into a regex. Where that regex can
    also match a *parent* directory (its ``ps_d`` group: "a directory
    matched, followed by /"), it is forced to end at the end of the path.
    """
    body = _trim_spaces(line)  # gitignore drops unescaped trailing spaces
    dir_only = body.endswith("/") and not body.endswith("\\/")
    if dir_only:
        body = body[:-1]
        if body in ("", "!"):
            return None  # "/" alone matches nothing
        # Spaces before the slash belong to the name: keep pathspec from trimming them.
        name = _trim_spaces(body)
        body = name + "\\ " * (len(body) - len(name))
    patterns = GitIgnoreSpec.from_lines([body]).patterns
    if not patterns:
        return None
    pattern = patterns[0]
    if pattern.include is None or pattern.regex is None:
        return None
    regex = pattern.regex
    if not isinstance(regex.pattern, str):  # always str for str lines
        raise ValueError("unexpected pattern type")
    if _DIR_MARK in regex.groupindex:
        regex = re.compile(f"(?:{regex.pattern})\\Z", regex.flags)
    return _Rule(bool(pattern.include), dir_only, regex)


def _either(regexes: list[re.Pattern[str]]) -> re.Pattern[str] | None:
    """One pattern that matches where any of ``regexes`` does (None: where none
    can). Their named groups become plain ones (a name may repeat); where they
    cannot be joined, a pattern that matches every path (so the lines decide)."""
    if not regexes:
        return None
    if len({r.flags for r in regexes}) > 1 or any("(?P=" in r.pattern for r in regexes):
        return _EVERY
    joined = "|".join(f"(?:{_NAMED.sub('(?:', r.pattern)})" for r in regexes)
    try:
        return re.compile(joined, regexes[0].flags)
    except (re.error, OverflowError, RecursionError):
        return _EVERY


def _name_only(regex: re.Pattern[str]) -> re.Pattern[str] | None:
    """For a pattern without a slash (``*.swp``: it matches a path whose last
    segment matches), the pattern to match that segment with; else None."""
    m = _ANY_DEPTH.fullmatch(regex.pattern)
    if m is None or "/" in m[1].replace("[^/]", ""):
        return None
    try:
        return re.compile(f"(?:{m[1]})\\Z", regex.flags)
    except (re.error, OverflowError, RecursionError):
        return None


class _Prefilter:
    """Whether any line can match a path, most often in one search of its last
    segment: lines without a slash are matched against that, the others
    against the whole path."""

    def __init__(self, regexes: list[re.Pattern[str]]) -> None:
        names = [_name_only(r) for r in regexes]
        self.names = _either([n for n in names if n is not None])
        self.paths = _either([r for r, n in zip(regexes, names, strict=True) if n is None])

    def can_match(self, path: str) -> bool:
        if self.names is not None and self.names.match(path, path.rfind("/") + 1):
            return True
        return self.paths is not None and self.paths.search(path) is not None


# pathspec's form of a pattern without a slash: any folders, then the pattern.
_ANY_DEPTH = re.compile(r"\(\?:\^\(\?:\.\+/\)\?(.*)\(\?:\(\?P<ps_d>/\)\|\$\)\)\\Z")
_NAMED = re.compile(r"\(\?P<[^>]+>")
_EVERY = re.compile("")


def _parse(lines: Iterable[str], origin: str, warnings: list[str]) -> list[_Rule]:
    """The rules of the lines that parse; each line that does not is described."""
    rules: list[_Rule] = []
    for number, line in enumerate(lines, start=1):
        try:
            rule = _compile_line(line)
        except Exception as exc:  # pathspec raises several types, re.error too
            warnings.append(f"{origin} line {number}: skipped {line!r}: {exc}")
            continue
        if rule is not None:
            rules.append(rule)
    return rules


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
        user = _parse(self.user_lines, origin, self.warnings)
        # The protected patterns are checked on their own, so nothing negates
        # them; the temporary defaults come before the user's lines, so that
        # a ``!`` line in the file re-includes them.
        self._protected = _parse(PROTECTED_PATTERNS, "built-in", self.warnings)
        defaults = TEMPORARY_PATTERNS + REPOSITORY_PATTERNS
        self._rules = _parse(defaults, "built-in", self.warnings) + user
        self._rules.reverse()  # the last matching line decides
        self._dir_cache: dict[str, bool] = {}
        # Most paths match no line at all: one search of every line's pattern at
        # once says so (per kind: a directory-only line never matches a file).
        every = self._protected + self._rules
        self._any = {
            is_dir: _Prefilter([r.regex for r in every if is_dir or not r.dir_only])
            for is_dir in (False, True)
        }

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
        return self._match(whole, False)

    def ignored_here(self, path: str, is_dir: bool) -> bool:
        """:meth:`ignored` for a path whose parent folders are known not to be
        (a walk goes only into folders that are not): one match, not one per
        parent."""
        return self._dir_ignored(path) if is_dir else self._match(path, False)

    def _dir_ignored(self, path: str) -> bool:
        cached = self._dir_cache.get(path)
        if cached is None:
            cached = self._match(path, True)
            if len(self._dir_cache) >= _DIR_CACHE_LIMIT:
                self._dir_cache.clear()
            self._dir_cache[path] = cached
        return cached

    def _match(self, path: str, is_dir: bool) -> bool:
        """Whether the patterns exclude ``path`` itself (parents aside)."""
        if not self._any[is_dir].can_match(path):
            return False
        for rule in self._protected:
            if rule.matches(path, is_dir):
                return True
        for rule in self._rules:
            if rule.matches(path, is_dir):
                return rule.include
        return False
