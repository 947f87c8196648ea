"""The station: what the service keeps beyond the models. Opens the database (migrated), the image
store and the model versions, checks keys (:class:`Auth`), and records every scored image.

``on_recorded`` is the one hook for line integration: callables given each new inspection's API
object (webhooks, MQTT, ...), called after the record is committed, in the thread that scored it;
they must return quickly (queue the work) and their errors are logged, never the request's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..prediction import Prediction
from .auth import Auth
from .blobs import ImageStore, sha256
from .db import Database, audit, records
from .db.keys import Identity
from .locking import model_lock
from .settings import ServeSettings
from .uploads import Upload
from .versioning import ModelVersions

log = logging.getLogger("vandal.serve")
Recorded = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Scored:
    """One scored upload, as predict hands it to :meth:`Station.record`."""

    upload: Upload
    image: np.ndarray
    prediction: Prediction
    overlay_png: bytes | None = None


class Station:
    """The database, kept images, versions, keys and the recording hook of one service."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.db = Database(settings.database_url)
        self.images = ImageStore(settings.station_dir / "images", settings.keep_images)
        self.versions = ModelVersions(self.db, settings.station_dir / "versions", self.model_lock)
        self.auth = Auth(self.db, settings.auth)
        self.on_recorded: list[Recorded] = []
        self.images.prune()

    def record(self, model: str, version: int | None, scored: Sequence[Scored], image_threshold: float,
               pixel_threshold: float, who: Identity, source: str = "api") -> list[dict[str, Any]]:
        """Keep the images (when retention is on) and write one inspection each, in one transaction
        -> their API objects; then tell ``on_recorded``."""
        rows = []
        for item in scored:
            digest = sha256(item.upload.data)
            self.images.put(item.upload.data, digest)
            overlay = self.images.put(item.overlay_png) if item.overlay_png is not None else None
            height, width = item.image.shape[:2]
            rows.append(records.NewInspection(
                model=model, version=version, file=item.upload.name, sha256=digest, size=len(item.upload.data),
                pred_score=float(item.prediction.pred_score), pred_label=bool(item.prediction.pred_label),
                image_threshold=image_threshold, pixel_threshold=pixel_threshold, key_name=who.name, width=width,
                height=height, source=source, overlay_sha256=overlay))
        with self.db.begin() as conn:
            made = records.add_inspections(conn, rows)
        self.notify(made)
        return made

    def notify(self, made: Sequence[dict[str, Any]]) -> None:
        for record in made:
            for hook in list(self.on_recorded):
                try:
                    hook(record)
                except Exception:  # a subscriber's bug never fails the inspection that is already recorded
                    log.exception("on_recorded hook %r failed for inspection %s", hook, record.get("id"))

    def model_lock(self, name: str) -> Any:
        """The cross-process write lock of model ``name`` (a context manager; see ``locking.py``)."""
        return model_lock(self.db, self.settings.station_dir / "locks", name)

    def audit(self, who: Identity, action: str, target: str | None, detail: dict[str, Any] | None) -> None:
        with self.db.begin() as conn:
            audit.record(conn, who.name, action, target, detail)

    def close(self) -> None:
        self.db.dispose()
