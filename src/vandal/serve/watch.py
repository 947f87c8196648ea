"""Watched folders (``vandal serve --watch NAME=DIR``): image files dropped into DIR (a camera or an
FTP drop folder) are scored with model NAME as they arrive, each file once, across restarts.

A thread polls the folder. A file is taken only once it is complete: its size and modification
time unchanged for at least ``settle`` seconds, over two polls or more (a writer still copying it
changes one of them; the time is the server's own, so a camera's clock does not matter), not
empty, not hidden, and not named like a partial download (``.part``, ``.tmp``, ``.crdownload``,
``.filepart``). What was taken is kept by a :class:`SeenFiles` (file name and SHA-256, so a file
rewritten with new content under the same name is scored again); the service keeps it in its
database, so a restart does not score a file twice. A file that cannot be decoded is taken too
(logged, kept with its reason, counted as failed in ``GET /line``); a scoring failure that may
pass (the model missing, the service or its database busy) is retried at the next poll.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

log = logging.getLogger("vandal.serve.watch")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".filepart", ".partial")


class SeenFiles(Protocol):
    """What each watched folder has taken (persisted: a restart reads it back)."""

    def seen(self, model: str, folder: str, file: str, sha256: str) -> bool: ...

    def add(self, model: str, folder: str, file: str, sha256: str, outcome: str) -> None: ...


class Retry(Exception):
    """Raised by a scorer when a file should be tried again at the next poll (the model is missing)."""


def parse_watch(text: str) -> tuple[str, Path]:
    """``NAME=DIR`` (the ``--watch`` option) -> (model name, folder)."""
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise ValueError(f"--watch {text!r}: use NAME=DIR, e.g. --watch bottle=/srv/camera1")
    return name, Path(folder).expanduser()


def is_candidate(path: Path) -> bool:
    name = path.name.lower()
    return not name.startswith(".") and not name.endswith(PARTIAL_SUFFIXES) and path.suffix.lower() in IMAGE_SUFFIXES


# (model, file name, bytes) -> an outcome for the record ("inspection 12", "unreadable: ...")
Scorer = Callable[[str, str, bytes], str]


class FolderWatcher:
    """Scores new complete image files in ``folder`` with ``model`` through ``score``."""

    def __init__(self, model: str, folder: Path, score: Scorer, seen: SeenFiles, interval: float = 1.0,
                 settle: float | None = None):
        if interval <= 0:
            raise ValueError(f"watch interval must be positive, got {interval!r}")
        self.model, self.folder = model, Path(folder).resolve()
        self.score, self.seen_files = score, seen
        self.interval = interval
        self.settle = interval if settle is None else settle
        self.scored = 0
        self.failed = 0
        self.polls = 0
        self._sizes: dict[str, tuple[tuple[int, int], float]] = {}  # file -> ((size, mtime), since when)
        self._taken: dict[str, tuple[int, int]] = {}  # file -> (size, mtime) when taken (or found seen)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.folder.is_dir():
            raise FileNotFoundError(f"--watch {self.model}={self.folder}: no such folder; create it first")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"vandal-watch-{self.model}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
                self.polls += 1
            except Exception:  # a bug or a vanished folder: logged, and the next poll tries again
                log.exception("watching %s for model %r failed", self.folder, self.model)
            self._stop.wait(self.interval)

    def ready(self, now: float | None = None) -> list[Path]:
        """Files complete now: unchanged since an earlier call at least ``settle`` seconds ago."""
        now = time.monotonic() if now is None else now
        sizes, ready = {}, []
        for path in sorted(self.folder.iterdir()):
            if not is_candidate(path):
                continue
            try:
                stat = path.stat()
            except OSError:  # removed while listing
                continue
            if not stat.st_mode & 0o100000:  # S_IFREG: a regular file (not a folder, fifo or device)
                continue
            key = (stat.st_size, stat.st_mtime_ns)
            before, since = self._sizes.get(path.name, (None, now))
            sizes[path.name] = (key, since if before == key else now)
            if self._taken.get(path.name) == key:
                continue
            if stat.st_size > 0 and before == key and now - since >= self.settle:
                ready.append(path)
        self._sizes = sizes
        self._taken = {name: key for name, key in self._taken.items() if name in sizes}  # forget removed files
        return ready

    def poll(self) -> int:
        """Score the files that became ready -> how many were taken."""
        taken = 0
        for path in self.ready():
            if self._stop.is_set():
                break
            try:
                data = path.read_bytes()
            except OSError as error:
                log.warning("watch %s: cannot read %s (%s); trying again", self.model, path.name, error)
                continue
            key = self._sizes[path.name][0]
            sha256 = hashlib.sha256(data).hexdigest()
            if self.seen_files.seen(self.model, str(self.folder), path.name, sha256):
                self._taken[path.name] = key
                continue
            try:
                outcome = self.score(self.model, path.name, data)
            except Retry as error:
                log.warning("watch %s: %s; %s is tried again at the next poll", self.model, error, path.name)
                continue
            self.seen_files.add(self.model, str(self.folder), path.name, sha256, outcome)
            self._taken[path.name] = key
            taken += 1
            if outcome.startswith("inspection"):
                self.scored += 1
            else:
                self.failed += 1
                log.warning("watch %s: %s not scored: %s", self.model, path.name, outcome)
        return taken

    def state(self) -> dict[str, object]:
        return {"model": self.model, "folder": str(self.folder), "scored": self.scored, "failed": self.failed,
                "polls": self.polls, "running": self._thread is not None and self._thread.is_alive()}

