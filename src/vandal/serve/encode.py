"""A prediction -> its JSON result, with PNGs (base64) drawn by the CLI's own helpers at the image's
original size: the overlay, the mask, and the calibrated map as 8-bit on the overlays' scale
(0 -> 2 x the pixel threshold, so the threshold is 128).

PNGs come from :func:`vandal.png.png_bytes`, the writer the CLI uses too.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..outputs.visualize import map_image, mask_image, overlay
from ..png import png_bytes
from ..prediction import Prediction
from .errors import ServiceError

PNG_FIELDS = ("mask_png", "overlay_png", "anomaly_map_png")


def parse_include(text: str | None) -> tuple[str, ...]:
    """``?include=`` -> the PNG fields to send (absent: all of them; empty: none)."""
    if text is None:
        return PNG_FIELDS
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in wanted if part not in PNG_FIELDS]
    if unknown:
        raise ServiceError(422, f"query parameter 'include': unknown value {unknown[0]!r}; choose from "
                                f"{', '.join(PNG_FIELDS)} (comma-separated, empty for none)")
    return tuple(dict.fromkeys(wanted))


def png_base64(array: np.ndarray) -> str:
    return base64.b64encode(png_bytes(array)).decode("ascii")


def result_json(name: str, image: np.ndarray, prediction: Prediction, level: float,
                include: Iterable[str]) -> dict[str, Any]:
    """One ``results`` entry; ``level``: the pixel threshold the mask used (the PNGs' scale)."""
    result: dict[str, Any] = {"file": name, "pred_score": float(prediction.pred_score),
                              "pred_label": bool(prediction.pred_label)}
    for field in include:
        if field == "overlay_png":
            result[field] = png_base64(overlay(image, prediction.anomaly_map, level=level, mask=prediction.pred_mask))
        elif field == "mask_png":
            result[field] = png_base64(mask_image(prediction.pred_mask))
        else:
            result[field] = png_base64(map_image(prediction.anomaly_map, level))
    return result


def results_json(images: list[tuple[str, np.ndarray]], predictions: list[Prediction], level: float,
                 include: Iterable[str]) -> list[dict[str, Any]]:
    include = tuple(include)
    return [result_json(name, image, p, level, include) for (name, image), p in zip(images, predictions)]
