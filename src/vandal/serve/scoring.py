"""Predict as the service runs it: score under the model's lock, naming the version that scored,
then encode the results and record each image as an inspection (its id goes into its result)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..prediction import decision_levels
from .db.keys import Identity
from .encode import results_json
from .station import Scored, Station
from .store import ModelStore
from .uploads import Upload


def score_and_record(store: ModelStore, station: Station, name: str, images: Sequence[tuple[Upload, np.ndarray]],
                     fields: Sequence[str], image_threshold: float | None, pixel_threshold: float | None,
                     who: Identity, source: str = "api") -> list[dict[str, Any]]:
    """Score ``images`` with model ``name`` -> the ``results`` entries, each with its ``inspection_id``."""
    arrays = [image for _, image in images]
    with store.lock(name):  # the version named is the one that scores: no change can come in between
        version = station.versions.current(name, store.require(name))
        predictions, level = store.predict(name, arrays, image_threshold, pixel_threshold)
        image_level = decision_levels(store.detector(name).config.post, image_threshold).image
    results = results_json([(upload.name, image) for upload, image in images], predictions, level, fields)
    scored = [Scored(upload, image, prediction,
                     base64.b64decode(result["overlay_png"]) if "overlay_png" in result else None)
              for (upload, image), prediction, result in zip(images, predictions, results)]
    made = station.record(name, version, scored, float(image_level), float(level), who, source)
    for result, record in zip(results, made):
        result["inspection_id"] = record["id"]
    return results
