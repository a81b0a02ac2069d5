"""``linesync service``: run ``linesync sync --watch FOLDER`` at login, as a
systemd user unit (Linux) or a launchd agent (macOS).

The unit's text is a pure function of the command, the folder and the name
(tested); where it goes and the commands that load it are the rest. No token
ever goes into a unit: ``sync`` reads it from the folder's own config.
"""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

SYSTEMD = "systemd"
LAUNCHD = "launchd"
RESTART_SEC = 30  # seconds before a failed sync --watch starts again
LABEL_PREFIX = "org.linesync."


def default_kind() -> str:
    return LAUNCHD if sys.platform == "darwin" else SYSTEMD


def service_name(folder: Path) -> str:
    """``linesync-<folder's name>``, with only letters, digits, ``-``, ``_`` and ``.``."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.name).strip("-.") or "folder"
    return f"linesync-{base[:64]}"


def check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name) or name.startswith("."):
        raise ValueError(
            f"{name!r} is not a service name: use letters, digits, '-', '_' and '.' only"
        )
    return name if name.startswith("linesync") else f"linesync-{name}"


def linesync_command(argv0: str | None = None, executable: str | None = None) -> list[str]:
    """How to run this very linesync, by absolute paths: its script when it was
    started as ``linesync``, else this Python with ``-m linesync``."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    if argv0 and Path(argv0).name == "linesync":
        p = Path(argv0)
        if not p.is_absolute():
            found = shutil.which(argv0)
            p = Path(found) if found else p.absolute()
        return [str(p.absolute())]
    return [str(Path(executable or sys.executable).absolute()), "-m", "linesync"]


def _systemd_quote(arg: str) -> str:
    """One ExecStart word: specifiers (%) and variables ($) taken literally,
    quoted when it holds a space, a quote, a backslash or a semicolon."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not re.search(r"[\s\"'\\;]", arg):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _one_line(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", "?", text)


def systemd_unit(cmd: list[str], folder: Path) -> str:
    """A systemd user unit that keeps ``folder`` in sync."""
    start = " ".join(_systemd_quote(a) for a in [*cmd, "sync", "--watch", str(folder)])
    desc = _one_line(str(folder)).replace("%", "%%")
    return (
        "[Unit]\n"
        f"Description=linesync: keep {desc} in sync\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={start}\n"
        "Environment=PYTHONUNBUFFERED=1\n"
        "Restart=on-failure\n"
        f"RestartSec={RESTART_SEC}\n"
        "# 2: a usage error (the folder is not a linesync folder): starting again won't help\n"
        "RestartPreventExitStatus=2\n"
        "Nice=5\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def launchd_plist(cmd: list[str], folder: Path, label: str, log: Path) -> str:
    """A launchd agent that keeps ``folder`` in sync (started at login, again
    after a failure)."""
    data = {
        "Label": label,
        "ProgramArguments": [*cmd, "sync", "--watch", str(folder)],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": RESTART_SEC,
        "ProcessType": "Background",
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1"},
        "StandardOutPath": str(log),
        "StandardErrorPath": str(log),
    }
    return plistlib.dumps(data).decode()


@dataclass(frozen=True)
class Placement:
    """Where a service's file goes and how it is loaded and unloaded."""

    kind: str
    name: str
    path: Path
    enable: list[list[str]]
    disable: list[list[str]]
    status: list[list[str]]


def placement(kind: str, name: str, home: Path | None = None) -> Placement:
    home = Path.home() if home is None else home
    if kind == LAUNCHD:
        label = LABEL_PREFIX + name
        path = home / "Library" / "LaunchAgents" / f"{label}.plist"
        return Placement(
            kind, name, path,
            enable=[["launchctl", "load", "-w", str(path)]],
            disable=[["launchctl", "unload", "-w", str(path)]],
            status=[["launchctl", "list", label]],
        )  # fmt: skip
    xdg = os.environ.get("XDG_CONFIG_HOME")
    config = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".config"
    unit = f"{name}.service"
    return Placement(
        kind, name, config / "systemd" / "user" / unit,
        enable=[["systemctl", "--user", "daemon-reload"],
                ["systemctl", "--user", "enable", "--now", unit]],
        disable=[["systemctl", "--user", "disable", "--now", unit],
                 ["systemctl", "--user", "daemon-reload"]],
        status=[["systemctl", "--user", "is-enabled", unit],
                ["systemctl", "--user", "is-active", unit]],
    )  # fmt: skip


def render(kind: str, cmd: list[str], folder: Path, place: Placement, home: Path) -> str:
    if kind == LAUNCHD:
        log = home / "Library" / "Logs" / f"{place.name}.log"
        return launchd_plist(cmd, folder, LABEL_PREFIX + place.name, log)
    return systemd_unit(cmd, folder)


def folder_of(text: str) -> str | None:
    """The folder an installed unit or plist syncs (the word after ``--watch``)."""
    if text.lstrip().startswith("<?xml"):
        try:
            args = plistlib.loads(text.encode()).get("ProgramArguments", [])
        except Exception:
            return None
        return str(args[-1]) if args and "--watch" in args else None
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            m = re.search(r'--watch\s+("(?:[^"\\]|\\.)*"|\S+)\s*$', line)
            if m:
                word = m.group(1)
                if word.startswith('"'):
                    word = re.sub(r"\\(.)", r"\1", word[1:-1])
                return word.replace("%%", "%").replace("$$", "$")
    return None


def shell_line(cmds: list[list[str]]) -> str:
    import shlex

    return " && ".join(shlex.join(c) for c in cmds)
