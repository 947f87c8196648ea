"""The torch module that the ONNX export traces: normalised views -> raw and calibrated maps and scores.

It composes the fitted detector's own pieces, so torch and ONNX share the maths:
backbone taps (:class:`~vandal.backbones.Backbone`) -> neighbourhood pooling and nearest-neighbour
search against the memory source's banks (:func:`~vandal.memory.maps.memory_map`, the banks as
initializers, searched by :func:`~vandal.memory.bank.block_distance` over bank blocks) -> upsampling
and sum over taps -> Gaussian smoothing (:func:`~vandal.scoring.text.gaussian_smooth`) ->
calibration (:class:`~vandal.scoring.levels.Calibration`).

What stays outside the graph, in the code the torch path runs too: decoding, the resize policy and
its views (:func:`~vandal.data.layout.image_views`), merging the views back to the image's size
(:func:`~vandal.data.layout.merge_views`), the image score on that merged map and its calibration
(:func:`~vandal.prediction.decide`). The graph's own ``pred_score`` is the maximum of one view's
input-grid map (the ``grid`` score): equal to the image score for ``squash`` up to resizing the map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..memory.bank import MemoryBank
from ..memory.maps import memory_map
from ..scoring.levels import Calibration
from ..scoring.smoothing import gaussian_smooth

# Bank rows per similarity block in the graph: the query side is the whole batch (its size is
# symbolic), so peak memory is batch x tokens per view x GRAPH_BANK_BLOCK x 4 bytes (26 MB per view
# for the 40 x 40 tap of EfficientNet-Lite2 at 320 px), however large the bank.
GRAPH_BANK_BLOCK = 4096
OUTPUTS = ("pred_score", "anomaly_map", "raw_map", "dist_delta", "dist_pdelta")
EXPORTABLE_BACKBONES = ("efficientnet-lite2", "clip", "dinov2")
# Source -> the option that turned it on, for the refusal message.
SOURCE_OPTIONS = {"text": "text.class_name (--class-name)", "objects": "objects.individual (--individual)",
                  "mutual-objects": "mutual.mode (--mutual objects)", "mutual-batch": "mutual.mode (--mutual batch)"}


class NotExportableError(ValueError):
    """A detector with a part the ONNX graph does not cover; the message names the option."""


def check_exportable(detector) -> None:
    """Refuse what the graph does not cover, naming the option: only the global memory bank is exported
    (object banks need a segmenter at run time, mutual batch compares test images, text needs a text
    encoder)."""
    if not detector.fitted:
        raise NotExportableError("the detector is not fitted: fit it (or load a saved bundle) before export")
    others = [name for name in detector.source_names if name not in ("memory", "distribution")]
    if others:
        options = ", ".join(SOURCE_OPTIONS.get(name, name) for name in others)
        raise NotExportableError(
            f"ONNX export covers detectors whose only score source is the global memory bank; this one also "
            f"uses {', '.join(others)} (set by {options}). Refit without that option to export, or keep the "
            "torch bundle (vandal predict MODEL_DIR ...) for it")
    if detector.config.memory.mask_background:
        raise NotExportableError("ONNX export does not cover background masking (memory.mask_background: a PCA per "
                                 "image); refit without it to export, or keep the torch bundle")
    if detector.config.memory.top_fraction is not None:
        raise NotExportableError("ONNX export scores images by the map maximum; this detector scores them by the mean "
                                 "of the highest patch distances (memory.top_fraction, e.g. the anomaly-dino preset): "
                                 "refit with --set memory.top_fraction=none to export, or keep the torch bundle")
    if "memory" not in detector.source_names:
        raise NotExportableError("ONNX export needs a memory bank: fit the detector on normal images")
    kind = detector.backbone_.spec.kind
    if kind not in EXPORTABLE_BACKBONES:
        raise NotExportableError(f"backbone {kind!r} is not exportable; exportable: {', '.join(EXPORTABLE_BACKBONES)}")


class MemoryGraph(nn.Module):
    """pixels ``[B, 3, S, S]`` (normalised views) -> ``pred_score [B]``, ``anomaly_map [B, S, S]``
    (calibrated, per view), ``raw_map [B, S, S]`` (smoothed, uncalibrated: what
    :func:`~vandal.prediction.decide` merges and scores outside the graph), and the distribution
    source's per-view terms ``dist_delta``, ``dist_pdelta`` ``[B, C]`` (``[B, 1]`` zeros without it)."""

    def __init__(self, detector):
        super().__init__()
        check_exportable(detector)
        source = next(s for s in detector.sources_ if s.name == "memory")
        self.backbone = detector.backbone_
        self.neighbourhood = tuple(source.neighbourhood)
        self.tap_weights = None if source.tap_weights is None else tuple(source.tap_weights)
        self.size = detector.embedder_.size
        self.sigma = float(detector.config.post.smoothing_sigma)
        self.calibration = Calibration(**detector.calibration_.to_dict())
        self.keys = list(source.banks.banks)
        for index, key in enumerate(self.keys):
            self.register_buffer(f"bank{index}", source.banks.banks[key].features.detach().float().cpu().contiguous())
        model = next((s.model for s in detector.sources_ if s.name == "distribution"), None)
        self.distribution = model is not None
        if model is not None:  # float32 in the graph: the difference of two means ~1e-3 keeps 4 digits
            self.register_buffer("dist_mean", model.gaussian.mean.float().cpu())
            self.register_buffer("dist_precision", model.gaussian.precision.float().cpu())
            self.dist_scale = 0.5 / (model.level * model.margin)

    def banks(self) -> dict[str, MemoryBank]:
        """The registered banks as the memory source holds them, searched with the graph's blocks."""
        return {key: MemoryBank(getattr(self, f"bank{index}"), blocks=(None, GRAPH_BANK_BLOCK))
                for index, key in enumerate(self.keys)}

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        taps = [tap.float() for tap in self.backbone(pixels).taps]
        raw = memory_map(taps, self.banks(), self.neighbourhood, self.size, self.tap_weights)
        if self.sigma > 0:
            raw = gaussian_smooth(raw, self.sigma)
        score = self.calibration.image(raw.amax(dim=(1, 2)))
        if not self.distribution:
            zeros = raw.new_zeros(raw.shape[0], 1)
            return score, self.calibration.pixel(raw), raw, zeros, zeros
        # Per view: delta = mean token - mu and P delta. An image of V views has D = mean(delta) . mean(P delta)
        # (the runtime averages them); one view's D gives the graph's own score.
        tokens = F.normalize(taps[-1], dim=-1)
        delta = tokens.reshape(tokens.shape[0], -1, tokens.shape[-1]).mean(dim=1) - self.dist_mean
        pdelta = delta @ self.dist_precision
        score = torch.maximum(score, (delta * pdelta).sum(dim=1) * self.dist_scale)
        return score, self.calibration.pixel(raw), raw, delta, pdelta
