"""The torch module that the ONNX export traces: normalised views -> raw and calibrated maps and scores.

It composes what the fitted detector's sources declare (:meth:`~vandal.sources.ScoreSource.graph_terms`),
so torch and ONNX share the maths and the export names no source: backbone taps
(:class:`~vandal.backbones.Backbone`) -> each source's map term (the memory source's is
:class:`~vandal.memory.graph.BankMap`), summed -> Gaussian smoothing
(:func:`~vandal.scoring.smoothing.gaussian_smooth`) -> calibration
(:class:`~vandal.scoring.levels.Calibration`); at most one source's image-level decision terms
(``dist_delta``, ``dist_pdelta``) ride along.

What stays outside the graph, in the code the torch path runs too: decoding, the resize policy and
its views (:func:`~vandal.data.layout.image_views`), merging the views back to the image's size
(:func:`~vandal.data.layout.merge_views`), the image score on that merged map and its calibration
(:func:`~vandal.prediction.decide`). The graph's own ``pred_score`` is the maximum of one view's
input-grid map (the ``grid`` score): equal to the image score for ``squash`` up to resizing the map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..scoring.distribution import decision_of, shift_of_terms
from ..scoring.levels import DECISION_LEVEL, Calibration
from ..scoring.smoothing import gaussian_smooth
from ..sources.base import GraphTerms, NotExportableError

OUTPUTS = ("pred_score", "anomaly_map", "raw_map", "dist_delta", "dist_pdelta")
EXPORTABLE_BACKBONES = ("efficientnet-lite2", "clip", "dinov2")

__all__ = ["OUTPUTS", "DetectorGraph", "NotExportableError", "SourceTerms", "check_exportable"]


@dataclass
class SourceTerms:
    """A fitted detector's sources' graph terms, gathered (see :func:`check_exportable`)."""

    maps: list[nn.Module]
    decision: GraphTerms | None  # the one source with image-level decision terms, if any
    decision_source: str | None  # its name (the key of its decision in a prediction)
    exclusive: bool  # that decision alone is the image score


def check_exportable(detector) -> SourceTerms:
    """Every source's graph terms, or :class:`NotExportableError` naming the option that added a source
    the graph cannot hold (object banks need a segmenter at run time, mutual batch compares test images,
    text needs a text encoder)."""
    if not detector.fitted:
        raise NotExportableError("the detector is not fitted: fit it (or load a saved bundle) before export")
    kind = detector.backbone_.spec.kind
    if kind not in EXPORTABLE_BACKBONES:
        raise NotExportableError(f"backbone {kind!r} is not exportable; exportable: {', '.join(EXPORTABLE_BACKBONES)}")
    terms = [(source, source.graph_terms()) for source in detector.sources_]
    maps = [t.map for _, t in terms if t.map is not None]
    if not maps:
        raise NotExportableError("ONNX export needs a source with a map (a memory bank): fit the detector on "
                                 "normal images")
    decisions = [(source, t) for source, t in terms if t.decision is not None]
    if len(decisions) > 1:
        raise NotExportableError(f"an exported graph carries one image-level decision; this detector has "
                                 f"{len(decisions)} ({', '.join(s.name for s, _ in decisions)}): refit with one")
    source, decision = decisions[0] if decisions else (None, None)
    return SourceTerms(maps, decision, None if source is None else source.name,
                       bool(source is not None and source.exclusive))


class DetectorGraph(nn.Module):
    """pixels ``[B, 3, S, S]`` (normalised views) -> ``pred_score [B]``, ``anomaly_map [B, S, S]``
    (calibrated, per view), ``raw_map [B, S, S]`` (smoothed, uncalibrated: what
    :func:`~vandal.prediction.decide` merges and scores outside the graph), and the decision terms
    ``dist_delta``, ``dist_pdelta`` ``[B, C]`` (``[B, 1]`` zeros without a decision source)."""

    def __init__(self, detector):
        super().__init__()
        terms = check_exportable(detector)
        self.backbone = detector.backbone_
        self.maps = nn.ModuleList(terms.maps)
        self.sigma = float(detector.config.post.smoothing_sigma)
        self.calibration = Calibration(**detector.calibration_.to_dict())
        self.decision = None if terms.decision is None else terms.decision.decision
        self.decision_meta = {} if terms.decision is None else dict(terms.decision.decision_meta)
        self.decision_source, self.exclusive = terms.decision_source, terms.exclusive

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        taps = [tap.float() for tap in self.backbone(pixels).taps]
        raw = self.maps[0](taps)
        for term in self.maps[1:]:
            raw = raw + term(taps)
        if self.sigma > 0:
            raw = gaussian_smooth(raw, self.sigma)
        score = self.calibration.image(raw.amax(dim=(1, 2)))
        if self.decision is None:
            zeros = raw.new_zeros(raw.shape[0], 1)
            return score, self.calibration.pixel(raw), raw, zeros, zeros
        # Per view; an image of V views decides on its views' mean terms (the runtime averages them), and
        # one view's decision gives the graph's own score.
        delta, pdelta = self.decision(taps)
        decision = decision_of(shift_of_terms(delta, pdelta), self.decision_meta["level"], self.decision_meta["margin"])
        score = torch.maximum(score, DECISION_LEVEL * decision)
        return score, self.calibration.pixel(raw), raw, delta, pdelta
