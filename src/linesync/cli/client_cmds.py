"""Client commands: init, sync, status, log, restore, conflicts."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from linesync.client.api import Client
from linesync.client.engine import Engine, MassDelete, SyncResult
from linesync.client.localfs import FolderBusy
from linesync.client.metrics import METRICS
from linesync.client.remote import Remote, RemoteUnavailable
from linesync.client.retry import RetriesExhausted, retryable
from linesync.client.status import Preview

if TYPE_CHECKING:
    from linesync.client.progress import Bars
from linesync.protocol.errors import Code, LinesyncError
from linesync.protocol.schemas import Entry


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


# Exit codes: 0 in sync; 1 not in sync yet, or an error; 2 a usage error; 3
# deletions held back by the mass-delete rail (the rest was synced); 4 another
# linesync process syncs the folder; 5 the server could not be reached (or was
# unavailable, or kept asking to slow down) for as long as retries were allowed.
EXIT_MASS_DELETE = 3
EXIT_BUSY = 4
EXIT_UNREACHABLE = 5


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except MassDelete as exc:
        if exc.result is not None:
            _print_result(exc.result, getattr(args, "quiet", False))
        print(f"linesync: {exc}", file=sys.stderr)
        return EXIT_MASS_DELETE
    except FolderBusy as exc:
        print(f"linesync: {exc}; try again when it is done", file=sys.stderr)
        return EXIT_BUSY
    except RetriesExhausted as exc:
        print(f"linesync: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except RemoteUnavailable as exc:
        print(f"linesync: {exc.message}; nothing was deleted because of it", file=sys.stderr)
        return EXIT_UNREACHABLE
    except LinesyncError as exc:
        print(f"linesync: {exc.message} ({exc.code.value})", file=sys.stderr)
        return EXIT_UNREACHABLE if retryable(exc) else 1
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
        if args.metrics_port is not None and not args.watch:
            print("linesync: --metrics-port needs --watch", file=sys.stderr)
            return 2
        if args.watch:
            return _watch(client, args)
        started = time.monotonic()
        r = _sync_with_progress(client, args)
        _print_result(r, args.quiet)
        if not args.quiet:
            print(f"  ({time.monotonic() - started:.1f} s)")
        return 0 if r.converged else 1
    if args.command == "status":
        return asyncio.run(_status(client, args.json))
    if args.command == "log":
        return asyncio.run(_log(client, _rel(client, args.path), args.limit))
    if args.command == "restore":
        return asyncio.run(_restore(client, _rel(client, args.path), args.jid, args.copy))
    if args.command == "conflicts":
        from linesync.client.status import conflict_copies

        found = conflict_copies(client.folder)
        for f in found:
            print(f)
        if not found:
            print("no conflict copies")
        return 0
    raise AssertionError(args.command)


def _on_retry(exc: LinesyncError, wait: float) -> None:
    what = "asks to slow down" if exc.code.value == "rate_limited" else "is unreachable"
    print(f"  server {what} ({exc.message}); retrying in {wait:.1f} s", file=sys.stderr,
          flush=True)  # fmt: skip


def _bars(args: argparse.Namespace) -> Bars | None:
    """Progress bars on stderr, as --progress/--no-progress and the terminal say."""
    from linesync.client.progress import Bars, console_for

    force = args.progress
    console = console_for(False if force is None and args.quiet else force)
    return Bars(console) if console is not None else None


def _sync_with_progress(client: Client, args: argparse.Namespace) -> SyncResult:
    """Progress bars on stderr for long transfers (see _bars); plain output elsewhere."""
    bars = _bars(args)
    try:
        return asyncio.run(client.sync(
            allow_mass_delete=args.confirm_deletes, retry_for=args.retry_for,
            on_retry=_on_retry, progress=bars,
        ))  # fmt: skip
    finally:
        if bars is not None:
            bars.close()


def _watch(client: Client, args: argparse.Namespace) -> int:
    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"watching {client.folder} (Ctrl-C to stop)", flush=True)

        def on_result(r: SyncResult) -> None:
            METRICS.sync_pass(r)
            if bars is not None:
                bars.close()  # the first pass only: quiet after it
            did = (r.uploaded or r.downloaded or r.moved or r.merged or r.conflicts
                   or r.deleted_local or r.deleted_remote)  # fmt: skip
            # Held deletions are reported when they change (Client.watch), not each pass.
            unfinished = not r.converged and r.held is None
            _print_result(r, args.quiet or not (did or unfinished))

        await client.watch(
            stop, on_result=on_result, allow_mass_delete=args.confirm_deletes, stream=args.stream
        )
        print("stopped", flush=True)

    if args.metrics_port is not None:
        try:
            METRICS.serve(args.metrics_port)
        except OSError as exc:
            print(
                f"linesync: cannot serve metrics on 127.0.0.1:{args.metrics_port}: "
                f"{exc.strerror or exc} (choose another --metrics-port)",
                file=sys.stderr,
            )
            return 2
    bars = _bars(args)
    if bars is not None:  # the first pass's engine draws them
        make = client._engine

        def engine(*a: Any, **kw: Any) -> Engine:
            made = make(*a, **kw)
            made.progress = bars
            return made

        setattr(client, "_engine", engine)  # noqa: B010  (an instance's own seam)
    try:
        asyncio.run(go())
    finally:
        if bars is not None:
            bars.close()
    return 0


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


async def _status(client: Client, as_json: bool = False) -> int:
    import json

    from linesync.client.status import gather

    got = await gather(client.folder, client.report)
    st = got.status
    if as_json:
        print(json.dumps(st.to_json(), indent=2))
        return 0 if st.pending is not None else EXIT_UNREACHABLE
    _print_status(client, got)
    return 0 if st.pending is not None else EXIT_UNREACHABLE


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} bytes"


def _print_status(client: Client, got: Preview) -> None:
    from rich.console import Console
    from rich.markup import escape

    from linesync.client.status import ago

    out = Console(soft_wrap=True, highlight=False)
    st = got.status
    mode = " (read-only)" if st.read_only else ""
    out.print(f"[bold]{escape(st.folder)}[/]: namespace {escape(repr(st.namespace))}{mode} "
              f"on {escape(st.server)}")  # fmt: skip
    out.print(f"  last synced: {ago(st.last_synced_ns)}")
    run = st.last_run
    if run is not None and not run.get("converged") and run.get("finished_ns"):
        out.print(f"  last sync [yellow]did not finish in sync[/] ({ago(run['finished_ns'])})")
        said = run.get("problems") or []
        for problem in said[:10]:
            print(f"    - {problem}")
        if len(said) > 10:
            print(f"    ... and {len(said) - 10} more (--json lists them)")
    if st.last_error is not None:
        when = ago(st.last_error.get("at_ns"))
        out.print(f"  [red]last error[/] ({when}): {escape(str(st.last_error.get('message')))}")
    if st.pending is None:
        out.print(f"  [red]! cannot tell what a sync would do now[/]: "
                  f"{escape(st.pending_error or '')}")  # fmt: skip
    else:
        p = st.pending
        up = f"{p.upload_files} file(s), {_size(p.upload_bytes)}"
        down = f"{p.download_files} file(s), {_size(p.download_bytes)}"
        out.print(f"  pending uploads: {up}; downloads: {down}")
        extra = [f"{n} {what}" for n, what in (
            (p.delete_on_server, "deletion(s) on the server"), (p.delete_here, "deletion(s) here"),
            (p.moves, "move(s)"), (p.merges, "merge(s)"), (p.conflicts, "conflict(s)"),
        ) if n]  # fmt: skip
        if extra:
            out.print("  also: " + ", ".join(extra))
        if not got.ops and not got.held_ops:
            out.print("  [green]in sync[/]")
    for op in got.ops:
        name = type(op).__name__
        where = f"{op.src} -> {op.dst}" if hasattr(op, "dst") else op.path  # type: ignore[union-attr]
        print(f"  {name.lower():14} {where}")
    hold = got.hold
    held_ops = got.held_ops
    if hold is not None and held_ops:
        print(
            f"  ! held back: the deletion of {hold.count} of {hold.total} files on the server, "
            f"since {_when(hold.since_ns / 1e9)}: most of the folder vanished"
            + (f" (and {hold.recent} were deleted there just before)" if hold.recent else "")
        )
        print(
            f"    run `linesync sync {client.folder} --confirm-deletes` to delete them on the "
            "server, or put the files back (then nothing happens)"
        )
        for op in held_ops[:20]:
            where = f"{op.src} -> {op.dst}" if hasattr(op, "dst") else op.path  # type: ignore[union-attr]
            print(f"  {'held':14} {type(op).__name__.lower()} {where}")
        if len(held_ops) > 20:
            print(f"  {'':14} ... and {len(held_ops) - 20} more")
    for path, why in sorted(got.result.skipped.items()):
        print(f"  ! skipped {path}: this folder's file system cannot hold it ({why})")
    for problem in got.result.problems:
        print(f"  ! {problem}")
    failed = (run or {}).get("failed") or {}
    if failed:
        print(f"  files the last sync could not read or write ({len(failed)}):")
        for path, why in sorted(failed.items()):
            print(f"    {path}: {why}")
    if st.excluded:
        print("  left out on this device: " + ", ".join(f"{e}/" for e in st.excluded))
    if st.excluded_unsynced:
        print(f"  ! {len(st.excluded_unsynced)} file(s) here under left-out folders are not "
              "synced (made or changed here; they go up once the folder is included "
              "again):")  # fmt: skip
        for path in st.excluded_unsynced[:20]:
            print(f"    {path}")
    if st.conflicts:
        print(f"  conflict copies ({len(st.conflicts)}; see `linesync conflicts`):")
        for c in st.conflicts[:20]:
            print(f"    {c}")
        if len(st.conflicts) > 20:
            print(f"    ... and {len(st.conflicts) - 20} more")


async def _log(client: Client, path: str, limit: int) -> int:
    async with Remote(client.config.server, client.config.token) as remote:
        hist = await remote.history(client.config.namespace, path, limit=limit)
    if not hist.entries:
        print(f"no versions of {path}")
        return 1
    for e in hist.entries:
        print(log_line(e))
    return 0


def log_line(e: Entry) -> str:
    """One version, as `linesync log` shows it: when it was committed, what it
    is, and, for a file whose own time differs, when the file was modified."""
    kind = e.kind.value
    what = "deleted" if kind == "tombstone" else "folder" if kind == "directory" else kind
    if kind == "file":
        what += f", {e.size} bytes"
    elif kind == "symlink":
        what += f" -> {e.target}"
    if e.committed is not None:
        when = _when(e.committed)
        if kind == "file" and e.mtime_ns and abs(e.mtime_ns / 1e9 - e.committed) >= 1:
            what += f", modified {_when(e.mtime_ns / 1e9)}"
    elif kind == "file" and e.mtime_ns:
        when = _when(e.mtime_ns / 1e9)  # a server without commit times: the file's own
    else:
        when = "-" * 19
    moved = f", moved from {e.moved_from}" if e.moved_from else ""
    return f"jid {e.jid:>6}  {when}  {what}{moved}  by {e.device}"


async def _restore(client: Client, path: str, jid: int, copy: bool) -> int:
    from linesync.client.api import _open_index

    index = _open_index(client.folder, client.report)
    try:
        state = index.state(path)
        base = state.remote.jid if state.remote else 0
        cursor = index.get("cursor")
    finally:
        index.close()
    async with Remote(client.config.server, client.config.token) as remote:
        try:
            res = await remote.restore(
                client.config.namespace, path, jid, base,
                journal=cursor.split(".")[0] if cursor else None, copy=copy,
            )  # fmt: skip
        except LinesyncError as exc:
            if exc.code is Code.BAD_REQUEST and "version_of" in exc.detail:
                print(
                    f"linesync: not restored: {exc.message}. To copy that version to {path} "
                    f"on purpose, run again with --copy; `linesync log FOLDER {path}` lists "
                    "the versions of this path",
                    file=sys.stderr,
                )
                return 1
            raise
    if res.status != "ok":
        print(f"linesync: {path} changed meanwhile ({res.reason}); sync, then try again",
              file=sys.stderr)  # fmt: skip
        return 1
    how = "copied" if copy else "restored"
    print(f"{how} jid {jid} to {path} as jid {res.jid}; syncing")
    r = await client.sync()
    _print_result(r, False)
    return 0 if r.converged else 1
