"""What the references say about the product before anything is banked: a texture, or objects.

A texture looks the same everywhere and in several orientations: a token matches best token by token
(neighbourhood 1: a 3 x 3 average blurs the fine structure that local defects break), and augmented
views the texture is invariant to add real normal variation to the memory. An object is neither:
its parts have places, and a flipped part is a defect. The decision is made from the references
themselves (:mod:`vandal.memory.texture`), not from a flag the user must know.

Measured on the simulated textile (``benchmarks/bench_textures.py``, k = 1): local-defect AUROC 0.76
with the object settings, 0.94 with neighbourhood 1 and the invariant views, 0.95 (0.96 at k = 4,
from 0.949) when the memory also weights each tap by its held-out spread (a texture plan's memory,
:mod:`vandal.sources.memory`); MVTec bottle scores a stationarity ratio of ~27 (an object), the
textile ~1.5-3.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from .config import DetectorConfig
from .data.layout import POLICIES, product_policy
from .data.lighting import check_target, lighting_target
from .memory.augment import Transform, augment, paper_transforms, rotation_transforms
from .memory.texture import TEXTURE_LIMIT, invariance_ratios, invariant_transforms, stationarity_ratio

PLAN_REFERENCES = 4  # references whose stationarity is measured (the median decides)
INVARIANCE_REFERENCES = 2  # references whose 11 views are tested for invariance


def transforms_by_name() -> dict[str, Transform]:
    return {t.name(): t for t in paper_transforms() + rotation_transforms()}


@dataclass(frozen=True)
class ViewPlan:
    """How the references are banked. texture: judged a texture; stationarity: the median ratio (None:
    not measured); neighbourhood: the memory's comparison scales; views: the banked transforms' names,
    identity first."""

    texture: bool
    stationarity: float | None
    neighbourhood: tuple[int, ...]
    views: tuple[str, ...]
    resize: str | None = None  # views.resize for every image of the product (None: as configured)
    lighting: tuple[float, float] | None = None  # the references' grey-level (mean, std) images are brought to

    @classmethod
    def configured(cls, config: DetectorConfig, stationarity: float | None = None) -> ViewPlan:
        transforms = paper_transforms() if config.memory.augment else [Transform()]
        if config.memory.rotations:
            transforms += [t for t in rotation_transforms() if t not in transforms]
        return cls(False, stationarity, tuple(config.memory.neighbourhood), tuple(t.name() for t in transforms))

    @property
    def transforms(self) -> list[Transform]:
        known = transforms_by_name()
        return [known[name] for name in self.views]

    def apply(self, config: DetectorConfig) -> DetectorConfig:
        """The config the sources are built with: the planned neighbourhood, and ``memory.texture``
        resolved to the plan's decision (on or off)."""
        texture = "on" if self.texture else "off"
        if tuple(config.memory.neighbourhood) == self.neighbourhood and config.memory.texture == texture:
            return config
        return config.replace(neighbourhood=self.neighbourhood, texture=texture)

    def to_dict(self) -> dict:
        data = asdict(self)
        return {**data, "neighbourhood": list(self.neighbourhood), "views": list(self.views),
                "lighting": None if self.lighting is None else list(self.lighting)}

    @classmethod
    def from_dict(cls, data: dict) -> ViewPlan:
        """A saved plan; raises ValueError naming the field when it is damaged."""
        if not isinstance(data, dict):
            raise ValueError(f"field 'plan' must be an object, got {type(data).__name__}")
        views = data.get("views")
        known = transforms_by_name()
        if not isinstance(views, list) or not views or views[0] != "identity" or any(
                not isinstance(v, str) or v not in known for v in views):
            raise ValueError(f"field 'plan.views' must list known views starting with identity, got {views!r}")
        sizes = data.get("neighbourhood")
        if not isinstance(sizes, list) or not sizes or any(
                isinstance(r, bool) or not isinstance(r, int) or r < 1 or r % 2 == 0 for r in sizes):
            raise ValueError(f"field 'plan.neighbourhood' must list odd sizes >= 1, got {sizes!r}")
        ratio = data.get("stationarity")
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float))
                                  or not np.isfinite(ratio)):
            raise ValueError(f"field 'plan.stationarity' must be a finite number or null, got {ratio!r}")
        if not isinstance(data.get("texture"), bool):
            raise ValueError(f"field 'plan.texture' must be true or false, got {data.get('texture')!r}")
        resize = data.get("resize")  # absent in bundles saved before it was planned
        if resize is not None and resize not in POLICIES:
            raise ValueError(f"field 'plan.resize' must be one of {', '.join(POLICIES)} or null, got {resize!r}")
        lighting = check_target(data.get("lighting"), "plan.lighting")  # absent before it was planned
        return cls(data["texture"], None if ratio is None else float(ratio), tuple(sizes), tuple(views), resize,
                   lighting)


def _first_taps(embedder, images: list[np.ndarray]) -> list[torch.Tensor]:
    """The first tap's token grid ``[h, w, C]`` of each image's first view (batched forwards)."""
    items = [embedder.image(image) for image in images]
    embedder.embed_items(items)
    return [item.output.taps[0][0].float() for item in items]


def stationarity(embedder, images: list[np.ndarray]) -> float | None:
    """Median stationarity ratio of the first references (None: grids too small to cut into cells)."""
    try:
        ratios = [stationarity_ratio(grid) for grid in _first_taps(embedder, images[:PLAN_REFERENCES])]
    except ValueError:
        return None
    return float(np.median(ratios))


def choose_plan(config: DetectorConfig, embedder, images: list[np.ndarray]) -> ViewPlan:
    """Decide from the references how every image of the product is laid out (``views.resize``: auto
    resolved once, :func:`~vandal.data.layout.product_policy`), lit (``views.lighting``,
    :func:`~vandal.data.lighting.lighting_target`) and how they are banked
    (``memory.texture``). Sets the embedder's layout first, so the texture tests see the references as
    they will be banked."""
    resize = product_policy(config.views.resize, [image.shape[:2] for image in images])
    embedder.resize = resize
    embedder.lighting = lighting = lighting_target(config.views.lighting, images)
    return replace(_banking_plan(config, embedder, images), resize=None if resize == "auto" else resize,
                   lighting=lighting)


def _banking_plan(config: DetectorConfig, embedder, images: list[np.ndarray]) -> ViewPlan:
    """``memory.texture`` (auto, on or off) decided from the references."""
    mode = config.memory.texture
    # An object bank (individual on/auto) says the product is objects: auto leaves it as configured.
    if mode == "off" or not images or (mode == "auto" and config.objects.individual != "off"):
        return ViewPlan.configured(config)
    ratio = stationarity(embedder, images)
    if mode == "auto" and (ratio is None or ratio >= TEXTURE_LIMIT):
        return ViewPlan.configured(config, ratio)
    candidates = paper_transforms()
    ratios = []
    for image in images[:INVARIANCE_REFERENCES]:
        views = _first_taps(embedder, list(augment(image, candidates)))
        ratios.append(invariance_ratios(views[0], views, candidates))
    kept = invariant_transforms(ratios, candidates)
    return ViewPlan(True, ratio, (1,), tuple(t.name() for t in kept))
