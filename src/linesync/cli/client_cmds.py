"""Client commands: init, sync, status, log, restore, conflicts."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

from rich.progress import TaskID

from linesync.client.api import Client
from linesync.client.engine import MassDelete, SyncResult
from linesync.client.localfs import FolderBusy
from linesync.client.remote import Remote
from linesync.protocol.errors import LinesyncError


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="make a folder a linesync folder")
    p.add_argument("folder", type=Path)
    p.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8440")
    p.add_argument("--token", required=True, help="a device token (linesync token create)")
    p.add_argument("--namespace", help="namespace name or id (default: your home namespace)")

    p = sub.add_parser("sync", help="sync a folder once (or keep syncing with --watch)")
    p.add_argument("folder", type=Path)
    p.add_argument("--watch", action="store_true", help="keep syncing until interrupted")
    p.add_argument(
        "--allow-mass-delete",
        action="store_true",
        help="propagate the deletion of most of the folder (refused otherwise)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems")

    p = sub.add_parser("status", help="what a sync would do now, without doing it")
    p.add_argument("folder", type=Path)

    p = sub.add_parser("log", help="the versions of a path, newest first")
    p.add_argument("folder", type=Path)
    p.add_argument("path", help="path inside the folder")
    p.add_argument("--limit", type=int, default=20)

    p = sub.add_parser("restore", help="bring back an old version of a path (see log)")
    p.add_argument("folder", type=Path)
    p.add_argument("path", help="path inside the folder")
    p.add_argument("--jid", type=int, required=True, help="the version's JID, from `linesync log`")

    p = sub.add_parser("conflicts", help="list the conflict copies in a folder")
    p.add_argument("folder", type=Path)


def _summary(r: SyncResult) -> str:
    parts = []
    for label, n in (
        ("uploaded", r.uploaded),
        ("downloaded", r.downloaded),
        ("moved", r.moved),
        ("merged", r.merged),
        ("deleted here", r.deleted_local),
        ("deleted on the server", r.deleted_remote),
        ("conflict copies", len(r.conflicts)),
    ):
        if n:
            parts.append(f"{n} {label}")
    return ", ".join(parts) or "nothing to do"


def _print_result(r: SyncResult, quiet: bool) -> None:
    if not quiet:
        print(("in sync: " if r.converged else "not in sync yet: ") + _summary(r), flush=True)
        for c in r.conflicts:
            print(f"  conflict copy: {c}")
        if r.kept_locally:
            print(f"  {len(r.kept_locally)} local change(s) kept here (read-only namespace)")
    for p in r.problems:
        print(f"  ! {p}", file=sys.stderr, flush=True)


def _rel(client: Client, path: str) -> str:
    p = Path(path)
    if p.is_absolute():
        return p.resolve().relative_to(client.folder).as_posix()
    if (Path.cwd() / p).exists() and (Path.cwd() / p).resolve().is_relative_to(client.folder):
        return (Path.cwd() / p).resolve().relative_to(client.folder).as_posix()
    return p.as_posix()


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except MassDelete as exc:
        print(f"linesync: {exc}", file=sys.stderr)
        return 3
    except FolderBusy as exc:
        print(f"linesync: {exc}; try again when it is done", file=sys.stderr)
        return 4
    except LinesyncError as exc:
        print(f"linesync: {exc.message} ({exc.code.value})", file=sys.stderr)
        return 1
    except (FileNotFoundError, FileExistsError, LookupError, ValueError) as exc:
        print(f"linesync: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the folder vanished, the disk filled, ...
        print(f"linesync: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "init":
        client = Client.init(args.folder, server=args.server, token=args.token,
                             namespace=args.namespace)  # fmt: skip
        cfg = client.config
        mode = " (read-only)" if cfg.read_only else ""
        print(f"{client.folder} now syncs namespace {cfg.namespace_name!r}{mode} of {cfg.server}")
        print(f"Run: linesync sync {args.folder}")
        return 0
    client = Client(args.folder, report=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    if args.command == "sync":
        if args.watch:
            return _watch(client, args)
        started = time.monotonic()
        r = _sync_with_progress(client, args)
        _print_result(r, args.quiet)
        if not args.quiet:
            print(f"  ({time.monotonic() - started:.1f} s)")
        return 0 if r.converged else 1
    if args.command == "status":
        return asyncio.run(_status(client))
    if args.command == "log":
        return asyncio.run(_log(client, _rel(client, args.path), args.limit))
    if args.command == "restore":
        return asyncio.run(_restore(client, _rel(client, args.path), args.jid))
    if args.command == "conflicts":
        found = sorted(
            p.relative_to(client.folder).as_posix()
            for p in client.folder.rglob("*(conflict from *")
            if ".linesync" not in p.parts
        )
        for f in found:
            print(f)
        if not found:
            print("no conflict copies")
        return 0
    raise AssertionError(args.command)


def _sync_with_progress(client: Client, args: argparse.Namespace) -> SyncResult:
    """A progress bar on a terminal for transfers; plain output elsewhere."""
    if args.quiet or not sys.stdout.isatty():
        return client.sync_once(allow_mass_delete=args.allow_mass_delete)
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        transient=True,
    ) as bar:  # fmt: skip
        tasks: dict[str, TaskID] = {}

        def progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(f"{what}ing", total=total)
            bar.update(tasks[what], completed=done, total=total)

        return asyncio.run(client.sync(allow_mass_delete=args.allow_mass_delete, progress=progress))


def _watch(client: Client, args: argparse.Namespace) -> int:
    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"watching {client.folder} (Ctrl-C to stop)", flush=True)
        await client.watch(
            stop,
            on_result=lambda r: _print_result(r, args.quiet or r.converged and not (
                r.uploaded or r.downloaded or r.moved or r.conflicts or r.deleted_local
                or r.deleted_remote)),
            allow_mass_delete=args.allow_mass_delete,
        )  # fmt: skip
        print("stopped", flush=True)

    asyncio.run(go())
    return 0


async def _status(client: Client) -> int:
    from linesync.client import planner
    from linesync.client.api import _open_index
    from linesync.client.engine import Engine, SyncResult

    index = _open_index(client.folder, client.report)
    try:
        async with Remote(client.config.server, client.config.token) as remote:
            engine = Engine(client.folder, client.config, remote, index)
            result = SyncResult()
            await engine.pull()
            engine.scan(result)
            plan = planner.plan(engine._visible_states(), read_only=client.config.read_only)
    finally:
        index.close()
    cfg = client.config
    print(f"{client.folder}: namespace {cfg.namespace_name!r} on {cfg.server}")
    if not plan.ops:
        print("in sync")
    for op in plan.ops:
        name = type(op).__name__
        where = f"{op.src} -> {op.dst}" if hasattr(op, "dst") else op.path  # type: ignore[union-attr]
        print(f"  {name.lower():14} {where}")
    for p in result.problems:
        print(f"  ! {p}")
    return 0


async def _log(client: Client, path: str, limit: int) -> int:
    async with Remote(client.config.server, client.config.token) as remote:
        hist = await remote.history(client.config.namespace, path, limit=limit)
    if not hist.entries:
        print(f"no versions of {path}")
        return 1
    for e in hist.entries:
        what = "deleted" if e.kind.value == "tombstone" else f"{e.kind.value}, {e.size} bytes"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.mtime_ns / 1e9))
        moved = f", moved from {e.moved_from}" if e.moved_from else ""
        print(f"jid {e.jid:>6}  {when}  {what}{moved}  by {e.device}")
    return 0


async def _restore(client: Client, path: str, jid: int) -> int:
    from linesync.client.api import _open_index

    index = _open_index(client.folder, client.report)
    try:
        state = index.state(path)
        base = state.remote.jid if state.remote else 0
        cursor = index.get("cursor")
    finally:
        index.close()
    async with Remote(client.config.server, client.config.token) as remote:
        res = await remote.restore(client.config.namespace, path, jid, base,
                                   journal=cursor.split(".")[0] if cursor else None)  # fmt: skip
    if res.status != "ok":
        print(f"linesync: {path} changed meanwhile ({res.reason}); sync, then try again",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"restored {path} from jid {jid} as jid {res.jid}; syncing")
    r = await client.sync()
    _print_result(r, False)
    return 0 if r.converged else 1
