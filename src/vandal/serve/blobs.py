"""Inspected images and their overlays on disk, by content hash, kept ``keep_days`` days.

``DIR/.vandal-serve/images/ab/abcdef...``: the bytes as uploaded, one file per distinct content (a part scanned twice
is stored once), written atomically. Retention counts from the last time a content was stored
again; :meth:`prune` drops what is older (run at start-up and at most hourly while storing).
With ``keep_days=0`` nothing is stored.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from pathlib import Path

from ..atomic import atomic_write_bytes

SHA_RULE = re.compile(r"[0-9a-f]{64}")
DAY = 86400.0
PRUNE_EVERY = 3600.0


MEDIA_TYPES = ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"BM", "image/bmp"),
               (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"), (b"GIF8", "image/gif"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def media_type(data: bytes) -> str:
    """The image type the bytes start with (application/octet-stream when unknown)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in MEDIA_TYPES if data.startswith(magic)), "application/octet-stream")


class ImageStore:
    """Content-addressed files under ``root`` kept ``keep_days`` (0: none; fractions allowed)."""

    def __init__(self, root: Path, keep_days: float):
        if keep_days < 0:
            raise ValueError(f"keep_days must be >= 0, got {keep_days!r}")
        self.root = Path(root)
        self.keep_days = keep_days
        self._pruned = 0.0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.keep_days > 0

    def path(self, digest: str) -> Path:
        if not SHA_RULE.fullmatch(digest):
            raise ValueError(f"not a SHA-256 digest: {digest[:80]!r}")
        return self.root / digest[:2] / digest

    def put(self, data: bytes, digest: str | None = None) -> str | None:
        """Keep ``data`` -> its digest (None when retention is 0)."""
        if not self.enabled:
            return None
        digest = digest or sha256(data)
        path = self.path(digest)
        if path.exists():
            os.utime(path)  # seen again: its retention starts over
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
        if time.time() - self._pruned > PRUNE_EVERY:
            self.prune()
        return digest

    def get(self, digest: str) -> bytes | None:
        """The kept bytes, or None (never kept, or past retention)."""
        try:
            path = self.path(digest)
            if not self.enabled or time.time() - path.stat().st_mtime > self.keep_days * DAY:
                return None
            return path.read_bytes()
        except (OSError, ValueError):
            return None

    def prune(self) -> int:
        """Delete files past retention (all of them when retention is 0) -> how many."""
        with self._lock:
            self._pruned = time.time()
            if not self.root.is_dir():
                return 0
            cutoff = time.time() - self.keep_days * DAY
            removed = 0
            for path in self.root.glob("??/*"):
                if not SHA_RULE.fullmatch(path.name):
                    continue  # another writer's temporary file
                try:
                    if self.keep_days == 0 or path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
                except OSError:
                    continue  # removed by another process meanwhile
            return removed
