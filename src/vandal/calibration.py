"""Calibration on the references only, so one image's score never depends on another test image.

Held-out maps: with two or more references, each of the first :data:`MAX_LOO_REFERENCES` is scored
as a test image against every source without it (leave-one-out; the references were embedded once,
at fit). With one, each source says how it holds the reference out from itself
(:meth:`~vandal.sources.ScoreSource.hold_out_alone`): when one scores its tokens against rows from
elsewhere in the image and the others are unaffected, that is the held-out map (leave-place-out);
when any cannot (object banks, tiled views), calibration falls back to small perturbations of the
reference against the whole memory. With none (zero-shot, mutual),
each source gives a decision level of its own.

Levels (:mod:`vandal.scoring.thresholds`): an extreme-value level of the held-out maps' cell maxima,
raised towards synthetic defects pasted into the held-out references when those score far above
(objects); the perturbed fallback and text scores keep the largest normal score times a margin.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .data.synthetic_anomalies import KINDS, synthetic_anomaly
from .memory.augment import augment, calibration_transforms
from .scoring.fusion import ScoredImage, collect, fuse, fusion_scales
from .scoring.levels import Calibration, calibrate, fixed_calibration
from .scoring.thresholds import memory_threshold

if TYPE_CHECKING:

    from .embedding import EmbeddedImage, Embedder
    from .sources import ScoreSource

MAX_LOO_REFERENCES = 16  # leave-one-out cost grows with k^2; 16 folds are plenty
# Thresholds = largest normal calibration score x margin. Measured on MVTec bottle (k = 1, 2, 4):
# normal test images scored up to ~2.7x the perturbed-reference maximum (k = 1) and ~1.2-1.4x the
# leave-one-out maximum (k >= 2), while defects scored above both margins.
CALIBRATION_MARGIN = {"leave-one-out": 1.25, "held-out": 1.25, "perturbed-reference": 2.5}
SYNTHETIC_DEFECTS = 24  # pasted into the held-out references (cut-paste, Perlin, 1/f noise in turn)
SYNTHETIC_SEED = 1000
# Leave-one-out map maxima below this per tap are float noise (identical references give ~1e-7);
# the smallest real threshold seen is ~4e-3 (a tiny random CLIP), bottle's ~0.1 per tap.
DEGENERATE_DISTANCE = 1e-4


def left_out(sources: list[ScoreSource], index: int, item: EmbeddedImage, sigma: float) -> ScoredImage:
    """Reference ``index`` scored by every source as if it had not been given."""
    return collect(item, [(s, s.score_left_out(index, item)) for s in sources], item.embedder.size, sigma)


class DegenerateReferencesWarning(UserWarning):
    """The references are (near-)identical copies: leave-one-out cannot measure normal variation."""


def _from_scored(sources: list[ScoreSource], scored: list[ScoredImage], method: str, label: str = "",
                 synthetic: list[float] | None = None) -> Calibration:
    """Thresholds from held-out (or perturbed) scores. Held-out maps set the map level by extreme values
    (and the synthetic defects' map maxima); the image level follows it when the image score is the
    map maximum, else (text joins it) the largest normal image score times the margin."""
    scales = fusion_scales(scored) if any(s.fusion == "mean" for s in sources) else None
    fused = [fuse(s, scales) for s in scored]
    images, maxima = [f[1] for f in fused], [float(f[0].amax()) for f in fused]
    calibration = calibrate(images, maxima, method, CALIBRATION_MARGIN[method])
    if method == "held-out":
        level = max(memory_threshold([f[0] for f in fused], np.asarray(synthetic) if synthetic else None), 1e-6)
        image_level = level if all(s.text is None for s in scored) else calibration.image_threshold
        calibration = replace(calibration, pixel_threshold=level, image_threshold=image_level)
    return replace(calibration, scales=list(scales) if scales else None, method=method + label)


def _synthetic(sources: list[ScoreSource], embedder: Embedder, sigma: float, references: list[EmbeddedImage]
               ) -> list[float]:
    """Map maxima of synthetic defects pasted into the held-out references (at the backbone's input
    size: the same share of the image, and cheap on large parts), each scored without its owner.
    Not for object sources (no mean-fusion scales needed: see :func:`calibrate_sources`)."""
    rng = np.random.default_rng(SYNTHETIC_SEED)
    size = embedder.size
    small = [np.asarray(Image.fromarray(r.image).resize((size, size), Image.BILINEAR)) for r in references]
    scales = None
    owners = [j % len(references) for j in range(SYNTHETIC_DEFECTS)]
    items = [embedder.image(synthetic_anomaly(small[owner], rng, KINDS[j % len(KINDS)])[0])
             for j, owner in enumerate(owners)]
    embedder.embed_items(items)  # batched forwards: ~2x faster than one image at a time on 2 cores
    return [float(fuse(left_out(sources, owner, item, sigma), scales)[0].amax()) for owner, item in zip(owners, items)]


def _perturbed(sources: list[ScoreSource], embedder: Embedder, sigma: float, reference: EmbeddedImage,
               label: str = "") -> Calibration:
    """Small perturbations of one reference scored against the whole memory (one view at a time, so
    a large image is never held in several copies)."""
    scored = []
    for view in augment(reference.image, calibration_transforms()):
        item = embedder.image(view)
        scored.append(collect(item, [(s, s.score(item)) for s in sources], embedder.size, sigma))
        del item, view
    return _from_scored(sources, scored, "perturbed-reference", label)


def degenerate(scored: list[ScoredImage], taps: int) -> bool:
    """Leave-one-out maps all (near) zero: every reference has an identical twin among the others."""
    largest = max(max([float(s.view_maps.amax())] + [float(m.amax()) for m, _ in s.image_maps]) for s in scored)
    return largest < DEGENERATE_DISTANCE * taps


def calibrate_sources(sources: list[ScoreSource], embedder: Embedder, sigma: float, references: list[EmbeddedImage],
                      progress: bool = False) -> Calibration:
    """The calibration of fitted ``sources`` from their embedded references (smoothing ``sigma``)."""
    if not references:
        levels = [s.fixed_levels() for s in sources]
        if any(level is None for level in levels):
            raise ValueError("a source that needs references was fitted without any")
        pixel = sum(level.pixel for level in levels)
        image = sum(level.image for level in levels) + (pixel if any(s.map_in_image_score for s in sources) else 0.0)
        return fixed_calibration(image, pixel, " + ".join(level.method for level in levels))
    if len(references) == 1 and not _places_hold_out(sources, references[0]):
        return _perturbed(sources, embedder, sigma, references[0])
    count = min(len(references), MAX_LOO_REFERENCES)
    scored = [left_out(sources, i, references[i], sigma)
              for i in tqdm(range(count), desc="fit: calibrating (held-out references)", disable=not progress)]
    if len(references) >= 2 and degenerate(scored, len(embedder.backbone.spec.taps)):
        warnings.warn("the references are identical (or near-identical) copies, so leaving one out measures no "
                      "normal variation; calibrated on small perturbations of one reference instead. Fit on "
                      "varied normal images for a reliable threshold.", DegenerateReferencesWarning, stacklevel=3)
        return _perturbed(sources, embedder, sigma, references[0], " (references near-identical)")
    # Segmenting every synthetic defect (SAM) would double the fit's costliest step: object banks go without.
    synthetic = (None if any(s.uses_objects for s in sources)
                 else _synthetic(sources, embedder, sigma, references[:count]))
    return _from_scored(sources, scored, "held-out", " (leave-one-out)" if len(references) >= 2 else
                        " (leave-place-out)", synthetic)


def _places_hold_out(sources: list[ScoreSource], reference: EmbeddedImage) -> bool:
    """Whether one reference can be held out from itself: some source leaves out its places, and every
    other one is unaffected by holding out (:meth:`~vandal.sources.ScoreSource.hold_out_alone`)."""
    ways = [s.hold_out_alone(reference) for s in sources]
    return "places" in ways and "none" not in ways


def extend_calibration(old: Calibration, sources: list[ScoreSource], sigma: float, items: list[EmbeddedImage],
                       start: int) -> Calibration:
    """After ``add_references``: the new references' (numbered from ``start``) leave-one-out scores
    join the old calibration scores. Old scores were taken against smaller memories, so they can only
    be larger than they would be now: the thresholds stay conservative (a held-out level never drops;
    it rises to the new held-out maps' extreme-value level if that is higher). Mean-fusion scales stay."""
    room = max(0, MAX_LOO_REFERENCES - len(old.image_scores))
    scored = [left_out(sources, start + j, item, sigma) for j, item in enumerate(items[:max(1, room)])]
    scales = tuple(old.scales) if old.scales else None
    fused = [fuse(s, scales) for s in scored]
    method = "leave-one-out"
    calibration = calibrate(old.image_scores + [f[1] for f in fused],
                            old.map_maxima + [float(f[0].amax()) for f in fused], method, CALIBRATION_MARGIN[method])
    if old.method.startswith("held-out"):
        level = max(old.pixel_threshold, memory_threshold([f[0] for f in fused]))
        image_level = level if all(s.text is None for s in scored) else calibration.image_threshold
        calibration = replace(calibration, pixel_threshold=level, image_threshold=image_level,
                              method="held-out (leave-one-out)")
    return replace(calibration, scales=old.scales)
