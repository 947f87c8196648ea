"""Loaded detectors kept in memory, least recently used dropped first.

An entry is valid while its bundle's files are unchanged: the stamp (inode, size, mtime of each
file) changes when a bundle is rewritten (the atomic writer swaps in a new folder), so a model
refitted by another process or by ``vandal fit`` is reloaded instead of served stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from ..bundle import BUNDLE_FILES

if TYPE_CHECKING:
    from ..runner import Predictor

Stamp = tuple[tuple[int, int, int], ...]


def bundle_stamp(folder: Path) -> Stamp | None:
    """What identifies one written version of a bundle; None when a file is missing."""
    try:
        stats = [(folder / name).stat() for name in sorted(BUNDLE_FILES)]
    except OSError:
        return None
    return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)


class DetectorCache:
    """At most ``capacity`` detectors by model name (thread-safe)."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[Stamp, Predictor]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, stamp: Stamp | None) -> Predictor | None:
        """The detector cached for ``name`` if it was loaded from the bundle version ``stamp``."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or stamp is None or entry[0] != stamp:
                return None
            self._entries.move_to_end(name)
            return entry[1]

    def put(self, name: str, stamp: Stamp | None, detector: Predictor) -> None:
        if stamp is None:
            return
        with self._lock:
            self._entries[name] = (stamp, detector)
            self._entries.move_to_end(name)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def drop(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._entries
