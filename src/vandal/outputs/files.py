"""Files of a prediction run: PNG, NPY and CSV written atomically, unique output names, safe CSV cells,
and a bounded background writer that keeps encoding off the scoring thread."""

from __future__ import annotations

import csv
import io
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes, atomic_write_with
from ..png import png_bytes

CSV_HEADER = ["path", "pred_score", "pred_label", "overlay_file", "mask_file", "map_file"]
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def write_png(path: Path, array: np.ndarray) -> None:
    atomic_write_bytes(path, png_bytes(array))


def write_npy(path: Path, array: np.ndarray) -> None:
    atomic_write_with(path, lambda handle: np.save(handle, array))


def safe_cell(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula (OWASP CSV injection: prefix a quote)."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def unique_stems(names: list[str]) -> list[str]:
    """Output stems unique per input even when two inputs share a file name.

    ``a/x.png`` and ``b/x.png`` become ``x`` and ``x_1``; stems keep only safe characters.
    """
    seen: dict[str, int] = {}
    stems = []
    for name in names:
        base = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem) or "image"
        count = seen.get(base.lower(), 0)
        seen[base.lower()] = count + 1
        stems.append(base if count == 0 else f"{base}_{count}")
    # A generated stem may collide with a later real name ("x_1.png"): resolve by bumping.
    final, used = [], set()
    for stem in stems:
        candidate, bump = stem, 1
        while candidate.lower() in used:
            candidate, bump = f"{stem}_{bump}", bump + 1
        used.add(candidate.lower())
        final.append(candidate)
    return final


class BackgroundWriter:
    """Runs write jobs on ``workers`` threads with a bounded backlog, so memory stays bounded.

    PNG and zlib release the GIL, so encoding overlaps the next image's backbone forward. The
    backlog is counted in pixels (``budget``): many small images may wait, one huge image waits
    alone. A job's error is raised in the caller at the next submit or at :meth:`close`.
    """

    def __init__(self, workers: int = 2, budget: int = 16_000_000):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vandal-write")
        self._queue: deque[tuple[Future, int]] = deque()
        self._budget = budget
        self._queued = 0

    def _wait_oldest(self) -> None:
        future, cost = self._queue.popleft()
        self._queued -= cost
        future.result()

    def submit(self, job: Callable[[], None], cost: int = 1) -> None:
        """Queue ``job`` (``cost``: the pixels it holds), after older jobs free enough of the budget."""
        while self._queue and self._queued + cost > self._budget:
            self._wait_oldest()
        self._queue.append((self._pool.submit(job), cost))
        self._queued += cost

    def close(self) -> None:
        """Wait for every job; raise the first error."""
        try:
            while self._queue:
                self._wait_oldest()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:  # already failing: wait for running jobs, keep the first error
            self._pool.shutdown(wait=True, cancel_futures=True)
