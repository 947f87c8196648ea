"""A prediction run's output folder: checked, locked, and never mixed with another run's files.

A run claims its ``--out`` folder: the folder must be new or empty, unless ``overwrite`` is given,
which clears only what an earlier vandal run wrote there (listed in its manifest,
``.vandal-run.json``); the user's own files stay. While a run writes, the folder is locked
(``flock`` on ``.vandal.lock``), so a second run into the same folder stops at once with a clear
message instead of interleaving its CSV with the first one's.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..atomic import atomic_write_text

MANIFEST = ".vandal-run.json"
LOCK = ".vandal.lock"
OWN_FILES = ("predictions.csv", "predictions.parquet", "skipped.csv", "report.html", MANIFEST)
OWN_DIRS = ("overlays", "masks", "maps")


class OutputFolderError(ValueError):
    """The output folder cannot be used as asked; the message says what to do instead."""


def _explain(error: OSError, out: Path) -> str:
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write to {out} ({error.strerror}): choose a folder you may write to with --out"
    return f"cannot use {out} as the output folder ({error.strerror or error})"


def _previous_files(out: Path) -> list[Path]:
    """What an earlier run listed in its manifest, confined to ``out``."""
    try:
        listed = json.loads((out / MANIFEST).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        listed = []
    root = out.resolve()
    found = []
    for name in listed if isinstance(listed, list) else []:
        path = (out / str(name)).resolve()
        if path.is_relative_to(root) and path != root:
            found.append(path)
    return found


def clear_previous(out: Path) -> None:
    """Remove an earlier run's files (its manifest's list and vandal's own names); keep the rest."""
    for path in _previous_files(out) + [out / name for name in OWN_FILES]:
        if path.is_file() or path.is_symlink():
            path.unlink()
    for name in OWN_DIRS:
        folder = out / name
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def refuse_unsafe_out(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse an ``out`` that is, or is inside, a detector bundle or an input folder: results written
    there would damage the bundle (a service no longer lists it) or be read back as inputs by a later
    ``--recursive`` run. Raises :class:`OutputFolderError` naming both folders and the fix."""
    from ..bundle import CONFIG_FILE

    target = Path(out).expanduser().resolve()
    for folder in (target, *target.parents):
        if (folder / CONFIG_FILE).is_file():
            raise OutputFolderError(f"--out {out} is inside the detector bundle {folder} (it holds {CONFIG_FILE}): "
                                    "results written there would damage the bundle; choose an --out outside it")
    for item in inputs:
        folder = Path(item).expanduser()
        if folder.is_dir() and target.is_relative_to(folder.resolve()):
            where = "the input folder" if target == folder.resolve() else "inside the input folder"
            raise OutputFolderError(f"--out {out} is {where} {item}: its results would be read back as "
                                    "images to score; choose an --out outside the input folders")


def _write_manifest(out: Path, files: Iterable[str], status: str) -> None:
    atomic_write_text(out / MANIFEST, json.dumps({"status": status, "files": sorted(set(files))}, indent=1))


@contextmanager
def claim(out: str | os.PathLike, planned: Iterable[str], overwrite: bool = False) -> Iterator[Path]:
    """Check, lock and prepare ``out`` for a run that may write the ``planned`` relative paths."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"--out {out} is a file: give a folder for the results")
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = open(out / LOCK, "a")  # noqa: SIM115 - held for the whole run
    except OSError as error:
        raise OutputFolderError(_explain(error, out)) from error
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputFolderError(f"another vandal run is writing to {out}: wait for it to finish, or choose "
                                    "another --out") from None
        entries = sorted(p.name for p in out.iterdir() if p.name != LOCK)
        if entries and not overwrite:
            shown = ", ".join(entries[:3]) + (" ..." if len(entries) > 3 else "")
            raise OutputFolderError(f"{out} is not empty ({shown}): choose a new or empty folder, or pass "
                                    "--overwrite to replace an earlier vandal run's results there (other files "
                                    "are kept)")
        planned = list(planned) + list(OWN_FILES)
        try:
            if entries:
                clear_previous(out)
            _write_manifest(out, planned, "running")
        except OSError as error:
            raise OutputFolderError(_explain(error, out)) from error
        yield out
        _write_manifest(out, planned, "complete")
    finally:
        try:
            (out / LOCK).unlink(missing_ok=True)
        finally:
            handle.close()  # closing releases the lock
