"""What to evaluate: the data, the cells, the protocol, and the detector configuration."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import DetectorConfig

PROTOCOLS = ("518", "native", "grid")
PAPER_SIZE = 518
# Which cells a run asks for, and descriptive fields: everything else in the config changes results
# and must match on resume.
CELL_KEYS = ("categories", "shots", "seeds")
UNCOMPARED_KEYS = CELL_KEYS + ("device", "image_score", "resolution", "version", "backbone", "preset")


@dataclass
class EvalConfig:
    """dataset/root: the layout (mvtec, visa, folder) and its root. shots: k per cell (0: zero-shot).
    seeds: k-shot draws 0..seeds-1. protocol: ``518`` (maps and masks at 518 x 518, the papers),
    ``native`` (original size, MVTec) or ``grid`` (the detector's own input grid, masks resized and
    thresholded at 127 as the APRIL-GAN reference). text: prompts with the category name when the
    backbone has a text encoder. humanize: ``metal nut`` rather than ``metal_nut`` in prompts.
    transductive: the reference code's test-set min-max image score (few-shot cells).
    detector: every detector setting (a preset, a config file, flags)."""

    dataset: str
    root: str
    categories: list[str] | None = None
    shots: list[int] = field(default_factory=lambda: [0, 1, 2, 4])
    seeds: int = 5
    protocol: str = "518"
    text: bool = True
    humanize: bool = False
    transductive: bool = False
    legacy_pro: bool = True
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    device: str = "auto"
    preset: str | None = None

    def check(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not self.shots or any(k < 0 for k in self.shots):
            raise ValueError(f"shots must be non-negative integers, got {self.shots}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.detector.mutual.mode is not None and any(self.shots):
            raise ValueError("mutual comparison is reference-free: evaluate it with --shots 0")
        if self.protocol == "grid" and self.detector.views.resize not in ("squash", "auto"):
            raise ValueError("--protocol grid scores the detector's input grid, which only --resize squash (or "
                             "auto on near-square images) maps one to one onto the image")

    def resolution(self) -> str:
        return {"518": f"{PAPER_SIZE}x{PAPER_SIZE}", "native": "original image size",
                "grid": "the detector's input grid (masks resized, > 127)"}[self.protocol]

    def to_dict(self) -> dict[str, Any]:
        """The config as ``results.json`` records it (JSON types, so a reloaded one compares equal)."""
        from .. import __version__

        data = asdict(self)
        data["root"] = str(Path(self.root).expanduser().resolve())
        data["detector"] = self.detector.to_dict()
        data["backbone"] = self.detector.backbone.name
        data["image_score"] = ("TRANSDUCTIVE: 0.5 * (text probability + test-set min-max normalised map maximum), "
                               "few-shot cells; zero-shot: pred_score" if self.transductive
                               else "detector pred_score (calibrated on the references only)")
        data["resolution"] = self.resolution()
        data["version"] = __version__
        return json.loads(json.dumps(data))


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a config that must match for cells to be comparable (not which cells)."""
    return {k: v for k, v in config.items() if k not in UNCOMPARED_KEYS}
