"""The client commands' arguments (init, sync, status, log, restore,
conflicts). Kept apart from the commands themselves, so that building the
command line does not import the client (aiohttp, the engine): every
``linesync`` invocation, the server's admin commands too, builds it."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

DEFAULT_RETRY_FOR = 120.0
MAX_RETRY_FOR = 7 * 86400.0
MAX_LOG_LIMIT = 1000


def _server_url(text: str) -> str:
    from linesync.client.config import check_server_url

    try:
        return check_server_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0 or value > MAX_RETRY_FOR:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a number of seconds from 0 (no retries) to {MAX_RETRY_FOR:.0f}"
        )
    return value


def _whole(low: int, high: int | None, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise argparse.ArgumentTypeError(f"{text!r}: {what} must be a whole number {span}")
        return value

    return parse


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="make a folder a linesync folder")
    p.add_argument("folder", type=Path)
    p.add_argument(
        "--server",
        required=True,
        type=_server_url,
        help="server URL with its scheme, e.g. http://127.0.0.1:8440",
    )
    p.add_argument("--token", required=True, help="a device token (linesync token create)")
    p.add_argument("--namespace", help="namespace name or id (default: your home namespace)")

    p = sub.add_parser("sync", help="sync a folder once (or keep syncing with --watch)")
    p.add_argument("folder", type=Path)
    p.add_argument("--watch", action="store_true", help="keep syncing until interrupted")
    p.add_argument(
        "--confirm-deletes",
        "--allow-mass-delete",
        dest="confirm_deletes",
        action="store_true",
        help="send deletions the mass-delete rail holds back (most of the folder deleted: "
        "`linesync status` shows them); --allow-mass-delete is the old name",
    )
    p.add_argument(
        "--retry-for",
        type=_seconds,
        default=DEFAULT_RETRY_FOR,
        metavar="SECONDS",
        help="keep retrying a server that is unreachable, overloaded (502/503/504) or asks "
        f"to slow down (429) for this long, with backoff (default {DEFAULT_RETRY_FOR:.0f}; "
        "0: no retries). --watch retries for as long as it runs",
    )
    p.add_argument(
        "--no-stream",
        dest="stream",
        action="store_false",
        help="with --watch: wait for a big file (16 MiB and up) another device is "
        "uploading to be committed before fetching it (default: fetch its chunks "
        "while they go up)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    p.add_argument(
        "--metrics-port",
        type=_whole(1, 65535, "a port"),
        metavar="PORT",
        help="with --watch: serve Prometheus metrics (requests, bytes, passes, files, "
        "conflicts, last sync) at http://127.0.0.1:PORT/metrics (this machine only)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (bytes and files, down and up) on stderr for a sync that moves "
        "more than a few MiB or 100 files; with --watch, for its first pass only (default: "
        "when stderr is a terminal and not --quiet)",
    )

    p = sub.add_parser(
        "status",
        help="last sync, what a sync would do now, errors and conflicts",
        description="Show when the folder last synced, what a sync would do now (uploads and "
        "downloads, with sizes), the files it could not read or write and why, the last "
        "error, and the conflict copies. Nothing is sent and no file is changed.",
        epilog="examples:\n  linesync status ~/Notes\n  linesync status ~/Notes --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", type=Path)
    p.add_argument("--json", action="store_true", help="print it as JSON, for scripts")

    p = sub.add_parser("log", help="the versions of a path, newest first")
    p.add_argument("folder", type=Path)
    p.add_argument("path", help="path inside the folder")
    p.add_argument(
        "--limit",
        type=_whole(1, MAX_LOG_LIMIT, "--limit"),
        default=20,
        help=f"how many versions to show (1 to {MAX_LOG_LIMIT}, default 20)",
    )

    p = sub.add_parser("restore", help="bring back an old version of a path (see log)")
    p.add_argument("folder", type=Path)
    p.add_argument("path", help="path inside the folder")
    p.add_argument(
        "--jid",
        type=_whole(1, None, "--jid"),
        required=True,
        help="the version's JID, from `linesync log`",
    )
    p.add_argument(
        "--copy",
        action="store_true",
        help="the JID may be a version of another path: copy it to PATH",
    )

    p = sub.add_parser("conflicts", help="list the conflict copies in a folder")
    p.add_argument("folder", type=Path)
