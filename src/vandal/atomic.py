"""Writing so that a failure never leaves half-written files: write aside, then rename into place.

The one atomic writer for files (results, tables, PNGs, adapters) and directories (detector
bundles). Files get the mode a plain ``open`` would give them (0666 less the umask): temporary
files are created private, and a result is meant to be shared.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO


@lru_cache(maxsize=1)
def umask() -> int:
    """The process umask, read without changing it where the system tells (Linux /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)  # elsewhere: set and restore (once per process)
    os.umask(current)
    return current


def file_mode() -> int:
    return 0o666 & ~umask()


def dir_mode() -> int:
    return 0o777 & ~umask()


def atomic_write_with(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """``write(handle)`` fills a temporary sibling, renamed to ``path`` once complete (parents are
    created). Writing straight to the file saves the in-memory copy a bytes buffer would cost."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data`` to ``path`` via a temporary sibling and a rename (parents are created)."""
    atomic_write_with(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_directory(target: str | os.PathLike, fill: Callable[[Path], None]) -> None:
    """Build a directory with ``fill(staging)`` beside ``target``, then swap it in.

    An existing ``target`` is moved aside first and restored if the swap fails half-way, so a
    reader sees the old directory or the new one, never a mix. The caller decides whether an
    existing ``target`` may be replaced at all.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        staging.chmod(dir_mode())
        fill(staging)
        for entry in staging.iterdir():
            if entry.is_file():
                entry.chmod(file_mode())
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            target.rename(backup)
            try:
                staging.rename(target)
            except BaseException:
                backup.rename(target)
                raise
            shutil.rmtree(backup, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
