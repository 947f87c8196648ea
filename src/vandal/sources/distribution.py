"""The image-level distribution source: the image's mean token against the references' Gaussian.

A nearest-patch distance cannot see a change that affects the whole image alike (a texture woven
finer, or turned): every patch still has a near neighbour in the memory. The mean token moves
(:mod:`vandal.scoring.distribution`). This source gives no map; its answer is a decision in units
of its own level (learned from the references: leave-one-out and split nulls), which joins the
calibrated image score by maximum, or is the image score alone (``distribution.mode = "only"``).

Measured on the simulated textile (``benchmarks/bench_textures.py``), the deepest tap separates
global defects best; it is also the narrowest grid, so the Gaussian is cheapest there.

``distribution.mode = "auto"`` drops the source at fit when the references differ from each other
more than one reference's halves do (:meth:`~vandal.scoring.distribution.DistributionModel.parts_differ`):
normal parts then vary globally (KolektorSDD commutators under changing light), and on KolektorSDD
(k = 4, ``benchmarks/bench_surfaces.py``) the source ranked worse than the memory and made most
false alarms. The simulated textile's draws differ less than one draw's halves: the source stays.
A long part laid out in tiles is halved as a whole (every tile halved alike), and with one reference
its tiles against each other stand in for parts (KolektorSDD, seed 0: dropped at k = 4 and k = 1,
image AUROC 0.818 -> 0.874 and 0.563 -> 0.743).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..scoring.distribution import DistributionModel, DistributionTerms
from .base import GraphTerms, HoldOut, ScoreSource, SourceScore

# D above twice the references' null level is flagged: simulated textile k = 1, 3% of good images.
DISTRIBUTION_MARGIN = 2.0
MAX_FOLDS = 16  # leave-one-out null values (each a C x C inverse); split nulls come from every reference
# Fewest deepest-tap tokens whose mean is a statistic: at a 64 px input the grid is 4 x 4 and good draws
# of a synthetic weave scored 0.75 of the level at k = 2 (one more draw and it flags good images).
# 8 x 8 (128 px at stride 16) is the smallest grid the null levels were measured on.
MIN_GRID_TOKENS = 64


class DistributionSource(ScoreSource):
    name = "distribution"
    space = "views"
    map_in_image_score = False
    option = "distribution.mode (--distribution)"

    def __init__(self, config, embedder):
        super().__init__(config, embedder)
        self.model = DistributionModel(MAX_FOLDS, DISTRIBUTION_MARGIN)
        self.mode = config.distribution.mode
        self.exclusive = self.mode == "only"
        self.grid_tokens: int | None = None  # deepest-tap tokens per image, from the first reference

    @classmethod
    def wanted(cls, config, has_references: bool) -> bool:
        return has_references and config.distribution.mode != "off"

    @property
    def reference_count(self) -> int:
        return self.model.references + len(self.model.pending)

    @staticmethod
    def _tokens(item) -> torch.Tensor:
        """The deepest tap of the image's views ``[V, h, w, C]`` (identity views only)."""
        return item.output.taps[-1].float()

    def add(self, reference) -> None:
        # The identity views only: augmented ones would teach it that a turned texture is normal,
        # which is exactly a global defect.
        tokens = self._tokens(reference.item)
        self.grid_tokens = tokens.shape[1] * tokens.shape[2]
        if self.grid_tokens < MIN_GRID_TOKENS:
            if self.exclusive:
                raise ValueError(f"distribution.mode='only' needs a deepest token grid of >= {MIN_GRID_TOKENS} tokens, "
                                 f"got {self.grid_tokens} at a {self._input_side()} px input: raise "
                                 "backbone.image_size, or use distribution.mode='on'")
            return  # finish() drops the source: its mean token would be noise
        shifted = self._shifted(reference.item) if self.reference_count == 0 else None
        self.model.add(tokens, shifted)

    def _shifted(self, item) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The deepest tap of two crops of the image, a quarter token apart diagonally (two backbone
        images). A quarter: a period near the stride changes the mean token most there (half a period
        of a symmetric weave is the same weave again)."""
        image, (_, h, w, _) = item.image, item.output.taps[-1].shape
        view = item.views[0]  # a token spans one view's side / its grid (a tile, not the whole long image)
        dx, dy = (int(round(0.25 * side / n)) for side, n in ((view.x1 - view.x0, w), (view.y1 - view.y0, h)))
        if min(dx, dy) < 1 or image.shape[0] <= 4 * dy or image.shape[1] <= 4 * dx:
            return None
        crops = (image[dy:, dx:], image[:-dy, :-dx])
        first, second = (self._tokens(self.embedder.image(np.ascontiguousarray(c))) for c in crops)
        return first, second

    def finish(self) -> bool:
        tokens = self.grid_tokens
        if tokens is not None and tokens < MIN_GRID_TOKENS:
            warnings.warn(f"the distribution source is off: its deepest token grid has {tokens} tokens at a "
                          f"{self._input_side()} px input (< {MIN_GRID_TOKENS}: the image's mean token is noise "
                          "there); raise backbone.image_size to use it", stacklevel=2)
            return False
        self.model.finish()
        # auto: parts that differ globally among themselves make the mean token no defect signal
        return not (self.mode == "auto" and self.model.parts_differ())

    def _input_side(self) -> int:
        return self.embedder.backbone.image_size

    def score(self, item) -> SourceScore:
        tokens = self._tokens(item)
        decision = self.model.decisions(tokens.reshape(1, -1, tokens.shape[-1]))
        return SourceScore(None, decision=float(decision[0]))

    def score_left_out(self, index: int, item) -> SourceScore:
        """Calibration of the other sources only needs an answer; this source set its own level from
        leave-one-out nulls already (see :class:`~vandal.scoring.distribution.DistributionModel`)."""
        return SourceScore(None, decision=None)

    def hold_out_alone(self, item) -> HoldOut:
        return "neutral"  # its level comes from its own nulls (split, shift) already

    def graph_terms(self) -> GraphTerms:
        if self.model.gaussian is None:
            raise ValueError("the distribution source is not fitted")
        return GraphTerms(decision=DistributionTerms(self.model.gaussian),
                          decision_meta={"level": self.model.level, "margin": self.model.margin})

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def meta(self) -> dict:
        return self.model.meta()

    def load_state_dict(self, state: dict[str, torch.Tensor], meta: dict) -> None:
        self.model.load(state, meta)

    def expected_state(self, meta: dict) -> dict[str, tuple[int | None, ...]]:
        c = self.embedder.backbone.spec.tap_dims[-1]
        return {"sum": (c,), "outer": (c, c), "precision": (c, c)}
