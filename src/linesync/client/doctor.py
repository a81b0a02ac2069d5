"""``linesync doctor``: checks of what makes a synced folder work, each with a
verdict and what to do about it.

The checks are pure functions over :class:`Facts` (tested with tables);
:func:`gather` is the I/O that collects the facts: ``/proc`` limits, the
folder's permissions and free space, and one ``GET /v1/me`` per server URL
(reachability, the token, and the clock from the answer's ``Date`` header).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ipaddress
import os
import shutil
import socket
import ssl
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import msgspec

from linesync.client.config import CONFIG_FILE
from linesync.client.localfs import STATE_DIR

CLOCK_SKEW_MAX = 60.0  # seconds
FREE_SPACE_MIN = 2**30  # 1 GiB
WATCHES_HEADROOM = 0.8  # warn past this share of max_user_watches
INSTANCES_MIN = 16  # other programs (editors, IDEs, desktops) take instances too
INOTIFY = Path("/proc/sys/fs/inotify")
REQUEST_TIMEOUT = 15.0
DIR_COUNT_MAX = 2_000_000  # directories counted at most (the walk is bounded)


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"  # does not apply here (not Linux, no answer to check against)


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    message: str
    fix: str = ""  # what to do (empty when nothing)


@dataclass(frozen=True)
class Reach:
    """One server URL's answer to ``GET /v1/me`` (or why there was none).
    ``kind``: ok, unauthenticated, forbidden, tls, dns, refused, timeout,
    not_linesync, too_old, error."""

    url: str
    kind: str
    detail: str = ""
    status: int | None = None
    user: str | None = None
    device: str | None = None
    namespaces: tuple[int, ...] = ()
    skew: float | None = None  # the server's clock minus ours, in seconds


@dataclass(frozen=True)
class Facts:
    folder: str
    platform: str = sys.platform
    max_user_watches: int | None = None
    max_user_instances: int | None = None
    dir_count: int | None = None
    readable: bool = True
    writable: bool = True
    state_mode: int | None = None  # permission bits of .linesync/ (None: missing)
    config_mode: int | None = None  # of .linesync/config.json
    free_bytes: int | None = None
    pending_download_bytes: int | None = None
    tightened: bool = False  # loose modes this run's look at the index tightened
    namespace: int = 0
    namespace_name: str = ""
    reaches: tuple[Reach, ...] = field(default_factory=tuple)


# -- the checks (pure) -------------------------------------------------------------

SYSCTL_FIX = (
    "raise it: echo fs.inotify.{name}={value} | sudo tee /etc/sysctl.d/90-linesync.conf "
    "&& sudo sysctl --system"
)


def check_watches(f: Facts) -> Check:
    name = "inotify watches"
    if not f.platform.startswith("linux") or f.max_user_watches is None:
        return Check(name, Verdict.SKIP, "not Linux, or no inotify limits to read")
    dirs = f.dir_count or 0
    limit = f.max_user_watches
    want = max(524288, 2 * dirs)
    fix = SYSCTL_FIX.format(name="max_user_watches", value=want)
    if dirs >= limit:
        return Check(
            name, Verdict.FAIL,
            f"the folder has {dirs} folders but max_user_watches is {limit}: "
            "`sync --watch` cannot watch them all (changes there wait for the 10-minute rescan)",
            fix,
        )  # fmt: skip
    if dirs > WATCHES_HEADROOM * limit:
        return Check(
            name, Verdict.WARN,
            f"the folder's {dirs} folders take most of max_user_watches ({limit}), "
            "which every program of yours shares",
            fix,
        )  # fmt: skip
    return Check(name, Verdict.OK, f"{dirs} folders to watch, max_user_watches {limit}")


def check_instances(f: Facts) -> Check:
    name = "inotify instances"
    if not f.platform.startswith("linux") or f.max_user_instances is None:
        return Check(name, Verdict.SKIP, "not Linux, or no inotify limits to read")
    n = f.max_user_instances
    if n < INSTANCES_MIN:
        return Check(
            name, Verdict.WARN,
            f"max_user_instances is {n}: each watching linesync takes one, and editors and "
            "desktops take others; a watcher that gets none falls back to rescans",
            SYSCTL_FIX.format(name="max_user_instances", value=128),
        )  # fmt: skip
    return Check(name, Verdict.OK, f"max_user_instances {n}")


def _answered(f: Facts) -> list[Reach]:
    return [r for r in f.reaches if r.kind in ("ok", "unauthenticated", "forbidden")]


def check_clock(f: Facts) -> Check:
    name = "clock"
    skews = [r.skew for r in _answered(f) if r.skew is not None]
    if not skews:
        return Check(name, Verdict.SKIP, "no answer from the server to compare clocks with")
    worst = max(skews, key=abs)
    if abs(worst) > CLOCK_SKEW_MAX:
        side = "behind" if worst > 0 else "ahead of"
        return Check(
            name, Verdict.WARN,
            f"this computer's clock is {abs(worst):.0f} s {side} the server's: file times and "
            "conflict-copy names will be off, and a token's expiry comes early or late",
            "turn on time synchronisation: sudo timedatectl set-ntp true (Linux), or "
            "System Settings > General > Date & Time > Set automatically (macOS)",
        )  # fmt: skip
    return Check(name, Verdict.OK, f"within {abs(worst):.0f} s of the server's")


def check_permissions(f: Facts) -> list[Check]:
    out = []
    name = "folder permissions"
    if not (f.readable and f.writable):
        what = "read" if not f.readable else "write"
        out.append(Check(
            name, Verdict.FAIL, f"linesync cannot {what} {f.folder}",
            f"give your user read and write access: chmod u+rwx '{f.folder}' (or sync a "
            "folder you own)",
        ))  # fmt: skip
    else:
        out.append(Check(name, Verdict.OK, "the folder is readable and writable"))
    state = Path(f.folder) / STATE_DIR
    name = "state permissions"
    if f.state_mode is None or f.config_mode is None:
        out.append(Check(
            name, Verdict.FAIL, f"{state / CONFIG_FILE} is missing",
            f"run `linesync init {f.folder} --server URL --token TOKEN`",
        ))  # fmt: skip
        return out
    loose = []
    if f.state_mode & 0o077:
        loose.append(f"{state} is {f.state_mode:04o} (want 0700)")
    if f.config_mode & 0o077:
        loose.append(f"{state / CONFIG_FILE} is {f.config_mode:04o} (want 0600)")
    if loose:
        if f.tightened:
            fix = (
                "linesync has tightened them now; if others may have read the token, "
                "revoke it and make a new one"
            )
        else:
            fix = (
                f"chmod 700 '{state}' && chmod 600 '{state / CONFIG_FILE}' (any sync also "
                "tightens them); if others may have read it, revoke the token and make a new one"
            )
        out.append(Check(
            name, Verdict.FAIL, "others could read the token: " + "; ".join(loose), fix
        ))  # fmt: skip
    else:
        out.append(Check(name, Verdict.OK, ".linesync is 0700 and config.json 0600"))
    return out


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_space(f: Facts) -> Check:
    name = "free space"
    if f.free_bytes is None:
        return Check(name, Verdict.SKIP, "the folder's file system did not say")
    free = f.free_bytes
    pending = f.pending_download_bytes or 0
    fix = "free some space on that disk, or leave big folders out: linesync exclude add FOLDER"
    if pending > free:
        return Check(
            name, Verdict.FAIL,
            f"{_size(free)} free, but the server has {_size(pending)} to download here",
            fix,
        )  # fmt: skip
    if free < FREE_SPACE_MIN:
        return Check(name, Verdict.WARN, f"only {_size(free)} free on the folder's disk", fix)
    more = f" ({_size(pending)} to download)" if pending else ""
    return Check(name, Verdict.OK, f"{_size(free)} free{more}")


def _loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_REACH_FIX = {
    "dns": "check the host name in the server URL (a typo? a VPN needed?)",
    "refused": "is the server running (linesync serve) and is the port right? A firewall may "
    "block it",
    "timeout": "the server did not answer in time: check the network, a firewall, or whether "
    "the server is overloaded",
    "tls": "",  # said per case, in the detail
    "not_linesync": "the URL answers, but not as a linesync server: check the URL (http:// vs "
    "https://, the port, a reverse proxy's path)",
    "too_old": "upgrade linesync (pip install -U linesync), or ask for the server's version",
    "error": "check the server URL and the server's log",
}


def check_server(f: Facts) -> list[Check]:
    out = []
    for r in f.reaches:
        name = f"server {r.url}"
        if r.kind in ("ok", "unauthenticated", "forbidden"):
            out.append(Check(name, Verdict.OK, "reachable, and it speaks linesync"))
        elif r.kind == "tls":
            out.append(Check(name, Verdict.FAIL, f"TLS failed: {r.detail}", _tls_fix(r)))
        else:
            out.append(Check(
                name, Verdict.FAIL, f"not reachable: {r.detail}", _REACH_FIX.get(r.kind, "")
            ))  # fmt: skip
        if r.url.startswith("http://") and not _loopback(r.url):
            out.append(Check(
                f"encryption {r.url}", Verdict.WARN,
                "plain http to another computer: the token and your files cross the network "
                "unencrypted",
                "serve over https (a reverse proxy with a certificate, see docs/DEPLOY.md) and "
                "use the https:// URL",
            ))  # fmt: skip
    return out


def _tls_fix(r: Reach) -> str:
    d = r.detail.lower()
    if "wrong version number" in d or "record layer" in d or "http request" in d:
        return "the server speaks plain HTTP there: use http:// (or put TLS in front of it)"
    if "certificate" in d or "verify" in d:
        return (
            "the server's certificate is not trusted here: use one from a CA this computer "
            "trusts, or point SSL_CERT_FILE at your CA's certificate; check that the host "
            "name matches the certificate"
        )
    return "check the server's TLS setup (certificate, protocol versions)"


def check_token(f: Facts, folder_cmd: str = "FOLDER") -> Check:
    name = "token"
    answered = [r for r in f.reaches if r.kind in ("ok", "unauthenticated", "forbidden")]
    if not answered:
        return Check(name, Verdict.SKIP, "the server did not answer: the token was not checked")
    cfg = f"{folder_cmd}/{STATE_DIR}/{CONFIG_FILE}"
    new = (
        "on the server, make a new one: linesync token create USER --device NAME; then put it "
        f'in "token" in {cfg}'
    )
    r = answered[0]
    if r.kind == "unauthenticated":
        return Check(
            name, Verdict.FAIL, f"the server refuses the token (revoked, expired or wrong): "
            f"{r.detail}", new,
        )  # fmt: skip
    if r.kind == "forbidden":
        return Check(name, Verdict.FAIL, f"the token may not read: {r.detail}", new)
    if f.namespace and f.namespace not in r.namespaces:
        return Check(
            name, Verdict.FAIL,
            f"{r.user} no longer has access to namespace {f.namespace_name!r}",
            f"ask the namespace's owner to share it again (linesync namespace share "
            f"{f.namespace_name} {r.user})",
        )  # fmt: skip
    return Check(name, Verdict.OK, f"valid: user {r.user}, device {r.device}")


def run_checks(f: Facts) -> list[Check]:
    return [
        *check_server(f),
        check_token(f, f.folder),
        check_clock(f),
        *check_permissions(f),
        check_space(f),
        check_watches(f),
        check_instances(f),
    ]


def passed(checks: Iterable[Check]) -> bool:
    return all(c.verdict in (Verdict.OK, Verdict.SKIP) for c in checks)


# -- gathering the facts (I/O) --------------------------------------------------------


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def count_dirs(folder: Path, limit: int = DIR_COUNT_MAX) -> int:
    """Folders a recursive watch takes a watch each for (``.linesync`` aside)."""
    n = 1
    for _root, dirs, _files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != STATE_DIR]
        n += len(dirs)
        if n >= limit:
            break
    return n


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return None


def local_facts(folder: Path) -> Facts:
    linux = sys.platform.startswith("linux")
    free = None
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(folder).free
    return Facts(
        folder=str(folder),
        max_user_watches=_read_int(INOTIFY / "max_user_watches") if linux else None,
        max_user_instances=_read_int(INOTIFY / "max_user_instances") if linux else None,
        dir_count=count_dirs(folder) if linux else None,
        readable=os.access(folder, os.R_OK | os.X_OK),
        writable=os.access(folder, os.W_OK | os.X_OK),
        state_mode=_mode(folder / STATE_DIR),
        config_mode=_mode(folder / STATE_DIR / CONFIG_FILE),
        free_bytes=free,
    )


class _Ns(msgspec.Struct):
    id: int


class _Me(msgspec.Struct):
    user: str
    device: str
    namespaces: list[_Ns]


async def reach(url: str, token: str, clock: Callable[[], float] = time.time) -> Reach:
    """One ``GET /v1/me`` to ``url``, with the headers a sync sends."""
    import aiohttp

    from linesync.client.remote import Remote

    remote = Remote(url, token, timeout=REQUEST_TIMEOUT)
    try:
        async with remote:
            t0 = clock()
            async with remote.session.get(url.rstrip("/") + "/v1/me") as resp:
                raw = await resp.read()
                t1 = clock()
                status, date = resp.status, resp.headers.get("Date")
    except aiohttp.ClientConnectorCertificateError as exc:
        return Reach(url, "tls", str(exc.certificate_error))
    except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
        return Reach(url, "tls", str(exc))
    except aiohttp.ClientConnectorDNSError as exc:
        return Reach(url, "dns", f"{exc.host}: host not found")
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, socket.gaierror):
            return Reach(url, "dns", f"{exc.host}: host not found")
        return Reach(url, "refused", f"{exc.host}:{exc.port}: {exc.os_error.strerror or exc}")
    except TimeoutError:
        return Reach(url, "timeout", f"no answer in {REQUEST_TIMEOUT:.0f} s")
    except aiohttp.ClientError as exc:
        text = str(exc) or type(exc).__name__
        kind = "tls" if "ssl" in text.lower() else "not_linesync"
        return Reach(url, kind, text)
    skew = None
    if date:
        with contextlib.suppress(TypeError, ValueError, IndexError):
            skew = email.utils.parsedate_to_datetime(date).timestamp() - (t0 + t1) / 2
    error = _error_of(raw)
    if status == 401:
        return Reach(url, "unauthenticated", error or "401", status, skew=skew)
    if status == 403:
        return Reach(url, "forbidden", error or "403", status, skew=skew)
    if status == 426:
        return Reach(url, "too_old", error or "the server wants a newer client", status)
    if status != 200:
        return Reach(url, "not_linesync", f"HTTP {status} {error or ''}".strip(), status, skew=skew)
    try:
        me = msgspec.json.decode(raw, type=_Me)
    except msgspec.DecodeError:
        return Reach(url, "not_linesync", "HTTP 200, but not a linesync answer", status)
    ids = tuple(n.id for n in me.namespaces)
    return Reach(url, "ok", "", status, me.user, me.device, ids, skew)


def _error_of(raw: bytes) -> str:
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return ""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
    return ""


async def gather(folder: Path) -> Facts:
    """Every fact the checks look at (the server asked once per URL, and, when it
    answers, what a sync would download, for the free-space check)."""
    from dataclasses import replace

    from linesync.client.config import FolderConfig

    facts = await asyncio.to_thread(local_facts, folder)
    cfg = FolderConfig.load(folder)
    urls = [u.strip() for u in cfg.server.split(",") if u.strip()]
    reaches = tuple(await asyncio.gather(*(reach(u, cfg.token) for u in urls)))
    facts = replace(facts, reaches=reaches, namespace=cfg.namespace,
                    namespace_name=cfg.namespace_name)  # fmt: skip
    if any(r.kind == "ok" for r in reaches):
        from linesync.client.status import gather as status_of

        with contextlib.suppress(Exception):  # (no answer: the check says free space only)
            pending = (await status_of(folder)).status.pending
            if pending is not None:
                facts = replace(facts, pending_download_bytes=pending.download_bytes)
        now = (_mode(folder / STATE_DIR), _mode(folder / STATE_DIR / CONFIG_FILE))
        if now != (facts.state_mode, facts.config_mode):  # opening the index tightens them
            facts = replace(facts, tightened=True)
    return facts
