"""Lighting that varies between parts, decided once per product from the references.

When the references' overall brightness differs from part to part (a lamp that drifts, parts that
reflect differently), every image's grey levels are brought to the references' common brightness and
contrast before the backbone: ``out = (image - its mean) * (target std / its std) + target mean``, one
gain and offset for all three channels, so colours keep their ratios. Parts lit alike are left as they
are: normalising them would only hide a defect that darkens or brightens a whole part.

The decision (``views.lighting = auto``): on when the references' mean grey levels vary by more than
:data:`LIGHTING_LIMIT` (coefficient of variation), a limit set between the sets whose parts are lit
alike and a relit copy of KolektorSDD (the README's surfaces section gives the measured variation).
One reference shows no variation between parts: auto leaves it off. The configured default is off:
on a relit copy of KolektorSDD it helped one draw of references and hurt another (README).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config_sections import LIGHTING_MODES

LIGHTING_LIMIT = 0.06  # coefficient of variation of the references' mean grey levels
MIN_STD = 1.0  # grey levels: a flat image keeps its contrast (no division by ~0)


def grey_stats(image: np.ndarray) -> tuple[float, float]:
    """``[H, W, 3]`` uint8 (or float) -> (mean, std) of its grey levels (the channels' mean)."""
    grey = np.asarray(image, dtype=np.float32).mean(axis=-1)
    return float(grey.mean()), float(grey.std())


def lighting_target(mode: str, images: Sequence[np.ndarray]) -> tuple[float, float] | None:
    """The references' common (mean, std) of grey levels when their lighting is normalised, else None.
    ``on``: always (with any reference); ``auto``: when two or more references vary in brightness by more
    than :data:`LIGHTING_LIMIT`; ``off``: never."""
    if mode not in LIGHTING_MODES:
        raise ValueError(f"views.lighting must be one of {', '.join(LIGHTING_MODES)}, got {mode!r}")
    if mode == "off" or not images:
        return None
    stats = np.array([grey_stats(image) for image in images])
    means = stats[:, 0]
    varies = len(images) >= 2 and means.std() > LIGHTING_LIMIT * max(means.mean(), 1e-6)
    if mode == "auto" and not varies:
        return None
    # A flat reference set has no contrast to keep: the least spread a saved target may hold (it stays loadable).
    return float(means.mean()), max(float(stats[:, 1].mean()), MIN_STD)


def normalise_lighting(image: np.ndarray, target: tuple[float, float]) -> np.ndarray:
    """``[H, W, 3]`` uint8 with its grey-level mean and std moved to ``target`` (uint8, clipped)."""
    out = np.asarray(image, dtype=np.float32)  # one float copy: its statistics and the result
    mean, std = grey_stats(out)
    out -= mean
    out *= target[1] / max(std, MIN_STD)
    out += target[0]
    return np.clip(np.rint(out, out=out), 0, 255, out=out).astype(np.uint8)


def check_target(value: object, field: str) -> tuple[float, float] | None:
    """A saved target (null, or [mean, std] grey levels); raises ValueError naming ``field``."""
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) for v in value)
            or not 0 <= value[0] <= 255 or not 0 < value[1] <= 255):
        raise ValueError(f"field '{field}' must be null or [mean, std] grey levels (mean in [0, 255], std in "
                         f"(0, 255]), got {value!r}")
    return float(value[0]), float(value[1])
