"""The tools under test, each driven through its own command line: linesync (a
server and two clients, one-shot or watching), rsync (daemon + client), Unison
(socket server + client) and Syncthing (two instances). Every connection
crosses a byte-counting proxy on 127.0.0.1."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .procs import CmdResult, Proc, run_cmd
from .proxy import Counts, Proxy, ProxyHub, Shape

VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
SYNC_TIMEOUT = 900.0


class ToolError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: Proc, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise ToolError(f"{proc.role} exited: {proc.tail(500)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ToolError(f"{proc.role} did not listen on {port} in {timeout:.0f} s")


def which(name: str) -> str | None:
    if name == "linesync":
        p = VENV_BIN / "linesync"
        return str(p) if p.exists() else None
    return shutil.which(name)


def first_line(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


class Tool:
    """One tool between folder A (the source of every change) and folder B."""

    key = ""
    label = ""
    one_shot = True
    binary = ""

    def __init__(self, work: Path, hub: ProxyHub, shape: Shape | None = None) -> None:
        self.work = work
        self.a = work / "A"
        self.b = work / "B"
        self.hub = hub
        self.shape = shape or Shape()
        self.daemons: list[Proc] = []  # long-running processes, measured
        self.links: list[tuple[Proxy, bool]] = []  # proxy, and whether "up" is B -> A
        self.notes: list[str] = []

    # -- lifecycle ---------------------------------------------------------------
    def setup(self) -> None:
        """Start what runs before the first sync (servers, daemons), untimed."""

    def sync(self) -> list[CmdResult]:
        """One-shot tools: bring B up to A's state once."""
        raise NotImplementedError

    def after_sync(self) -> None:
        """Wait until daemons reaped the children that served the sync."""
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(d.children() for d in self.daemons):
            time.sleep(0.01)

    def prestart(self) -> None:
        """Watching tools: what runs before the first sync's clock starts (a peer)."""

    def start_watch(self) -> None:
        """Watching tools: start the processes that keep B in sync."""
        raise NotImplementedError

    def stop(self) -> None:
        for d in reversed(self.daemons):
            d.stop()
        self.daemons.clear()
        for p, _ in self.links:
            self.hub.close_proxy(p)
        self.links.clear()

    # -- measurements ------------------------------------------------------------
    def proxy(self, port: int, b_to_a: bool = False) -> Proxy:
        p = self.hub.proxy(port, self.shape)
        self.links.append((p, b_to_a))
        return p

    def counts(self) -> Counts:
        total = Counts()
        for p, flip in self.links:
            c = p.counts
            total = total + (Counts(c.down, c.up) if flip else Counts(c.up, c.down))
        return total

    def reset_counts(self) -> None:
        for p, _ in self.links:
            p.reset()

    def last_activity(self) -> float:
        return max((p.last_activity for p, _ in self.links), default=0.0)

    def cpu(self) -> dict[int, float]:
        return {d.pid: d.cpu() for d in self.daemons}

    def check_alive(self) -> None:
        for d in self.daemons:
            if not d.alive():
                raise ToolError(f"{d.role} exited (rc {d.popen.returncode}): {d.tail(400)}")

    @classmethod
    def version(cls) -> str:
        return first_line([cls.binary, "--version"])

    @classmethod
    def available(cls) -> str | None:
        """None if the tool can run here, else why not."""
        return None if which(cls.binary) else f"{cls.binary} not installed"

    def env(self) -> dict[str, str]:
        return dict(os.environ)


# ---------------------------------------------------------------------------------
class Linesync(Tool):
    binary = "linesync"
    one_shot = True
    key = "linesync-oneshot"
    label = "linesync (one-shot)"

    def __init__(self, work: Path, hub: ProxyHub, shape: Shape | None = None) -> None:
        super().__init__(work, hub, shape)
        self.exe = which("linesync") or "linesync"
        self.data = work / "server"
        self.server: Proc | None = None
        self.watchers: list[Proc] = []

    @classmethod
    def version(cls) -> str:
        try:  # the installed distribution's version: no CLI start-up
            from importlib.metadata import version

            return f"linesync {version('linesync')}"
        except Exception:
            return first_line([which("linesync") or "linesync", "--version"])

    def setup(self) -> None:
        self.server = Proc(
            "server",
            [
                self.exe,
                "serve",
                "--data",
                str(self.data),
                "--port",
                "0",
                "--log-level",
                "warning",
                "--rate",
                "100000",
            ],
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            log=self.work / "server.log",
        )
        self.daemons.append(self.server)
        deadline = time.monotonic() + 60
        port = 0
        while time.monotonic() < deadline:
            m = re.search(r"serving http://127\.0\.0\.1:(\d+)", self.server.tail(100_000))
            if m:
                port = int(m.group(1))
                break
            self.check_alive()
            time.sleep(0.05)
        if not port:
            raise ToolError("linesync server did not start in 60 s")
        token_file = self.data / "first-token"
        deadline = time.monotonic() + 10
        while not token_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        links = [self.proxy(port), self.proxy(port)]  # A's hop, B's hop

        def init(folder: Path, token: str, link: Proxy) -> None:
            url = f"http://127.0.0.1:{link.port}"
            cmd = [self.exe, "init", str(folder), "--server", url, "--token", token]
            r = run_cmd(cmd, timeout=60)
            if not r.ok:
                raise ToolError(f"linesync init failed: {r.output[-400:]}")

        # A's init runs while B's token is made (each CLI start costs about a second).
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(init, self.a, token_file.read_text().strip(), links[0])
            cmd = [self.exe, "token", "create", "admin", "--device", "bench-b"]
            made = run_cmd([*cmd, "--data", str(self.data)], timeout=60)
            if not made.ok:
                raise ToolError(f"token create failed: {made.output[-400:]}")
            init(self.b, made.output.strip().splitlines()[-1], links[1])
            first.result()

    def sync(self) -> list[CmdResult]:
        out = []
        for folder in (self.a, self.b):
            r = run_cmd([self.exe, "sync", str(folder), "-q"], timeout=SYNC_TIMEOUT)
            out.append(r)
            if not r.ok:
                raise ToolError(f"linesync sync {folder.name} exited {r.rc}: {r.output[-300:]}")
        return out

    def start_watch(self) -> None:
        for role, folder in (("client A", self.a), ("client B", self.b)):
            p = Proc(
                role,
                [self.exe, "sync", str(folder), "--watch", "-q"],
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                log=self.work / f"watch-{folder.name}.log",
            )
            self.watchers.append(p)
            self.daemons.append(p)

    def stop_watch(self) -> None:
        for p in self.watchers:
            p.stop()
            self.daemons.remove(p)
        self.watchers.clear()


class LinesyncWatch(Linesync):
    one_shot = False
    key = "linesync-watch"
    label = "linesync (watch)"


# ---------------------------------------------------------------------------------
class Rsync(Tool):
    binary = "rsync"
    key = "rsync"
    label = "rsync"

    def setup(self) -> None:
        port = free_port()
        conf = self.work / "rsyncd.conf"
        conf.write_text(
            f"pid file = {self.work / 'rsyncd.pid'}\n"
            "use chroot = false\n"
            f"[mod]\n  path = {self.b}\n  read only = false\n"
            f"  uid = {os.getuid()}\n  gid = {os.getgid()}\n"
        )
        d = Proc(
            "daemon",
            [
                "rsync",
                "--daemon",
                "--no-detach",
                f"--config={conf}",
                f"--port={port}",
                "--address=127.0.0.1",
            ],
            log=self.work / "rsyncd.log",
        )
        self.daemons.append(d)
        wait_port(port, d)
        self.link = self.proxy(port)

    def sync(self) -> list[CmdResult]:
        r = run_cmd(
            ["rsync", "-a", "--delete", f"{self.a}/", f"rsync://127.0.0.1:{self.link.port}/mod/"],
            timeout=SYNC_TIMEOUT,
        )
        if not r.ok:
            raise ToolError(f"rsync exited {r.rc}: {r.output[-300:]}")
        return [r]


# ---------------------------------------------------------------------------------
class Unison(Tool):
    binary = "unison"
    key = "unison"
    label = "unison"

    @classmethod
    def version(cls) -> str:
        return first_line(["unison", "-version"])

    def setup(self) -> None:
        self.server_dir = self.work / "unison-server"
        self.client_dir = self.work / "unison-client"
        self.server_dir.mkdir()
        self.client_dir.mkdir()
        port = free_port()
        env = dict(os.environ, UNISON=str(self.server_dir), HOME=str(self.server_dir))
        d = Proc(
            "server",
            ["unison", "-socket", str(port), "-listen", "127.0.0.1"],
            cwd=self.server_dir,
            env=env,
            log=self.work / "unison-server.log",
        )
        self.daemons.append(d)
        wait_port(port, d)
        self.link = self.proxy(port)

    def sync(self) -> list[CmdResult]:
        env = dict(os.environ, UNISON=str(self.client_dir), HOME=str(self.client_dir))
        r = run_cmd(
            [
                "unison",
                str(self.a),
                f"socket://127.0.0.1:{self.link.port}/{self.b}",
                "-batch",
                "-auto",
                "-times",
                "-perms",
                "0",
                "-confirmbigdel=false",
                "-silent",
            ],
            cwd=self.client_dir,
            env=env,
            timeout=SYNC_TIMEOUT,
        )
        if not r.ok:
            raise ToolError(f"unison exited {r.rc}: {r.output[-300:]}")
        return [r]


# ---------------------------------------------------------------------------------
FOLDER_ID = "bench"


class Syncthing(Tool):
    binary = "syncthing"
    one_shot = False
    key = "syncthing"
    label = "syncthing"

    def setup(self) -> None:
        self.homes = {"A": self.work / "st-A", "B": self.work / "st-B"}
        ids: dict[str, str] = {}
        for side, home in self.homes.items():
            r = run_cmd(
                [
                    "syncthing",
                    "generate",
                    f"--home={home}",
                    "--no-default-folder",
                    "--skip-port-probing",
                ],
                timeout=60,
            )
            m = re.search(r"Device ID: (\S+)", r.output)
            if not r.ok or not m:
                raise ToolError(f"syncthing generate failed: {r.output[-400:]}")
            ids[side] = m.group(1)
        self.ids = ids
        self.listen = listen = {"A": free_port(), "B": free_port()}
        self.gui = {"A": free_port(), "B": free_port()}
        # Only A dials: B through the proxy in front of B's listen port. B knows no address
        # for A ("dynamic", and discovery is off): when both dial at once, one connection
        # is dropped and the redial can wait tens of seconds (seen with the added delay).
        to_b = self.proxy(listen["B"])
        addrs = {"A": "dynamic", "B": f"tcp://127.0.0.1:{to_b.port}"}
        self.apikey: dict[str, str] = {}
        for side, home in self.homes.items():
            other = "B" if side == "A" else "A"
            folder = self.a if side == "A" else self.b
            (folder / ".stfolder").mkdir(parents=True, exist_ok=True)
            self.apikey[side] = self._configure(
                home / "config.xml",
                listen=listen[side],
                gui=self.gui[side],
                me=ids[side],
                peer=ids[other],
                peer_addr=addrs[other],
                folder=folder,
            )
        self.notes.append(
            "syncthing: fsWatcherDelayS=1 (default 10), rescanIntervalS=3600, "
            "discovery/relays/NAT/usage reports/crash reports/upgrades off, setLowPriority=false; "
            "only A dials B (B has no address for A: simultaneous dials made one connection wait "
            "40 s); B runs before the first sync's clock starts (like rsync's daemon and "
            "linesync's server), A's start-up and the TLS connection are timed"
        )

    @staticmethod
    def _configure(
        path: Path, *, listen: int, gui: int, me: str, peer: str, peer_addr: str, folder: Path
    ) -> str:
        tree = ET.parse(path)
        root = tree.getroot()
        opts = root.find("options")
        assert opts is not None
        settings = {
            "listenAddress": f"tcp://127.0.0.1:{listen}",
            "globalAnnounceEnabled": "false",
            "localAnnounceEnabled": "false",
            "relaysEnabled": "false",
            "natEnabled": "false",
            "urAccepted": "-1",
            "crashReportingEnabled": "false",
            "autoUpgradeIntervalH": "0",
            "startBrowser": "false",
            "setLowPriority": "false",
        }
        for name, value in settings.items():
            el = opts.find(name)
            if el is None:
                el = ET.SubElement(opts, name)
            el.text = value
        gui_el = root.find("gui")
        assert gui_el is not None
        addr = gui_el.find("address")
        assert addr is not None
        addr.text = f"127.0.0.1:{gui}"
        apikey = gui_el.findtext("apikey") or ""
        # The peer, reachable only at the proxy in front of its listen port.
        template = root.find("defaults/device")
        dev = copy.deepcopy(template) if template is not None else ET.Element("device")
        dev.set("id", peer)
        dev.set("name", "peer")
        a = dev.find("address")
        if a is None:
            a = ET.SubElement(dev, "address")
        a.text = peer_addr
        own = root.find("device")
        index = list(root).index(own) + 1 if own is not None else 0
        root.insert(index, dev)
        ftemplate = root.find("defaults/folder")
        assert ftemplate is not None
        f = copy.deepcopy(ftemplate)
        f.set("id", FOLDER_ID)
        f.set("label", FOLDER_ID)
        f.set("path", str(folder))
        f.set("type", "sendreceive")
        f.set("fsWatcherEnabled", "true")
        f.set("fsWatcherDelayS", "1")
        f.set("rescanIntervalS", "3600")
        for d in f.findall("device"):
            f.remove(d)
        for dev_id in (me, peer):
            d = ET.Element("device", {"id": dev_id, "introducedBy": ""})
            ET.SubElement(d, "encryptionPassword")
            f.insert(0, d)
        root.insert(index + 1, f)
        tree.write(path)
        return apikey

    def _start(self, side: str) -> Proc:
        env = dict(os.environ, STNODEFAULTFOLDER="1", STNOUPGRADE="1", STNORESTART="1")
        p = Proc(
            f"peer {side}",
            ["syncthing", "serve", f"--home={self.homes[side]}", "--no-browser", "--no-restart",
             "--no-upgrade", f"--gui-address=http://127.0.0.1:{self.gui[side]}"],
            env=env,
            log=self.work / f"syncthing-{side}.log",
        )  # fmt: skip
        self.daemons.append(p)
        return p

    def prestart(self) -> None:
        # B is already running, as a peer would be (and as rsync's daemon and linesync's
        # server are): listening before A dials it, since a refused dial waits for the redial.
        wait_port(self.listen["B"], self._start("B"), timeout=60)

    def start_watch(self) -> None:
        if not self.daemons:
            self.prestart()
        self._start("A")

    def rest(self, side: str, path: str) -> object:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.gui[side]}{path}", headers={"X-API-Key": self.apikey[side]}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def connected(self) -> bool:
        try:
            conns = self.rest("A", "/rest/system/connections")
        except (OSError, ValueError):
            return False
        assert isinstance(conns, dict)
        return bool(conns.get("connections", {}).get(self.ids["B"], {}).get("connected"))


TOOLS: dict[str, list[type[Tool]]] = {
    "linesync": [LinesyncWatch, Linesync],
    "rsync": [Rsync],
    "unison": [Unison],
    "syncthing": [Syncthing],
}
