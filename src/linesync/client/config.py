"""A synced folder's settings, in ``FOLDER/.linesync/config.json`` (mode 0600:
it holds the token)."""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path

from linesync.client.localfs import STATE_DIR, fsync_dir

CONFIG_FILE = "config.json"
INDEX_FILE = "index.sqlite3"


def check_server_url(url: str) -> str:
    """``url`` if it is a server URL linesync can use (``http://`` or
    ``https://``, a host, maybe a port and a path), or several of them
    separated by commas (processes of one server, tried in turn when one cannot
    be reached), else ValueError saying what the right form is."""
    if "," in url:
        each = [check_server_url(u) for u in url.split(",") if u.strip()]
        if not each:
            raise ValueError(f"{url!r} names no server")
        return ",".join(each)
    text = url.strip()
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or "://" not in text:
        bare = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*:/+", "", text) or "HOST:PORT"
        raise ValueError(
            f"{url!r} is not a server URL: give it with http:// or https:// in front, "
            f"like http://{bare}"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host: give it like http://127.0.0.1:8440")
    if port == 0:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a server URL has no ?query or #fragment")
    return text.rstrip("/")


@dataclass(frozen=True)
class FolderConfig:
    server: str
    token: str
    namespace: int
    namespace_name: str
    device: str
    read_only: bool = False
    # Folders this device leaves out (selective sync: linesync exclude).
    excluded: tuple[str, ...] = ()

    @staticmethod
    def path(folder: Path) -> Path:
        return folder / STATE_DIR / CONFIG_FILE

    @classmethod
    def load(cls, folder: Path) -> FolderConfig:
        p = cls.path(folder)
        try:
            data = json.loads(p.read_text())
            if "excluded" in data:
                data["excluded"] = tuple(str(e) for e in data["excluded"])
            return cls(**data)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{folder} is not a linesync folder (run `linesync init {folder} ...` first)"
            ) from None
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{p} is damaged: {exc}") from exc

    def save(self, folder: Path) -> None:
        p = self.path(folder)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        data = asdict(self)
        if not self.excluded:
            del data["excluded"]  # (as older linesyncs wrote it)
        else:
            data["excluded"] = list(self.excluded)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        fsync_dir(p.parent)
