"""What one evaluation cell is and what it measures: shared by the runner and the tables."""

from __future__ import annotations

METRIC_KEYS = ("image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap", "pixel_f1max",
               "pixel_aupro", "pixel_aupro_legacy", "vand")


def cell_seeds(shots: int, seeds: int) -> list[int]:
    """Zero-shot has nothing to draw: one run, recorded as seed 0."""
    return [0] if shots == 0 else list(range(seeds))
