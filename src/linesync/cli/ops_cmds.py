"""Client commands for living with a folder: doctor, service (install,
uninstall, status) and exclude (selective sync)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from linesync.client.service import Placement

COMMANDS = {"doctor", "service", "exclude"}
_RAW = argparse.RawDescriptionHelpFormatter


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor",
        help="check what a synced folder needs, and say what to do about each problem",
        description="Check the server's reachability and the token, the clock against the "
        "server's, the folder's permissions (the token's file must be yours alone), free "
        "space, and inotify limits; each check says what to do. Exit code 0 when every "
        "check passes, 1 otherwise.",
        epilog="examples:\n  linesync doctor ~/Notes\n  linesync doctor --json",
        formatter_class=_RAW,
    )
    p.add_argument("folder", type=Path, nargs="?", default=Path("."), help="(default: .)")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")

    service = sub.add_parser(
        "service",
        help="run `sync --watch` at login (systemd user unit, or launchd on macOS)",
        description="Install, remove or show a background service that keeps a folder in "
        "sync: a systemd user unit in ~/.config/systemd/user/ (Linux) or a launchd agent "
        "in ~/Library/LaunchAgents/ (macOS). The unit holds no token: sync reads it from "
        "the folder's own .linesync/config.json.",
        epilog="examples:\n  linesync service install ~/Notes --dry-run\n"
        "  linesync service install ~/Notes --enable\n  linesync service status ~/Notes\n"
        "  linesync service uninstall ~/Notes --disable",
        formatter_class=_RAW,
    )
    for action, p in _actions(service, (
        ("install", "write the unit and print the commands that start it", "~/Notes"),
        ("uninstall", "remove the unit (and, with --disable, stop it first)", "~/Notes"),
        ("status", "where the unit is and whether it runs", "~/Notes"),
    )):  # fmt: skip
        p.add_argument("folder", type=Path, nargs="?", default=Path("."), help="(default: .)")
        p.add_argument("--name", help="the service's name (default: linesync-FOLDERNAME)")
        p.add_argument(
            "--for", dest="kind", choices=["systemd", "launchd"],
            help="the service manager (default: launchd on macOS, else systemd)",
        )  # fmt: skip
        if action == "install":
            p.add_argument("--dry-run", action="store_true", help="print the unit, write nothing")
            p.add_argument("--enable", action="store_true", help="also run the commands that "
                           "load and start it")  # fmt: skip
            p.add_argument("--force", action="store_true",
                           help="replace a unit of that name syncing another folder")  # fmt: skip
        if action == "uninstall":
            p.add_argument("--disable", action="store_true",
                           help="first stop and disable it (runs systemctl/launchctl)")  # fmt: skip
    add_exclude_parser(sub)


def _actions(
    command: argparse.ArgumentParser, actions: tuple[tuple[str, str, str], ...]
) -> list[tuple[str, argparse.ArgumentParser]]:
    """The ACTION subcommands of ``command``: (name, help, example arguments)
    each, with its help as description and its example as epilog."""
    sub = command.add_subparsers(dest="action", required=True, metavar="ACTION")
    return [
        (
            name,
            sub.add_parser(
                name,
                help=text,
                description=text[0].upper() + text[1:] + ".",
                epilog=f"example:\n  linesync {command.prog.split()[-1]} {name} {example}",
                formatter_class=_RAW,
            ),
        )
        for name, text, example in actions
    ]


def add_exclude_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ex = sub.add_parser(
        "exclude",
        help="leave folders of the namespace out on this device (selective sync)",
        description="Folders left out stay on the server and on other devices; this device "
        "never downloads them, and never deletes them on the server because they are not "
        "here. Files here that are as the server has them are removed at the next sync; a "
        "folder holding changes not synced yet is refused until they are synced. Files made "
        "here under a left-out folder stay here, are not uploaded, and `linesync status` "
        "lists them. Including a folder again downloads it at the next sync.",
        epilog="examples:\n  linesync exclude add Videos Archive/2019 --folder ~/Notes\n"
        "  linesync exclude list --folder ~/Notes\n  linesync exclude remove Videos --folder "
        "~/Notes",
        formatter_class=_RAW,
    )
    for action, p in _actions(ex, (
        ("add", "leave these folders out on this device", "Videos --folder ~/Notes"),
        ("remove", "include these folders again (downloaded at the next sync)",
         "Videos --folder ~/Notes"),
        ("list", "the folders left out on this device", "--folder ~/Notes"),
    )):  # fmt: skip
        if action != "list":
            p.add_argument("paths", nargs="+", metavar="PATH",
                           help="a folder inside the synced folder (relative to its root, or "
                           "to the current folder inside it, or absolute)")  # fmt: skip
        p.add_argument("--folder", type=Path, default=Path("."),
                       help="the synced folder (default: .)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    try:
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "service":
            return _service(args)
        if args.command == "exclude":
            return _exclude(args)
    except (FileNotFoundError, FileExistsError, LookupError, ValueError) as exc:
        print(f"linesync: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"linesync: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a damaged index, ...: a message, never a traceback
        print(f"linesync: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(args.command)


def _folder(path: Path) -> Path:
    from linesync.client.config import FolderConfig

    folder = path.expanduser().resolve()
    FolderConfig.load(folder)  # FileNotFoundError: not a linesync folder
    return folder


# -- doctor ---------------------------------------------------------------------------


def _doctor(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from rich.console import Console
    from rich.markup import escape

    from linesync.client import doctor

    folder = _folder(args.folder)
    facts = asyncio.run(doctor.gather(folder))
    checks = doctor.run_checks(facts)
    ok = doctor.passed(checks)
    if args.json:
        print(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}, indent=2))
        return 0 if ok else 1
    out = Console(soft_wrap=True, highlight=False)
    marks = {"ok": "[green]ok  [/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]",
             "skip": "[dim]skip[/]"}  # fmt: skip
    for c in checks:
        out.print(f"{marks[c.verdict.value]}  {escape(c.name)}: {escape(c.message)}")
        if c.fix and c.verdict in (doctor.Verdict.WARN, doctor.Verdict.FAIL):
            out.print(f"      what to do: {escape(c.fix)}")
    bad = sum(1 for c in checks if c.verdict in (doctor.Verdict.WARN, doctor.Verdict.FAIL))
    out.print("all checks passed" if ok else f"{bad} problem(s)")
    return 0 if ok else 1


# -- service ----------------------------------------------------------------------------


def _service(args: argparse.Namespace) -> int:
    from linesync.client import service as sv

    folder = _folder(args.folder) if args.action == "install" else args.folder.expanduser()
    folder = folder.resolve()
    kind = args.kind or sv.default_kind()
    name = sv.check_name(args.name) if args.name else sv.service_name(folder)
    home = Path.home()
    place = sv.placement(kind, name, home)
    if args.action == "install":
        return _install(args, folder, kind, place, home)
    if args.action == "uninstall":
        if not place.path.exists():
            print(f"linesync: no service {name} ({place.path} does not exist)", file=sys.stderr)
            return 1
        if args.disable and not _run_all(place.disable, tolerate=True):
            return 1
        place.path.unlink()
        print(f"removed {place.path}")
        if not args.disable:
            print(f"if it runs, stop it:  {sv.shell_line(place.disable)}")
        return 0
    # status
    if not place.path.exists():
        print(f"no service {name} ({place.path} does not exist); "
              f"install it with: linesync service install {folder}")  # fmt: skip
        return 1
    synced = sv.folder_of(place.path.read_text())
    print(f"{name}: {place.path}")
    print(f"  keeps in sync: {synced or '(not a linesync unit?)'}")
    tool = place.status[0][0]
    if shutil.which(tool) is None:
        print(f"  ({tool} is not here: cannot tell whether it runs)")
        return 0
    for cmd in place.status:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
            answer = (done.stdout.strip() or done.stderr.strip()).splitlines()
            print(f"  {cmd[-2] if kind == 'systemd' else 'launchctl'}: "
                  f"{answer[0] if answer else done.returncode}")  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"  {' '.join(cmd)}: {exc}")
    return 0


def _install(
    args: argparse.Namespace, folder: Path, kind: str, place: Placement, home: Path
) -> int:
    from linesync.client import service

    text = service.render(kind, service.linesync_command(), folder, place, home)
    if args.dry_run:
        print(f"# would write {place.path}:")
        print(text, end="")
        print(f"# then run:  {service.shell_line(place.enable)}")
        return 0
    if place.path.exists() and not args.force:
        other = service.folder_of(place.path.read_text())
        if other is not None and Path(other) != folder:
            raise FileExistsError(
                f"{place.path} already keeps {other} in sync: give this one another --name, "
                "or --force to replace it"
            )
    place.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = place.path.with_name(place.path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(place.path)
    print(f"wrote {place.path}")
    if not args.enable:
        print(f"start it now and at every login:  {service.shell_line(place.enable)}")
        return 0
    return 0 if _run_all(place.enable) else 1


def _run_all(cmds: list[list[str]], tolerate: bool = False) -> bool:
    for cmd in cmds:
        if shutil.which(cmd[0]) is None:
            print(f"linesync: {cmd[0]} is not on this system", file=sys.stderr)
            return False
        print("$ " + " ".join(cmd), flush=True)
        try:
            done = subprocess.run(cmd, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"linesync: {exc}", file=sys.stderr)
            return False
        if done.returncode != 0 and not tolerate:
            print(f"linesync: {cmd[0]} failed (exit {done.returncode})", file=sys.stderr)
            return False
    return True


# -- exclude (selective sync) --------------------------------------------------------------


def _exclude(args: argparse.Namespace) -> int:
    from linesync.client import selective
    from linesync.client.config import FolderConfig

    folder = _folder(args.folder)
    if args.action == "list":
        excluded = FolderConfig.load(folder).excluded
        for e in excluded:
            print(f"{e}/")
        if not excluded:
            print("nothing is left out: every folder syncs here")
        return 0
    wanted = list(dict.fromkeys(selective.folder_path(folder, p) for p in args.paths))
    if args.action == "remove":
        gone = selective.remove(folder, wanted)
        for p in gone:
            print(f"included again: {p}/ (downloaded at the next sync)")
        for p in wanted:
            if p not in gone:
                print(f"{p}/ was not left out")
        return 0
    added, refused = selective.add(folder, wanted)
    for p in added:
        print(f"left out here: {p}/ (stays on the server; files here as the server has them "
              "are removed at the next sync)")  # fmt: skip
    for p in wanted:
        if p not in added and p not in refused:
            print(f"{p}/ was already left out")
    for p, found in refused.items():
        names = ", ".join(found[: selective.MAX_LISTED])
        more = f" and {len(found) - selective.MAX_LISTED} more" if len(found) > 10 else ""
        print(
            f"linesync: not leaving out {p}/: it holds changes not synced yet ({names}{more}); "
            f"run `linesync sync {folder}` first, then exclude it",
            file=sys.stderr,
        )
    return 1 if refused else 0
