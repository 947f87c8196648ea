"""The service's settings (one frozen dataclass, filled by ``vandal serve``'s options) and where
models live by default."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..data.images import DEFAULT_MAX_PIXELS

MB = 1 << 20


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
    allow_download: let a request's backbone (a Hugging Face id) be downloaded (default: cache only);
    mqtt: ``mqtt://host:port`` of a broker to publish inspections to; watch: ``(model name, folder)``
    pairs of watched folders, polled every ``watch_interval`` seconds; webhook_attempts /
    webhook_backoff / webhook_timeout: tries per delivery, the first wait between them (doubling)
    and each POST's timeout, in seconds."""

    models: Path = field(default_factory=default_models_dir)
    device: str = "auto"
    max_upload_mb: float = 50.0
    max_request_mb: float = 512.0
    max_files: int = 64
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    cache_size: int = 4
    queue_size: int = 16
    allow_download: bool = False
    mqtt: str | None = None
    watch: tuple[tuple[str, Path], ...] = ()
    watch_interval: float = 1.0
    webhook_attempts: int = 5
    webhook_backoff: float = 1.0
    webhook_timeout: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", Path(self.models).expanduser())
        object.__setattr__(self, "watch", tuple((str(name), Path(folder).expanduser()) for name, folder in self.watch))
        for name in ("max_upload_mb", "max_request_mb", "max_files", "cache_size", "queue_size", "watch_interval",
                     "webhook_attempts", "webhook_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.webhook_backoff < 0:
            raise ValueError(f"webhook_backoff must be >= 0, got {self.webhook_backoff!r}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ValueError(f"max_pixels must be positive (or None: no limit), got {self.max_pixels!r}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * MB)
