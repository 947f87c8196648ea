"""The service's settings (one frozen dataclass, filled by ``vandal serve``'s options) and where
models live by default."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..data.images import DEFAULT_MAX_PIXELS

MB = 1 << 20
STATION_DIR = ".vandal-serve"  # the service's own folder beside the models
DATABASE_FILE = "station.sqlite"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
AUTH_MODES = ("auto", "required", "off")


def default_models_dir() -> Path:
    """A per-user data folder: ``$VANDAL_MODELS``, else the platform's (XDG on Linux) ``vandal/models``."""
    if os.environ.get("VANDAL_MODELS"):
        return Path(os.environ["VANDAL_MODELS"]).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "vandal" / "models"


@dataclass(frozen=True)
class ServeSettings:
    """models: folder of named bundles; device: where detectors run; max_upload_mb: per uploaded
    file; max_request_mb: per request body; max_files: files per request; max_pixels: per decoded
    image (decompression bombs); cache_size: detectors kept loaded (LRU); queue_size: heavy
    requests (fit, references, predict) admitted at once, beyond which the answer is 503;
    allow_download: let a request's backbone (a Hugging Face id) be downloaded (default: cache only).

    The station: database: a SQLAlchemy URL or SQLite file (None: ``station.sqlite`` in the models
    folder's ``.vandal-serve/``); keep_images: days inspected images and overlays are kept (0: none);
    auth: ``auto`` (keys required once one exists), ``required`` (always; a server reachable beyond
    loopback) or ``off`` (--no-auth); allowed_hosts: ``Host`` names answered (against DNS
    rebinding; ``*``: any); body_timeout: seconds a request body may take to arrive;
    max_request_pixels: decoded pixels per request, all files together.

    Line integration: mqtt: ``mqtt://host:port`` of a broker to publish inspections to; watch:
    ``(model name, folder)`` pairs of watched folders, polled every ``watch_interval`` seconds;
    webhook_attempts / webhook_backoff / webhook_timeout: tries per delivery, the first wait between
    them (doubling) and each POST's timeout, in seconds."""

    models: Path = field(default_factory=default_models_dir)
    device: str = "auto"
    max_upload_mb: float = 50.0
    max_request_mb: float = 512.0
    max_files: int = 64
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    cache_size: int = 4
    queue_size: int = 16
    allow_download: bool = False
    database: str | None = None
    keep_images: float = 7.0
    auth: str = "auto"
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    body_timeout: float = 60.0
    max_request_pixels: int | None = 400_000_000
    mqtt: str | None = None
    watch: tuple[tuple[str, Path], ...] = ()
    watch_interval: float = 1.0
    webhook_attempts: int = 5
    webhook_backoff: float = 1.0
    webhook_timeout: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", Path(self.models).expanduser())
        object.__setattr__(self, "allowed_hosts", tuple(h.lower() for h in self.allowed_hosts))
        object.__setattr__(self, "watch", tuple((str(name), Path(folder).expanduser()) for name, folder in self.watch))
        if self.auth not in AUTH_MODES:
            raise ValueError(f"auth must be one of {', '.join(AUTH_MODES)}, got {self.auth!r}")
        if self.keep_images < 0:
            raise ValueError(f"keep_images must be >= 0 days, got {self.keep_images!r}")
        for name in ("max_upload_mb", "max_request_mb", "max_files", "cache_size", "queue_size", "body_timeout",
                     "watch_interval", "webhook_attempts", "webhook_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.webhook_backoff < 0:
            raise ValueError(f"webhook_backoff must be >= 0, got {self.webhook_backoff!r}")
        for name in ("max_pixels", "max_request_pixels"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive (or None: no limit), got {getattr(self, name)!r}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * MB)

    @property
    def station_dir(self) -> Path:
        """The service's own folder beside the models (database, kept images, version snapshots)."""
        return self.models / STATION_DIR

    @property
    def database_url(self) -> str:
        """``database`` or the embedded default, ``station.sqlite`` in the station folder."""
        return self.database or f"sqlite:///{self.station_dir / DATABASE_FILE}"
