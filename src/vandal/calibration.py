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

import math
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .data.layout import crop_view
from .data.synthetic_anomalies import KINDS, synthetic_anomaly
from .memory.augment import augment, calibration_transforms
from .scoring.fusion import ScoredImage, collect, fuse, fusion_scales
from .scoring.levels import Calibration, calibrate, fixed_calibration
from .scoring.thresholds import memory_threshold, pixel_f1_level

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
                 synthetic: Synthetic | None = None) -> Calibration:
    """Thresholds from held-out (or perturbed) scores. Held-out maps set the map level by extreme values
    (and the synthetic defects' map maxima); the image level follows it when the image score is the
    map maximum, else (text joins it) the largest normal image score times the margin. The pixel level
    is the one that best outlines the synthetic defects (:func:`pixel_level`)."""
    scales = fusion_scales(scored) if any(s.fusion == "mean" for s in sources) else None
    fused = [fuse(s, scales) for s in scored]
    images, maxima = [f[1] for f in fused], [float(f[0].amax()) for f in fused]
    calibration = calibrate(images, maxima, method, CALIBRATION_MARGIN[method])
    if method == "held-out":
        normal = [f[0] for f in fused]
        maxima_synthetic = np.asarray([float(m.amax()) for m in synthetic.maps]) if synthetic else None
        level = max(memory_threshold(normal, maxima_synthetic), 1e-6)
        image_level = level if all(s.text is None for s in scored) else calibration.image_threshold
        pixel = pixel_level(normal, synthetic, memory_threshold(normal), level) if synthetic else level
        calibration = replace(calibration, pixel_threshold=pixel, image_threshold=image_level)
    return replace(calibration, scales=list(scales) if scales else None, method=method + label)


@dataclass
class Synthetic:
    """Synthetic defects scored without their owner: raw maps ``[S, S]`` and their masks (bool ``[S, S]``)."""

    maps: list[torch.Tensor]
    masks: list[np.ndarray]


def _synthetic(sources: list[ScoreSource], embedder: Embedder, sigma: float, references: list[EmbeddedImage]
               ) -> Synthetic:
    """Synthetic defects pasted into the held-out references, each scored without its owner. Each is
    pasted into one of its owner's views (the whole image when squashed, one tile of a long one) cut
    out and resized to the backbone's input: a square the size of one input is one view under every
    layout, so the defect is seen at the scale the product's images are (a whole long image squashed
    into one input would be seen 2-3x smaller along its length than the tiled references, and score
    as a defect everywhere). Cheap on large parts. Not for object sources (no mean-fusion scales
    needed: see :func:`calibrate_sources`)."""
    rng = np.random.default_rng(SYNTHETIC_SEED)
    size = embedder.size
    scales = None
    owners = [j % len(references) for j in range(SYNTHETIC_DEFECTS)]
    pasted = []
    for j, owner in enumerate(owners):
        views = references[owner].views
        view = views[(j // len(references)) % len(views)]
        small = Image.fromarray(crop_view(references[owner].image, view)).resize((size, size), Image.Resampling.BILINEAR)
        pasted.append(synthetic_anomaly(np.asarray(small), rng, KINDS[j % len(KINDS)]))
    items = [embedder.image(image) for image, _ in pasted]
    embedder.embed_items(items)  # batched forwards: ~2x faster than one image at a time on 2 cores
    maps = [fuse(left_out(sources, owner, item, sigma), scales)[0] for owner, item in zip(owners, items)]
    return Synthetic(maps, [mask for _, mask in pasted])


def pixel_level(normal: list[torch.Tensor], synthetic: Synthetic, nominal: float, image_level: float) -> float:
    """The mask level: the one whose masks best outline the synthetic defects (pixel F1 against their
    masks, the held-out normal maps' pixels counting as false alarms), between the ``nominal``
    extreme-value level of the held-out maps and the image level. Uncapped, it rose above the image
    level on MVTec bottle (k = 4: pixel F1 at the own level 0.748 -> 0.423; the pasted defects score
    far above normal, and their best level sits high on the smoothed maps' shoulders)."""
    side = synthetic.maps[0].shape[-1] if synthetic.maps else 1
    # normal maps thinned to about the synthetic images' pixel count, so each image weighs alike
    thinned = [m[::step, ::step] for m in normal
               for step in [max(1, math.ceil(math.sqrt(m.numel() / max(1, side * side))))]]
    best = pixel_f1_level([m.float().cpu().numpy() for m in synthetic.maps], synthetic.masks,
                          [m.float().cpu().numpy() for m in thinned])
    if best is None:
        return image_level
    return max(min(best, image_level), min(nominal, image_level), 1e-6)


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
        maybe_levels = [s.fixed_levels() for s in sources]
        levels = [level for level in maybe_levels if level is not None]
        if len(levels) < len(maybe_levels):
            raise ValueError("a source that needs references was fitted without any")
        pixel = float(sum(level.pixel for level in levels))
        image = float(sum(level.image for level in levels)) + (pixel if any(s.map_in_image_score for s in sources) else 0.0)
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
        # the image and the mask level each rise to the new held-out maps' extreme-value level, never drop
        nominal = memory_threshold([f[0] for f in fused])
        image_level = (max(old.image_threshold, nominal) if all(s.text is None for s in scored)
                       else calibration.image_threshold)
        calibration = replace(calibration, pixel_threshold=max(old.pixel_threshold, nominal),
                              image_threshold=image_level, method="held-out (leave-one-out)")
    return replace(calibration, scales=old.scales)
