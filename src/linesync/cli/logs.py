"""Where the client commands log: a rotating file (mode 0600) and stderr.

The file gets what ``log_level`` lets through (default: information) and
everything the command printed to stderr. Stderr is quiet by default:
warnings only, ``-v`` adds information, ``-vv`` debugging, ``-q`` errors
only. A token never reaches either: anything shaped like one (``lst_…``, a
``Bearer`` value) is masked in every line, whatever logged it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

_SECRET = re.compile(r"(lst_)[A-Za-z0-9_\-]{4,}|((?:Bearer|token)[ =:]+)[A-Za-z0-9_\-.]{8,}", re.I)
_MINE = "_linesync_cli"  # marks the handlers this module installed
FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def redact(text: str) -> str:
    """``text`` with every token masked."""
    return _SECRET.sub(lambda m: (m.group(1) or m.group(2)) + "****", text)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _NotEchoed(logging.Filter):
    """Lines the command printed to stderr itself are not printed again."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "echoed", False)


def _open_file(path: Path, max_bytes: int, backups: int) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created 0600 before the handler opens it (the log names the user's files).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    with contextlib.suppress(OSError):
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    handler = _PrivateRotatingHandler(path, maxBytes=max_bytes, backupCount=backups, delay=True)
    return handler


class _PrivateRotatingHandler(logging.handlers.RotatingFileHandler):
    """A rotated-to file is 0600 too."""

    def _open(self) -> Any:
        old = os.umask(0o077)
        try:
            return super()._open()
        finally:
            os.umask(old)


class _Tee(io.TextIOBase):
    """Stderr that also sends each whole line to the log file."""

    def __init__(self, stream: TextIO, log: logging.Logger) -> None:
        self.stream = stream
        self.log = log
        self.pending = ""

    def write(self, s: str) -> int:
        self.stream.write(s)
        self.pending += s
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            # Terminal drawing (progress bars: escapes, carriage returns) is not logged.
            if line.strip() and "\x1b" not in line and "\r" not in line:
                self.log.warning("%s", line.strip(), extra={"echoed": True})
        return len(s)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


def stderr_level(verbose: int, quiet: bool) -> int:
    if quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)


@contextlib.contextmanager
def logging_to(
    path: Path | None, *, level: str, max_bytes: int, backups: int, verbose: int, quiet: bool
) -> Iterator[logging.Logger]:
    """Log ``linesync.*`` to ``path`` (None: no file) and to stderr while the
    block runs; stderr's lines go to the file too. Restores everything after.
    A log file that cannot be opened is said once on stderr, never fatal."""
    root = logging.getLogger("linesync")
    for h in [h for h in root.handlers if getattr(h, _MINE, False)]:
        root.removeHandler(h)
        h.close()
    handlers: list[logging.Handler] = []
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(stderr_level(verbose, quiet))
    err.setFormatter(RedactingFormatter("linesync: %(message)s"))
    err.addFilter(_NotEchoed())
    handlers.append(err)
    if path is not None:
        try:
            fh = _open_file(path, max_bytes, backups)
        except OSError as exc:
            print(f"linesync: cannot write the log file {path}: {exc.strerror or exc} "
                  "(set log_file in `linesync config path`'s file, or LINESYNC_LOG_FILE)",
                  file=sys.stderr)  # fmt: skip
        else:
            fh.setLevel(level.upper())
            fh.setFormatter(RedactingFormatter(FORMAT))
            handlers.append(fh)
    old_level, old_propagate, old_stderr = root.level, root.propagate, sys.stderr
    for h in handlers:
        setattr(h, _MINE, True)
        root.addHandler(h)
    root.setLevel(min(h.level for h in handlers))
    root.propagate = False
    cli = logging.getLogger("linesync.cli")
    sys.stderr = _Tee(old_stderr, cli)
    try:
        yield cli
    finally:
        sys.stderr = old_stderr
        for h in handlers:
            root.removeHandler(h)
            h.close()
        root.setLevel(old_level)
        root.propagate = old_propagate
