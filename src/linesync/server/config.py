"""Server settings, with defaults that suit a personal server.

Every limit here bounds what one request (or all of them together) may cost
the server; docs/PROTOCOL.md ("Limits") lists each with its default and says
what a request past it gets. ``linesync serve --limit NAME=VALUE`` sets any
numeric one by name.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linesync.server.commit import Limits

MiB = 2**20


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path = Path("data")
    # Where metadata and chunks live (stores/urls.py); None: embedded, in data_dir.
    db: str | None = None
    chunks: str | None = None
    # Connections to PostgreSQL one server process keeps at most.
    db_pool_size: int = 10
    host: str = "127.0.0.1"
    port: int = 8440
    # -- bodies ---------------------------------------------------------------
    # JSON requests: room for a blocklist of Limits.max_blocklist ids (43 bytes each).
    max_json_body: int = 48 * MiB
    # Binary chunk uploads (streamed: never held whole).
    max_upload_body: int = 64 * MiB
    # One chunk, compressed or not (the chunkers never cut bigger ones).
    max_chunk: int = MiB
    # What the chunks of one upload may decompress to, in all.
    max_request_decoded: int = 128 * MiB
    # Chunks inside one commit's JSON body, by count and decompressed bytes.
    max_inline_chunks: int = 1024
    max_inline_decoded: int = 16 * MiB
    # Base chunks one request may name to decode deltas against (held in memory).
    max_base_bytes: int = 16 * MiB
    # Bytes of request bodies held in memory at once across the server; a request
    # that would pass it waits up to ``busy_timeout`` seconds, then gets 429.
    max_inflight_bytes: int = 512 * MiB
    busy_timeout: float = 10.0
    # -- batches and pages -------------------------------------------------------
    max_batch_paths: int = 1000
    max_ids_per_request: int = 65536
    max_list_page: int = 1000
    # A list page stops growing past about this many bytes of entries.
    max_list_bytes: int = 4 * MiB
    max_wait_seconds: float = 60.0
    max_inline_bytes: int = 256 * 2**10
    max_download_body: int = 64 * MiB
    # Chunk downloads re-compress chunks against the bases a client names; the
    # base and chunk bytes one request may cost so (past it: frames as stored).
    max_recompress_bytes: int = 32 * MiB
    # Uploads in progress announced for streaming sync: ids held in all (past
    # it, a new announcement gets 429), and announcements a namespace.
    max_pending_bytes: int = 64 * MiB
    max_pending_per_ns: int = 4
    # -- connections -------------------------------------------------------------
    # Seconds a client may take between two pieces of a request body.
    body_idle_timeout: float = 30.0
    # Seconds from a connection's opening (or a request's first byte) until its
    # headers are complete.
    header_timeout: float = 10.0
    # Seconds an idle kept-alive connection stays open.
    keepalive_timeout: float = 30.0
    # Open connections at most; None: derived from the open-file limit.
    max_connections: int | None = None
    # Proxies (comma-separated addresses, or "*") whose X-Forwarded-For names the
    # client: behind one, per-address limits see the real client. None: no proxy.
    forwarded_allow_ips: str | None = None
    # -- rates -------------------------------------------------------------------
    # Per token: sustained requests per second, and burst.
    rate_per_second: float = 200.0
    rate_burst: float = 1000.0
    # Per client address: failed authentications per second, and burst.
    auth_fail_rate: float = 1.0
    auth_fail_burst: float = 50.0
    # -- maintenance -----------------------------------------------------------------
    gc_grace_seconds: float = 24 * 3600.0
    gc_interval_seconds: float = 3600.0
    pack_size_limit: int = 64 * MiB
    # Shared stores: small appends staged in the database go to the object store
    # this often, and a staged pack emptied so is deleted this much later.
    drain_interval_seconds: float = 30.0
    drain_hold_seconds: float = 300.0
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and not value > 0 and f.name != "port":
                raise ValueError(f"{f.name} must be greater than 0 (got {value})")
        if self.port < 0 or self.port > 65535:
            raise ValueError(f"port must be between 0 and 65535 (got {self.port})")
        if self.max_inflight_bytes < max(self.max_json_body, self.max_upload_body):
            raise ValueError("max_inflight_bytes must hold at least one request body")

    @property
    def meta_path(self) -> Path:
        return self.data_dir / "meta.sqlite3"

    @property
    def packs_dir(self) -> Path:
        return self.data_dir


_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmg]i?b?)?", re.IGNORECASE)
_UNITS = {"k": 2**10, "m": 2**20, "g": 2**30}


def tunable() -> dict[str, type]:
    """The settings ``--limit NAME=VALUE`` may set, with their types."""
    out: dict[str, type] = {}
    for f in dataclasses.fields(ServerConfig):
        if f.name in ("port",):
            continue
        default = getattr(ServerConfig(), f.name)
        if isinstance(default, bool):
            continue
        if isinstance(default, int | float) or f.name == "max_connections":
            out[f.name] = float if isinstance(default, float) else int
    for f in dataclasses.fields(Limits):
        out[f.name] = int
    return out


def parse_limit(text: str) -> tuple[str, int | float]:
    """``NAME=VALUE`` (sizes may say KiB, MiB or GiB: ``64MiB``) → (name, value);
    ValueError with a message fit for the user."""
    name, sep, raw = text.partition("=")
    name = name.strip().replace("-", "_")
    known = tunable()
    if not sep or name not in known:
        raise ValueError(
            f"unknown limit {name!r}: give NAME=VALUE with NAME one of " + ", ".join(sorted(known))
        )
    m = _SIZE.fullmatch(raw.strip())
    if m is None:
        raise ValueError(f"{name}: {raw!r} is not a number (sizes may end in KiB, MiB or GiB)")
    number = float(m.group(1)) * (_UNITS[m.group(2)[0].lower()] if m.group(2) else 1)
    if not number > 0:
        raise ValueError(f"{name} must be greater than 0")
    return name, int(number) if known[name] is int else number


def with_limits(config: ServerConfig, settings: dict[str, int | float]) -> ServerConfig:
    """``config`` with named settings changed (see :func:`tunable`)."""
    limit_names = {f.name for f in dataclasses.fields(Limits)}
    mine: dict[str, Any] = {k: v for k, v in settings.items() if k not in limit_names}
    theirs: dict[str, Any] = {k: v for k, v in settings.items() if k in limit_names}
    return dataclasses.replace(config, limits=dataclasses.replace(config.limits, **theirs), **mine)


# -- configuration from a file and the environment ------------------------------

# Settings a configuration file (or LINESYNC_<NAME>) may give besides the limits.
PLACES = {"data": str, "db": str, "chunks": str, "host": str, "port": int,
          "forwarded_allow_ips": str}  # fmt: skip


class ConfigError(ValueError):
    """A setting from a file or the environment that cannot be used."""


@dataclass(frozen=True)
class Layer:
    """Settings from one source: where things are, and limits by name."""

    places: dict[str, str | int] = field(default_factory=dict)
    limits: dict[str, int | float] = field(default_factory=dict)


def from_file(path: Path) -> Layer:
    """A TOML file: the places at the top level (``data``, ``db``, ``chunks``,
    ``host``, ``port``, ``forwarded_allow_ips``) and any limit in ``[limits]``
    (``max_upload_body = "32MiB"``). ConfigError naming the file and the key."""
    import tomllib

    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    layer = Layer()
    for key, value in doc.items():
        if key == "limits":
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: [limits] must be a table of NAME = VALUE")
            for name, raw in value.items():
                try:
                    k, v = parse_limit(f"{name}={raw}")
                except ValueError as exc:
                    raise ConfigError(f"{path}: [limits] {exc}") from None
                layer.limits[k] = v
        elif key in PLACES:
            kind = PLACES[key]
            if not isinstance(value, str | int) or type(value) is not kind:
                raise ConfigError(f"{path}: {key} must be a {kind.__name__}")
            layer.places[key] = value
        else:
            raise ConfigError(
                f"{path}: unknown setting {key!r} (known: {', '.join(sorted(PLACES))}, [limits])"
            )
    return layer


def from_env(environ: dict[str, str] | None = None) -> Layer:
    """``LINESYNC_DATA``, ``LINESYNC_DB``, ``LINESYNC_CHUNKS``, ``LINESYNC_HOST``,
    ``LINESYNC_PORT``, ``LINESYNC_FORWARDED_ALLOW_IPS``, and any limit as
    ``LINESYNC_LIMIT_<NAME>`` (``LINESYNC_LIMIT_MAX_UPLOAD_BODY=32MiB``)."""
    import os

    env = os.environ if environ is None else environ
    layer = Layer()
    for key, kind in PLACES.items():
        raw = env.get("LINESYNC_" + key.upper())
        if raw:
            try:
                layer.places[key] = int(raw) if kind is int else raw
            except ValueError:
                raise ConfigError(
                    f"LINESYNC_{key.upper()}={raw!r} is not a {kind.__name__}"
                ) from None
    for var, raw in env.items():
        if var.startswith("LINESYNC_LIMIT_") and raw:
            try:
                k, v = parse_limit(f"{var.removeprefix('LINESYNC_LIMIT_').lower()}={raw}")
            except ValueError as exc:
                raise ConfigError(f"{var}: {exc}") from None
            layer.limits[k] = v
    return layer
