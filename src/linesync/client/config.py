"""A synced folder's settings, in ``FOLDER/.linesync/config.json`` (mode 0600:
it holds the token)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from linesync.client.localfs import STATE_DIR

CONFIG_FILE = "config.json"
INDEX_FILE = "index.sqlite3"


@dataclass(frozen=True)
class FolderConfig:
    server: str
    token: str
    namespace: int
    namespace_name: str
    device: str
    read_only: bool = False

    @staticmethod
    def path(folder: Path) -> Path:
        return folder / STATE_DIR / CONFIG_FILE

    @classmethod
    def load(cls, folder: Path) -> FolderConfig:
        p = cls.path(folder)
        try:
            data = json.loads(p.read_text())
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
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
