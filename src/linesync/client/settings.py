"""The client's settings: every option defined once, and where its value comes from.

Each option is looked up, weakest first, in::

    built-in default  <  user config file  <  environment  <  command-line flag

The user config file is TOML at ``$LINESYNC_CLIENT_CONFIG``, else
``$XDG_CONFIG_HOME/linesync/config.toml`` (``~/.config/linesync/config.toml``).
The environment variable of option ``name`` is ``LINESYNC_<NAME>``. What
belongs to one folder (server, token, namespace) stays in that folder's
``.linesync/config.json`` (``client/config.py``).

Resolution is pure (:func:`resolve`): the file's contents, the environment and
the flags are passed in. Only :func:`read_file` and :func:`config_path` look
at the disk or the process.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PATH_ENV = "LINESYNC_CLIENT_CONFIG"
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_SECONDS = 7 * 86400.0


class SettingsError(ValueError):
    """A setting with a bad name or value; the message names where it came from."""


# -- value parsers: from a TOML value (or an environment string) to the value ---


def _seconds(hi: float, lo: float = 0.0) -> tuple[Callable[[object], Any], str]:
    allowed = f"a number of seconds from {lo:g} to {hi:g}"

    def parse(raw: object) -> float:
        if isinstance(raw, str):
            try:
                raw = float(raw.strip())
            except ValueError:
                raise ValueError(allowed) from None
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ValueError(allowed)
        value = float(raw)
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ValueError(allowed)
        return value

    return parse, allowed


def _whole(lo: int, hi: int) -> tuple[Callable[[object], Any], str]:
    allowed = f"a whole number from {lo} to {hi}"

    def parse(raw: object) -> int:
        if isinstance(raw, str):
            text = raw.strip()
            if not (text.isascii() and text.lstrip("-").isdigit()):
                raise ValueError(allowed)
            raw = int(text)
        if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
            raise ValueError(allowed)
        return raw

    return parse, allowed


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool() -> tuple[Callable[[object], Any], str]:
    allowed = "true or false (in the environment also 1/0, yes/no, on/off)"

    def parse(raw: object) -> bool:
        if isinstance(raw, str):
            text = raw.strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
        if isinstance(raw, bool):
            return raw
        raise ValueError(allowed)

    return parse, allowed


def _choice(choices: tuple[str, ...]) -> tuple[Callable[[object], Any], str]:
    allowed = "one of " + ", ".join(choices)

    def parse(raw: object) -> str:
        if isinstance(raw, str) and raw.strip().lower() in choices:
            return raw.strip().lower()
        raise ValueError(allowed)

    return parse, allowed


def _path() -> tuple[Callable[[object], Any], str]:
    allowed = "a file path (~ is your home directory)"

    def parse(raw: object) -> Path:
        if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
            raise ValueError(allowed)
        return Path(raw.strip()).expanduser()

    return parse, allowed


# -- the options ------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    name: str  # the key in the file; LINESYNC_<NAME> in the environment
    parse: Callable[[object], Any]  # a file or environment value -> the value; ValueError
    allowed: str  # what values are allowed, in words
    default: Any  # None: unset, or computed (see :func:`defaults`)
    help: str
    flag: str | None = None  # the command-line flag that sets it, if any
    commands: tuple[str, ...] = ()  # where that flag is

    @property
    def env(self) -> str:
        return "LINESYNC_" + self.name.upper()


def _opt(name: str, kind: tuple[Callable[[object], Any], str], default: Any, help: str,
         flag: str | None = None, commands: tuple[str, ...] = ()) -> Option:  # fmt: skip
    return Option(name, kind[0], kind[1], default, help, flag, commands)


CLIENT = ("init", "sync", "status", "log", "restore", "conflicts")
DEFAULT_RETRY_FOR = 120.0
DEFAULT_TIMEOUT = 120.0
DEFAULT_CONNECTIONS = 16
DEFAULT_DOWNLOAD_CONCURRENCY = 4  # client/base.py
DEFAULT_UPLOAD_CONCURRENCY = 3
DEFAULT_LOG_LIMIT = 20
LOG_MAX_BYTES = 5 * 2**20
LOG_BACKUPS = 3

OPTIONS: tuple[Option, ...] = (
    _opt("retry_for", _seconds(MAX_SECONDS), DEFAULT_RETRY_FOR,
         "seconds to keep retrying a server that is unreachable, overloaded or asks to slow "
         "down (0: no retries; --watch retries as long as it runs)", "--retry-for", ("sync",)),
    _opt("stream", _bool(), True,
         "with --watch, fetch a big file's chunks while another device still uploads it",
         "--no-stream", ("sync",)),
    _opt("quiet", _bool(), False, "print only problems", "-q/--quiet", ("sync",)),
    _opt("progress", _bool(), None,
         "progress bars on stderr: true always, false never (unset: when stderr is a "
         "terminal and not quiet)", "--progress/--no-progress", ("sync",)),
    _opt("verbose", _whole(0, 2), 0,
         "what is logged to stderr: 0 warnings, 1 (-v) information, 2 (-vv) debugging",
         "-v/--verbose", CLIENT),
    _opt("log_limit", _whole(1, 1000), DEFAULT_LOG_LIMIT,
         "how many versions `linesync log` shows", "--limit", ("log",)),
    _opt("timeout", _seconds(MAX_SECONDS, 1.0), DEFAULT_TIMEOUT,
         "seconds one request to the server may take in all (a long-poll gets its wait more)"),
    _opt("connections", _whole(1, 256), DEFAULT_CONNECTIONS,
         "connections to the server at most, at once"),
    _opt("download_concurrency", _whole(1, 64), DEFAULT_DOWNLOAD_CONCURRENCY,
         "download requests in flight at once during a sync"),
    _opt("upload_concurrency", _whole(1, 64), DEFAULT_UPLOAD_CONCURRENCY,
         "chunk uploads in flight at once during a sync"),
    _opt("log_file", _path(), None,
         "the log file (default: $XDG_STATE_HOME/linesync/linesync.log, "
         "~/.local/state/linesync/linesync.log)"),
    _opt("log_level", _choice(LOG_LEVELS), "info", "what is written to the log file"),
    _opt("log_max_bytes", _whole(0, 2**40), LOG_MAX_BYTES,
         "the log file is rotated at this size, in bytes (0: never)"),
    _opt("log_backups", _whole(0, 100), LOG_BACKUPS, "rotated log files kept"),
)  # fmt: skip
BY_NAME = {o.name: o for o in OPTIONS}

# Left out on purpose: --watch is a mode, not a setting; --confirm-deletes is a
# one-time confirmation that must never become permanent (it would switch the
# mass-delete rail off for good); init's --server/--token/--namespace are the
# folder's own (FOLDER/.linesync/config.json).


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the user config file is looked for."""
    env = os.environ if environ is None else environ
    if env.get(PATH_ENV):
        return Path(env[PATH_ENV]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or ""
    root = (
        Path(base) if os.path.isabs(base) else Path(env.get("HOME", "~")).expanduser() / ".config"
    )
    return root / "linesync" / "config.toml"


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the client keeps its log: ``$XDG_STATE_HOME/linesync``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or ""
    if os.path.isabs(base):
        return Path(base) / "linesync"
    return Path(env.get("HOME", "~")).expanduser() / ".local" / "state" / "linesync"


def read_file(path: Path) -> dict[str, object]:
    """The file's table; {} when there is no file. SettingsError when it is
    not TOML or cannot be read."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path} is not valid TOML: {exc}") from None


# -- resolution (pure) --------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    value: Any
    source: str  # "default", "file PATH", "env LINESYNC_X", "flag --x", "folder config PATH"


def defaults(environ: Mapping[str, str]) -> dict[str, Any]:
    """Each option's built-in default (the log file's depends on the environment)."""
    out = {o.name: o.default for o in OPTIONS}
    out["log_file"] = state_dir(environ) / "linesync.log"
    return out


def resolve(
    file: Mapping[str, object],
    file_path: Path,
    environ: Mapping[str, str],
    flags: Mapping[str, Any],
) -> dict[str, Value]:
    """Every option's value and where it came from. ``file``: the config
    file's table (from ``file_path``); ``flags``: the options given on the
    command line, already checked by argparse (absent when not given).
    SettingsError names the file and key, or the variable, and what is allowed."""
    unknown = sorted(set(file) - set(BY_NAME))
    if unknown:
        known = ", ".join(sorted(BY_NAME))
        raise SettingsError(
            f"{file_path}: unknown setting {unknown[0]!r}; the settings are: {known}"
        )
    base = defaults(environ)
    out: dict[str, Value] = {}
    for o in OPTIONS:
        value = Value(base[o.name], "default")
        if o.name in file:
            try:
                value = Value(o.parse(file[o.name]), f"file {file_path}")
            except ValueError:
                raise SettingsError(
                    f"{file_path}: {o.name} = {file[o.name]!r} is not allowed; give {o.allowed}"
                ) from None
        raw = environ.get(o.env)
        if raw is not None and raw != "":
            try:
                value = Value(o.parse(raw), f"env {o.env}")
            except ValueError:
                raise SettingsError(f"{o.env}={raw!r} is not allowed; give {o.allowed}") from None
        if flags.get(o.name) is not None:
            value = Value(flags[o.name], f"flag {o.flag}")
        out[o.name] = value
    return out


def load(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Value]:
    """:func:`resolve` with this process's environment and the user's file."""
    env = dict(os.environ if environ is None else environ)
    path = config_path(env)
    if env.get(PATH_ENV) and not path.exists():  # named on purpose: it must be there
        raise SettingsError(f"{PATH_ENV} names {path}, which does not exist")
    return resolve(read_file(path), path, env, flags)


def mask(token: str) -> str:
    """A token as ``config show`` prints it: its kind and last 4 characters."""
    if len(token) <= 8:
        return "****"
    return f"{token[:4]}…{token[-4:]}"
