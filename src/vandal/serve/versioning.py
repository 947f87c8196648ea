"""Model versions on disk and in the database: every change to a bundle is frozen as a snapshot
(hard links to the bundle's files, which the atomic writer replaces and never edits, so a
snapshot costs no copy on one filesystem) and recorded as the model's next version.

A live bundle is matched to its version by its stamp (inode, size, mtime of its files), so every
process sharing the models folder and the database names the same version; a bundle changed
outside the service (``vandal fit --out DIR/NAME``) becomes a new version, ``found``, when first seen.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ..atomic import write_directory
from ..bundle import BUNDLE_FILES, CONFIG_FILE
from .cache import bundle_stamp
from .db import Database, audit, versions
from .errors import ServiceError


def stamp_text(folder: Path) -> str | None:
    stamp = bundle_stamp(folder)
    return None if stamp is None else json.dumps(stamp)


def link_files(source: Path, target: Path) -> None:
    """The bundle's files from ``source`` into the folder ``target`` (hard links; copies across filesystems)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in sorted(BUNDLE_FILES):
        try:
            os.link(source / name, target / name)
        except OSError:
            shutil.copy2(source / name, target / name)


def bundle_facts(folder: Path) -> dict[str, Any]:
    """References and decision level a bundle holds (None where its JSON does not say)."""
    try:
        document = json.loads((folder / CONFIG_FILE).read_text())
        post = document.get("config", {}).get("post", {})
        return {"references": document.get("n_references"), "image_threshold": post.get("image_threshold")}
    except (OSError, ValueError, RecursionError, AttributeError):
        return {"references": None, "image_threshold": None}


class ModelVersions:
    """Snapshots under ``root`` (``root/NAME/<id>``) and their rows in ``db``; ``lock(name)``: the
    cross-process write lock of a model (a context manager), taken before a ``found`` version is
    registered, so a bundle another process has just written is not also registered as found."""

    def __init__(self, db: Database, root: Path, lock: Callable[[str], Any] | None = None):
        self.db = db
        self.root = Path(root)
        self.lock = lock or (lambda name: nullcontext())

    def _snapshot(self, name: str, folder: Path) -> str:
        relative = f"{name}/{uuid.uuid4().hex}"
        link_files(folder, self.root / relative)
        return relative

    def commit(self, name: str, folder: Path, action: str, by: str | None, source_version: int | None = None,
               detail: dict[str, Any] | None = None) -> dict[str, Any]:
        """Freeze the bundle now in ``folder`` as ``name``'s next version (audited) -> the version's API object."""
        stamp = stamp_text(folder)
        snapshot = self._snapshot(name, folder)
        facts = bundle_facts(folder)
        with self.db.begin() as conn:
            made = versions.add_version(conn, name, action, references=facts["references"],
                                        image_threshold=facts["image_threshold"], key_name=by, stamp=stamp,
                                        snapshot=snapshot, source_version=source_version,
                                        detail=None if detail is None else json.dumps(detail, sort_keys=True))
            audit.record(conn, by, f"model.{action}", name, {"version": made["version"], **(detail or {})})
        return made

    def current(self, name: str, folder: Path) -> int | None:
        """The version the live bundle in ``folder`` is (registering it as ``found`` when new); None without one."""
        stamp = stamp_text(folder)
        if stamp is None:
            return None
        # Read every time (one indexed query): another process may have rolled back to a stamp seen before.
        with self.db.connect() as conn:
            number = versions.version_of_stamp(conn, name, stamp)
        if number is not None:
            return number
        with self.lock(name):  # a writer holds it from its save to its version's commit: wait, then look again
            with self.db.connect() as conn:
                number = versions.version_of_stamp(conn, name, stamp_text(folder) or stamp)
            return self.commit(name, folder, "found", None)["version"] if number is None else number

    def restore(self, name: str, folder: Path, version: int, by: str | None) -> dict[str, Any]:
        """Put version ``version``'s snapshot back live in ``folder`` and record that as the next version.
        The caller holds the model's lock."""
        with self.db.connect() as conn:
            row = versions.get_version(conn, name, version)
        if row is None:
            raise ServiceError(404, f"model {name!r} has no version {version}; GET /models/{name}/versions lists them")
        source = self.root / (row.snapshot or "")
        if not row.snapshot or not all((source / f).is_file() for f in BUNDLE_FILES):
            raise ServiceError(409, f"model {name!r} version {version}: its snapshot is gone from the station folder; "
                                    "it cannot be restored")
        write_directory(folder, lambda staging: link_files(source, staging))
        return self.commit(name, folder, "rollback", by, source_version=version)
