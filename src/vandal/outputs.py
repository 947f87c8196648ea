"""Writing results so that a failure never leaves half-written files: write aside, then rename."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import atomic_write_bytes

CSV_HEADER = ["path", "pred_score", "pred_label", "map_file"]


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_png(path: Path, array: np.ndarray) -> None:
    atomic_write_bytes(path, png_bytes(array))


def write_npy(path: Path, array: np.ndarray) -> None:
    atomic_write_bytes(path, npy_bytes(array))


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
