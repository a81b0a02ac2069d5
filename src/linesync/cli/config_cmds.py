"""``linesync config show|path``, and the client settings applied to a
command: argparse flags, the environment and the user's config file
(``client/settings.py``), and the logs (``cli/logs.py``)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from linesync.client import settings as S

# command -> {argparse dest: option name}: the flags that set an option.
FLAGS: dict[str, dict[str, str]] = {
    "sync": {
        "retry_for": "retry_for",
        "stream": "stream",
        "quiet": "quiet",
        "progress": "progress",
    },
    "log": {"limit": "log_limit"},
}
VERBOSE_DEST = "verbose"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "config",
        help="show the client's settings and where each comes from",
        description="The client's settings: built-in defaults, then the user config file "
        "(TOML), then the environment (LINESYNC_<NAME>), then command-line flags; what "
        "belongs to one folder (server, token, namespace) is in FOLDER/.linesync/config.json.",
    )
    p.epilog = settings_table()
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="every setting, its value and where it came from",
        description="Print every client setting, its value and where it came from "
        "(default, the config file, an environment variable, or a folder's config). "
        "Tokens are masked.",
    )
    show.add_argument("--folder", type=Path, help="also show this linesync folder's settings")
    actions.add_parser(
        "path",
        help="where the config file is looked for",
        description=f"Print the path of the user config file (${S.PATH_ENV}, else "
        "$XDG_CONFIG_HOME/linesync/config.toml, else ~/.config/linesync/config.toml). "
        "It need not exist.",
    )


def settings_table() -> str:
    """Every setting for ``config --help``: its key, variable, flag, default and use."""
    import textwrap

    lines = ["settings (a key in the config file; LINESYNC_<KEY> in the environment):"]
    for o in S.OPTIONS:
        default = "below" if o.name == "log_file" else _text(o.default)
        where = "/".join(o.commands) if len(o.commands) < 3 else "every client command"
        flag = f", {o.flag} on {where}" if o.flag else ""
        lines.append(f"  {o.name} (default {default}{flag})")
        lines += textwrap.wrap(f"{o.help}; {o.allowed}", 74, initial_indent="      ",
                               subsequent_indent="      ")  # fmt: skip
    return "\n".join(lines)


def bind(parser: argparse.ArgumentParser) -> None:
    """Let the settings fill what a client command's flags leave out: their
    argparse defaults become None (not given), and every client command gets
    ``-v/--verbose``. Their help still states the built-in default."""
    sub = _subparsers(parser)
    for name, p in sub.items():
        if name not in S.CLIENT:
            continue
        for action in p._actions:
            if action.dest in FLAGS.get(name, {}):
                action.default = None
        if not any("-v" in a.option_strings for a in p._actions):
            p.add_argument(
                "-v", "--verbose", action="count", default=None,
                help="log more to stderr: -v information, -vv debugging "
                "(the log file: `linesync config show`)",
            )  # fmt: skip


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def flags_of(args: argparse.Namespace) -> dict[str, Any]:
    """The options the command line gave (None: not given)."""
    out = {opt: getattr(args, dest, None) for dest, opt in FLAGS.get(args.command, {}).items()}
    verbose = getattr(args, VERBOSE_DEST, None)
    out["verbose"] = None if verbose is None else min(verbose, 2)
    return out


@contextlib.contextmanager
def configured(args: argparse.Namespace) -> Iterator[bool]:
    """Resolve the settings for a client command, put them where the command
    reads them, and log while it runs. Yields False (after saying why) when
    a setting is wrong: the command must not run."""
    try:
        values = S.load(flags_of(args))
    except S.SettingsError as exc:
        print(f"linesync: {exc}", file=sys.stderr)
        yield False
        return
    v = {name: value.value for name, value in values.items()}
    for dest, opt in FLAGS.get(args.command, {}).items():
        if hasattr(args, dest):
            setattr(args, dest, v[opt])
    from linesync.cli.logs import logging_to

    with _module_settings(v), logging_to(
        v["log_file"], level=v["log_level"], max_bytes=v["log_max_bytes"],
        backups=v["log_backups"], verbose=v["verbose"], quiet=bool(v["quiet"]),
    ) as log:  # fmt: skip
        from linesync import __version__

        log.info("linesync %s %s (pid %d)", __version__, args.command, os.getpid())
        for name, value in values.items():
            log.debug("setting %s = %r (%s)", name, value.value, value.source)
        yield True


@contextlib.contextmanager
def _module_settings(v: dict[str, Any]) -> Iterator[None]:
    """The settings the client library reads from its modules' globals (the
    names the request and transfer code look up when it runs), set while the
    command runs and put back after (the library's defaults are unchanged)."""
    from linesync.client import committing, engine, remote

    places: list[tuple[object, str, str]] = [
        (remote, "DEFAULT_TIMEOUT", "timeout"),
        (remote, "DEFAULT_CONNECTIONS", "connections"),
        (engine, "DOWNLOAD_CONCURRENCY", "download_concurrency"),
        (committing, "UPLOAD_CONCURRENCY", "upload_concurrency"),
    ]
    old = [getattr(module, name) for module, name, _ in places]
    for module, name, key in places:
        setattr(module, name, v[key])
    try:
        yield
    finally:
        for (module, name, _), value in zip(places, old, strict=True):
            setattr(module, name, value)


def run_own(args: argparse.Namespace) -> int:
    if args.command == "config" and args.action == "path":
        print(S.config_path())
        return 0
    if args.command == "config" and args.action == "show":
        return _show(args.folder)
    if args.command == "completion":
        from linesync.cli.completion import script

        print(script(args.shell), end="")
        return 0
    raise AssertionError(args.command)


def _show(folder: Path | None) -> int:
    path = S.config_path()
    try:
        values = S.load({})
    except S.SettingsError as exc:
        print(f"linesync: {exc}", file=sys.stderr)
        return 2
    exists = "" if path.exists() else " (not there: every value is from elsewhere)"
    print(f"config file: {path}{exists}")
    rows = [(name, _text(v.value), v.source) for name, v in values.items()]
    if folder is not None:
        from linesync.client.config import FolderConfig

        try:
            cfg = FolderConfig.load(folder.expanduser().resolve())
        except (FileNotFoundError, ValueError) as exc:
            print(f"linesync: {exc}", file=sys.stderr)
            return 2
        where = f"folder config {FolderConfig.path(folder.expanduser().resolve())}"
        rows += [
            ("server", cfg.server, where),
            ("token", S.mask(cfg.token), where),
            ("namespace", f"{cfg.namespace_name} (id {cfg.namespace})", where),
            ("device", cfg.device, where),
            ("read_only", _text(cfg.read_only), where),
        ]
    width = max(len(r[0]) for r in rows)
    vwidth = min(max(len(r[1]) for r in rows), 48)
    for name, value, source in rows:
        print(f"{name:<{width}}  {value:<{vwidth}}  {source}")
    return 0


def _text(value: object) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
