"""The score-source contract: each scoring method is a small object the detector composes.

A source learns from embedded references one at a time (:meth:`ScoreSource.add`, then
:meth:`ScoreSource.finish`), scores an embedded image (:meth:`ScoreSource.score`), scores a
reference as if it had not been given (:meth:`ScoreSource.score_left_out`, for calibration), and
saves its learned state as tensors plus JSON (:meth:`state_dict`, :meth:`meta`). It never touches
another source or the detector: the detector embeds each image once, asks every source, fuses the
maps, smooths and calibrates (:mod:`vandal.scoring.fusion`).

It also says what its users need to know, so that none of them names a source: how a lone reference
can be held out from itself (:meth:`ScoreSource.hold_out_alone`, for calibration) and what it adds
to an exported graph (:meth:`ScoreSource.graph_terms`, for ONNX export).

Maps live in one of two spaces (``space``):
- ``"views"``: ``[V, S, S]`` per view of the image, in backbone-input pixels; the detector sums the
  view sources, smooths and merges the views back to the original size.
- ``"image"``: ``[H, W]`` at the original size (object-level sources paste per-object maps), already
  smoothed; joined to the merged view map by the source's ``fusion`` rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from torch import nn

if TYPE_CHECKING:
    from ..config import DetectorConfig
    from ..embedding import EmbeddedImage, EmbeddedReference, Embedder


@dataclass
class SourceScore:
    """One source's answer for one image: its map (in the source's space; None for an image-level
    source), its part of the raw image score (None when the source only contributes through its map),
    and its own decision (image-level sources with a level of their own: 1.0 = that level)."""

    map: torch.Tensor | None
    image_score: float | None = None
    decision: float | None = None


@dataclass(frozen=True)
class FixedLevels:
    """Reference-free calibration: the raw values a source alone would call the decision boundary."""

    image: float  # its part of the image score (0 when it only acts through the map maximum)
    pixel: float  # its part of the map
    method: str


# How one reference of a one-reference fit is held out from itself (ScoreSource.hold_out_alone).
HoldOut = Literal["places", "neutral", "none"]


class NotExportableError(ValueError):
    """A detector with a part the ONNX graph does not cover; the message names the option."""


@dataclass
class GraphTerms:
    """What one source adds to the exported graph. Each module takes the backbone's taps of B normalised
    views (``T x [B, h, w, C]`` float32) and is traced into the graph.

    map: taps -> ``[B, S, S]`` raw view map, summed with the other sources' maps before smoothing.
    decision: taps -> ``(delta, pdelta)`` ``[B, C]`` each, an image-level decision's per-view terms: an
    image of V views decides :func:`~vandal.scoring.distribution.decision_of` their view means.
    decision_meta: what running the decision needs besides the graph (``level``, ``margin``), JSON-able.
    """

    map: nn.Module | None = None
    decision: nn.Module | None = None
    decision_meta: dict = field(default_factory=dict)


class ScoreSource:
    """Base class of every score source (see the module docstring)."""

    name: ClassVar[str]
    space: ClassVar[str] = "views"
    map_in_image_score: bool = True  # the fused map's maximum joins the image score (a setting may change it)
    transductive: ClassVar[bool] = False  # scores a whole batch at once (score_batch)
    uses_objects: ClassVar[bool] = False  # needs the image's segmented objects (a segmenter)
    fusion: str = "sum"  # image-space sources: how the map joins the view map
    exclusive: bool = False  # its decision alone is the image score (e.g. distribution.mode = "only")
    option: ClassVar[str] = ""  # the config option that turns it on, for messages (e.g. "text.class_name")

    def __init__(self, config: DetectorConfig, embedder: Embedder):
        self.config = config
        self.embedder = embedder

    @classmethod
    def wanted(cls, config: DetectorConfig, has_references: bool) -> bool:
        """Whether a detector with this config (and references or not) uses this source."""
        raise NotImplementedError

    def carries_over(self, config: DetectorConfig) -> bool:
        """Whether what this source learned stays valid when the detector is refitted with ``config``
        (only state that does not come from the references can)."""
        return False

    # ------------------------------------------------------------- learning
    def add(self, reference: EmbeddedReference) -> None:
        """Learn from one more reference (sources that learn nothing ignore it)."""

    def finish(self) -> bool:
        """All references added: build what scoring needs. Returns whether the source stays active
        (e.g. an ``auto`` object bank on single-object references does not)."""
        return True

    @property
    def reference_count(self) -> int:
        return 0

    # ------------------------------------------------------------- scoring
    def score(self, item: EmbeddedImage) -> SourceScore:
        raise NotImplementedError

    def score_left_out(self, index: int, item: EmbeddedImage) -> SourceScore:
        """Score reference ``index`` (``item``) as if it had not been added; sources that do not
        learn from references score it as any image."""
        return self.score(item)

    def hold_out_alone(self, item: EmbeddedImage) -> HoldOut:
        """How reference ``item`` of a one-reference fit is scored without itself: ``"places"`` (exactly,
        against what it learned from elsewhere in the image), ``"neutral"`` (it learns no places, or sets
        its own level, so holding out changes nothing) or ``"none"`` (calibration then scores small
        perturbations of the reference against the whole memory)."""
        return "none"

    def graph_terms(self) -> GraphTerms:
        """What this source adds to an exported ONNX graph (:class:`GraphTerms`); by default it has none."""
        enabled = f" (turned on by {self.option})" if self.option else ""
        raise NotExportableError(
            f"ONNX export does not cover the {self.name} source{enabled}: refit without that option to export, "
            "or keep the torch bundle (vandal predict MODEL_DIR ...) for it")

    def score_batch(self, items: list[EmbeddedImage], progress: bool = False) -> list[SourceScore]:
        """Transductive sources score a whole batch at once (with a progress bar over their slow
        comparisons when ``progress``); the others one by one."""
        return [self.score(item) for item in items]

    def fixed_levels(self) -> FixedLevels | None:
        """Decision levels with no references to calibrate on (None: the source needs references)."""
        return None

    # ------------------------------------------------------------- state
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def meta(self) -> dict:
        """JSON-able state that is not a tensor (counts, decisions)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor], meta: dict) -> None:
        """Restore what :meth:`state_dict` and :meth:`meta` saved (already checked for shape by the caller)."""

    def expected_state(self, meta: dict) -> dict[str, tuple[int | None, ...]] | None:
        """Tensor names and shapes (None: any size) a saved state with ``meta`` must hold; None: not checked."""
        return None
