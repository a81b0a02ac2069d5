"""Run a real linesync server process on a free port, for tests and benchmarks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_URL = re.compile(r"serving (http://\S+)")


@dataclass
class ServerProc:
    data: Path
    extra: list[str] = field(default_factory=list)
    # --db and --chunks, for the server and its admin commands alike
    stores: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # more environment (S3 credentials)
    url: str = ""
    token: str = ""
    proc: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)

    def start(self, timeout: float = 30.0) -> ServerProc:
        """Start (or restart) the server on a free port; wait until it serves."""
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "linesync", "serve", "--data", str(self.data), "--port", "0",
             "--log-level", "warning", *self.stores, *self.extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("server exited:\n" + "".join(self.log))
            self.log.append(line)
            m = _URL.search(line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise RuntimeError("server did not start:\n" + "".join(self.log))
        token_file = self.data / "first-token"
        if not self.token and token_file.exists():
            self.token = token_file.read_text().strip()
        # Keep draining output so the server never blocks on a full pipe.
        import threading

        def drain(proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.log.append(line)

        self._drain = threading.Thread(target=drain, args=(self.proc,), daemon=True)
        self._drain.start()
        return self

    def admin(self, *args: str) -> str:
        """Run an admin command on this server's data directory; its stdout."""
        out = subprocess.run(
            [sys.executable, "-m", "linesync", *args, "--data", str(self.data), *self.stores],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, **self.env),
        )
        return out.stdout.strip()

    def new_token(self, user: str, device: str = "laptop", read_only: bool = False) -> str:
        users = self.admin("user", "list").split()
        if user not in users:
            self.admin("user", "add", user)
        args = ["token", "create", user, "--device", device]
        if read_only:
            args.append("--read-only")
        return self.admin(*args).splitlines()[-1]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        drain = getattr(self, "_drain", None)
        if drain is not None:
            drain.join(timeout=10)  # every line the server printed is in the log
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
