"""The ``linesync`` command: argument parsing and output only."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from linesync import __version__

if TYPE_CHECKING:  # (the server is imported only by the commands that use it)
    from linesync.server.config import ServerConfig
    from linesync.server.model import TokenRecord, TokenRole
    from linesync.server.stores.base import MetadataStore
    from linesync.server.stores.packs import ChunkStore

    Stores = tuple[MetadataStore, ChunkStore]

DEFAULT_DATA = "data"
CLIENT_COMMANDS = {"init", "sync", "status", "log", "restore", "conflicts"}


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_EXPIRY_SECONDS = 100 * 365 * 86400


def parse_duration(text: str) -> float:
    """``--expires``: a whole number and a unit (s, m, h or d), like ``90d``; seconds.
    Zero, negative, unit-less, longer than 100 years or garbage: ArgumentTypeError."""
    m = re.fullmatch(r"([0-9]+)([smhd])", text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: give a whole number and a unit, "
            "s, m, h or d (like 3600s, 30m, 12h or 90d)"
        )
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a token must live longer than 0")
    if seconds > MAX_EXPIRY_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is longer than 100 years; leave out --expires for a token that never expires"
        )
    return float(seconds)


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """An argparse type: a number greater than 0."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r}: give a number greater than 0")
        return value

    parse.__name__ = kind.__name__
    return parse


def _limit(text: str) -> tuple[str, int | float]:
    from linesync.server.config import parse_limit

    try:
        return parse_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def command_name() -> str:
    """How to run this ``linesync`` from a shell: its name when that is on the
    PATH and is this very program, else its full path (``make serve`` runs
    .venv/bin/linesync without putting it on the PATH)."""
    me = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    found = shutil.which("linesync")
    if me is None or me.name != "linesync" or (found and Path(found).resolve() == me):
        return "linesync"
    return str(me)


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="server settings in TOML: data, db, chunks, host, port, forwarded_allow_ips, "
        "and [limits] (default: $LINESYNC_CONFIG; the command line wins over the "
        "environment, which wins over the file)",
    )
    p.add_argument(
        "--data",
        type=Path,
        help="server data directory (default: $LINESYNC_DATA, else ./data)",
    )
    p.add_argument(
        "--db",
        metavar="URL",
        help="metadata database: postgresql://USER@HOST:PORT/DATABASE, or sqlite:///PATH "
        "(default: $LINESYNC_DB, else SQLite in the data directory)",
    )
    p.add_argument(
        "--chunks",
        metavar="URL",
        help="chunk storage: s3://BUCKET?endpoint=URL&region=R (credentials from the AWS_* "
        "environment variables), or file:///PATH (default: $LINESYNC_CHUNKS, else packs in "
        "the data directory)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linesync",
        description="Self-hosted file sync: a one-line edit sends about one line.",
    )
    parser.add_argument("--version", action="version", version=f"linesync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the server")
    _data_arg(p)
    p.add_argument("--host", help="address to listen on (default: $LINESYNC_HOST, else 127.0.0.1)")
    p.add_argument(
        "--port", type=int, help="port (default: $LINESYNC_PORT, else 8440; 0 picks a free one)"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--rate", type=_positive(float), help="requests per second allowed per token")
    p.add_argument(
        "--gc-grace", type=_positive(float), help="seconds an uncommitted upload is kept"
    )
    p.add_argument("--max-file-size", type=_positive(int), help="largest file accepted, in bytes")
    p.add_argument(
        "--body-timeout",
        type=_positive(float),
        help="seconds a client may stall while sending a body (default 30)",
    )
    p.add_argument(
        "--header-timeout",
        type=_positive(float),
        help="seconds a connection may take to send a request's headers (default 10)",
    )
    p.add_argument(
        "--keepalive-timeout",
        type=_positive(float),
        help="seconds an idle kept-alive connection stays open (default 30)",
    )
    p.add_argument(
        "--max-connections",
        type=_positive(int),
        help="open connections at most (default: from the open-file limit)",
    )
    p.add_argument(
        "--forwarded-allow-ips",
        metavar="ADDRS",
        help="behind a reverse proxy: the proxy's addresses (comma-separated, or *), whose "
        "X-Forwarded-For header then names the client (default: none trusted)",
    )
    p.add_argument(
        "--limit",
        action="append",
        default=[],
        type=_limit,
        metavar="NAME=VALUE",
        help="set any server limit by name, e.g. --limit max_request_decoded=64MiB "
        "(all of them, with defaults, in docs/PROTOCOL.md); repeatable",
    )

    users = sub.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    p = users.add_parser("add", help="create a user and their home namespace")
    _data_arg(p)
    p.add_argument("name")
    p = users.add_parser("list", help="list users")
    _data_arg(p)

    tokens = sub.add_parser("token", help="manage device tokens").add_subparsers(
        dest="action", required=True
    )
    p = tokens.add_parser("create", help="create a token for a device and print it")
    _data_arg(p)
    p.add_argument("user")
    p.add_argument("--device", required=True, help="device name, shown in history and conflicts")
    role = p.add_mutually_exclusive_group()
    role.add_argument("--read-only", action="store_true", help="the token can read but never write")
    role.add_argument(
        "--metrics",
        action="store_true",
        help="a token for scraping /metrics only (it can read no namespace)",
    )
    p.add_argument(
        "--expires",
        type=parse_duration,
        metavar="DURATION",
        help="the token stops working this long from now: a whole number and a unit, "
        "s, m, h or d (3600s, 30m, 12h, 90d; a bare number is refused). "
        "Default: it never expires",
    )
    p = tokens.add_parser("revoke", help="revoke a user's tokens (all, or one device's)")
    _data_arg(p)
    p.add_argument("user")
    p.add_argument("--device", help="revoke only this device's tokens")
    p = tokens.add_parser(
        "list",
        help="list tokens (never their secret), as JSON: times in unix seconds, "
        'expires "never" or a time, state "active", "expired" or "revoked"',
    )
    _data_arg(p)
    p.add_argument("user", nargs="?")

    spaces = sub.add_parser("namespace", help="manage namespaces").add_subparsers(
        dest="action", required=True
    )
    p = spaces.add_parser("create", help="create a shared namespace")
    _data_arg(p)
    p.add_argument("name")
    p.add_argument("--owner", required=True)
    p = spaces.add_parser("share", help="give a user access to a namespace")
    _data_arg(p)
    p.add_argument("namespace")
    p.add_argument("user")
    p.add_argument("--read-only", action="store_true")
    p = spaces.add_parser("unshare", help="take a user's access away")
    _data_arg(p)
    p.add_argument("namespace")
    p.add_argument("user")
    p = spaces.add_parser("list", help="list namespaces and members")
    _data_arg(p)
    p = spaces.add_parser("reset", help="erase a namespace's journal (clients re-sync)")
    _data_arg(p)
    p.add_argument("namespace")
    p.add_argument("--yes", action="store_true", help="really erase it")

    p = sub.add_parser("gc", help="collect chunks no entry references")
    _data_arg(p)
    p.add_argument("--grace", type=float, default=24 * 3600.0, help="seconds (default 86400)")
    p = sub.add_parser("check", help="verify that every indexed chunk reads back intact")
    _data_arg(p)
    from linesync.cli import ops_cmds
    from linesync.cli.client_args import add_parsers

    add_parsers(sub)
    from linesync.cli import completion, config_cmds, help_text

    config_cmds.add_parsers(sub)
    completion.add_parser(sub)
    ops_cmds.add_parsers(sub)
    help_text.decorate(parser)  # --help: a description and examples for every command
    config_cmds.bind(parser)  # client flags left out: from the settings
    return parser


def _store_config(args: argparse.Namespace) -> ServerConfig:
    """The settings from the command line, the environment ($LINESYNC_*) and
    the configuration file, in that order of precedence; ConfigError."""
    from linesync.server.config import (
        ConfigError,
        Layer,
        ServerConfig,
        from_env,
        from_file,
        with_limits,
    )

    path = args.config or (Path(os.environ["LINESYNC_CONFIG"]) if os.environ.get(
        "LINESYNC_CONFIG") else None)  # fmt: skip
    file = from_file(path) if path is not None else Layer()
    env = from_env()

    def place(name: str, default: object) -> Any:
        flag = getattr(args, name, None)
        if flag is not None:
            return flag
        return env.places.get(name, file.places.get(name, default))

    defaults = ServerConfig()
    try:
        cfg = ServerConfig(
            data_dir=Path(place("data", DEFAULT_DATA)),
            db=place("db", None),
            chunks=place("chunks", None),
            host=place("host", defaults.host),
            port=place("port", defaults.port),
            forwarded_allow_ips=place("forwarded_allow_ips", None),
        )
        return with_limits(cfg, {**file.limits, **env.limits})
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _with_store(args: argparse.Namespace, fn: Callable[[Stores], Awaitable[int]]) -> int:
    from linesync.server.runner import open_stores
    from linesync.server.stores.urls import meta_kind, sqlite_path

    cfg = _store_config(args)
    if meta_kind(cfg.db) == "sqlite" and not sqlite_path(cfg).exists():
        where = cfg.data_dir if cfg.db is None else sqlite_path(cfg)
        print(f"linesync: no server data in {where} (start the server once, or pass --data "
              "or --db)", file=sys.stderr)  # fmt: skip
        return 2

    async def go() -> int:
        async with open_stores(cfg) as (meta, packs):
            return await fn((meta, packs))

    return asyncio.run(go())


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _token_view(token: TokenRecord, now: float) -> dict[str, object]:
    """A token as ``token list`` prints it: ``expires`` "never" or unix seconds,
    and its ``state``: "revoked", else "expired" (expiry at or before ``now``,
    as the server decides), else "active"."""
    expires = token.expires
    if token.revoked is not None:
        state = "revoked"
    elif expires is not None and expires <= now:
        state = "expired"
    else:
        state = "active"
    view: dict[str, object] = dataclasses.asdict(token)
    return {**view, "expires": "never" if expires is None else expires, "state": state}


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from linesync.server.config import with_limits
    from linesync.server.runner import FIRST_TOKEN_FILE, run

    settings: dict[str, int | float] = {}
    for name, flag in (
        ("gc_grace_seconds", args.gc_grace),
        ("max_file_size", args.max_file_size),
        ("body_idle_timeout", args.body_timeout),
        ("header_timeout", args.header_timeout),
        ("keepalive_timeout", args.keepalive_timeout),
        ("max_connections", args.max_connections),
    ):
        if flag is not None:
            settings[name] = flag
    if args.rate is not None:
        settings.update(rate_per_second=args.rate, rate_burst=max(args.rate * 5, 1))
    settings.update(dict(args.limit))
    try:
        cfg = with_limits(_store_config(args), settings)
    except ValueError as exc:
        print(f"linesync serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")

    exe = command_name()
    data = cfg.data_dir.resolve()

    def announce(url: str, token: str | None) -> None:
        print(f"linesync {__version__} serving {url}  (data: {data})", flush=True)
        if token:
            print("First start: created user 'admin' with a read-write token:")
            print(f"  {token}")
            print(f"  (a copy is in {data / FIRST_TOKEN_FILE}, readable only by you)")
            print(f"Sync a folder:  {exe} init ~/Notes --server {url} --token {token}")
            # (URLs may hold passwords: not echoed)
            same = " and the same --db and --chunks" if cfg.db or cfg.chunks else ""
            print(f"Another device: {exe} token create admin --device phone --data {data}"
                  + (f"  ({same.strip()})" if same else ""), flush=True)  # fmt: skip

    run(cfg, announce, args.log_level if args.log_level != "info" else "warning")
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    async def go(stores: Stores) -> int:
        meta, packs = stores
        c, a = args.command, getattr(args, "action", None)
        if (c, a) == ("user", "add"):
            await meta.create_user(args.name)
            print(f"created user {args.name!r} with home namespace {args.name!r}")
        elif (c, a) == ("user", "list"):
            for name in await meta.list_users():
                print(name)
        elif (c, a) == ("token", "create"):
            role: TokenRole = "metrics" if args.metrics else "ro" if args.read_only else "rw"
            expires = None if args.expires is None else time.time() + args.expires
            print(await meta.create_token(args.user, args.device, role, expires))
            if expires is not None:  # stdout is the token alone, for scripts
                print(f"linesync: the token expires at {_when(expires)}", file=sys.stderr)
        elif (c, a) == ("token", "revoke"):
            n = await meta.revoke_tokens(args.user, args.device)
            print(f"revoked {n} token(s)")
        elif (c, a) == ("token", "list"):
            _print_json([_token_view(t, time.time()) for t in await meta.list_tokens(args.user)])
        elif (c, a) == ("namespace", "create"):
            await meta.create_namespace(args.name, args.owner)
            print(f"created namespace {args.name!r} owned by {args.owner!r}")
        elif (c, a) == ("namespace", "share"):
            await meta.share(args.namespace, args.user, "ro" if args.read_only else "rw")
            print(f"shared {args.namespace!r} with {args.user!r}"
                  f" ({'read-only' if args.read_only else 'read-write'})")  # fmt: skip
        elif (c, a) == ("namespace", "unshare"):
            await meta.share(args.namespace, args.user, None)
            print(f"{args.user!r} no longer has access to {args.namespace!r}")
        elif (c, a) == ("namespace", "list"):
            _print_json([dataclasses.asdict(n) for n in await meta.list_namespaces()])
        elif (c, a) == ("namespace", "reset"):
            if not args.yes:
                print("linesync: this erases the namespace's history; add --yes", file=sys.stderr)
                return 2
            await meta.reset_namespace(args.namespace)
            print(f"reset {args.namespace!r}: clients will notice and re-sync")
        elif c == "gc":
            from linesync.server.gc import collect
            from linesync.server.runner import exclusive
            from linesync.server.stores.urls import shared

            if shared(_store_config(args)):
                # Server processes may be uploading: take the lease they take, and
                # leave what this round retires to a later round.
                if not await meta.lease("gc", "linesync gc", 3600.0):
                    print("linesync: a server process is collecting now; try later",
                          file=sys.stderr)  # fmt: skip
                    return 1
                report = report2 = await collect(meta, packs, args.grace, hold_seconds=600.0)
            else:
                with exclusive(_store_config(args).data_dir):  # no server: nothing in flight
                    report = await collect(meta, packs, args.grace, hold_seconds=0.0)
                    report2 = await collect(meta, packs, args.grace, hold_seconds=0.0)
            print(f"dropped {report.stats.stale_refs} stale upload(s), "
                  f"{report.stats.chunks_deleted} chunk(s), {report.stats.bytes_freed} bytes; "
                  f"rewrote {len(report.packs_rewritten)} pack(s), "
                  f"deleted {len(report2.packs_deleted)} pack(s)")  # fmt: skip
        elif c == "check":
            from linesync.server.check import check

            problems = await check(meta, packs)
            for p in problems:
                print(p)
            print("ok" if not problems else f"{len(problems)} problem(s)")
            return 0 if not problems else 1
        return 0

    return _with_store(args, go)


def main(argv: Sequence[str] | None = None) -> int:
    from linesync.cli import completion

    parser = build_parser()
    completion.hook(parser)  # the shell asking for completions: answered, then exit
    args = parser.parse_args(argv)
    if args.command in ("config", "completion"):
        from linesync.cli.config_cmds import run_own

        return run_own(args)
    if args.command in CLIENT_COMMANDS:  # without the server's modules: a faster start
        from linesync.cli.client_cmds import run
        from linesync.cli.config_cmds import configured

        with configured(args) as ok:  # settings and logs (client/settings.py)
            return run(args) if ok else 2
    if args.command in {"doctor", "service", "exclude"}:
        from linesync.cli import ops_cmds

        return ops_cmds.run(args)
    from linesync.server.config import ConfigError
    from linesync.server.runner import CannotListen, DataDirBusy
    from linesync.server.stores.base import StoreError

    try:
        if args.command == "serve":
            return cmd_serve(args)
        return cmd_admin(args)
    except (StoreError, DataDirBusy, CannotListen, ConfigError) as exc:
        print(f"linesync: {exc}", file=sys.stderr)
        return 1
