"""Server settings, with defaults that suit a personal server."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from linesync.server.commit import Limits


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8440
    # Bodies: JSON requests, and binary chunk uploads.
    # Room for a blocklist of Limits.max_blocklist ids (43 bytes each, packed).
    max_json_body: int = 48 * 2**20
    max_upload_body: int = 64 * 2**20
    # One chunk, compressed or not (the chunkers never cut bigger ones).
    max_chunk: int = 2**20
    max_batch_paths: int = 1000
    max_ids_per_request: int = 65536
    max_list_page: int = 1000
    # A list page stops growing past about this many bytes of entries.
    max_list_bytes: int = 4 * 2**20
    max_wait_seconds: float = 60.0
    max_inline_bytes: int = 256 * 2**10
    max_download_body: int = 64 * 2**20
    # Seconds a client may take between two pieces of a request body.
    body_idle_timeout: float = 30.0
    # Per token: sustained requests per second, and burst.
    rate_per_second: float = 200.0
    rate_burst: float = 1000.0
    gc_grace_seconds: float = 24 * 3600.0
    gc_interval_seconds: float = 3600.0
    pack_size_limit: int = 64 * 2**20
    limits: Limits = field(default_factory=Limits)

    @property
    def meta_path(self) -> Path:
        return self.data_dir / "meta.sqlite3"

    @property
    def packs_dir(self) -> Path:
        return self.data_dir
