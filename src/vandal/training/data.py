"""What adapter training reads: a dataset's test split with masks, planned epoch by epoch.

Every random choice of an epoch (order, which items become mosaics, their members) is drawn up
front by :func:`epoch_plan` from ``(seed, epoch)`` alone, so an epoch is the same whether it runs
straight through, after a ``--resume``, or with any number of loader workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..backbones.base import Preprocessing
from ..data.datasets import CategorySplit, Sample, load_mask, resize_mask
from ..data.images import load_image
from ..data.layout import to_input
from .mosaic import group_by_defect, mosaic_2x2, pick_members

Item = tuple[int, ...]  # one sample index, or four (a mosaic)


@dataclass
class TrainingSamples:
    """The test images of the chosen categories, with each one's class index."""

    samples: list[Sample]
    classes: list[int]  # index into class_names, per sample
    class_names: list[str]


def training_samples(splits: dict[str, CategorySplit], where: str = "the dataset") -> TrainingSamples:
    """Gather the test splits; refuse data without pixel masks (the losses need them)."""
    names = list(splits)
    samples, classes = [], []
    for index, name in enumerate(names):
        samples += splits[name].test
        classes += [index] * len(splits[name].test)
    if not any(s.mask_path is not None for s in samples):
        raise ValueError(
            f"{where} has no anomaly masks in the test split of {', '.join(names) or 'any category'}: adapter "
            "training fits pixel maps to ground-truth masks. Use a dataset with masks (MVTec layout: "
            "ground_truth/<defect>/<name>_mask.png; VisA: the mask column of split_csv/1cls.csv)."
        )
    return TrainingSamples(samples, classes, names)


def epoch_plan(data: TrainingSamples, seed: int, epoch: int, mosaic_prob: float = 0.0) -> list[Item]:
    """The items of epoch ``epoch`` (0-based): a permutation of the samples, each replaced by a
    2x2 mosaic of four same-class samples with probability ``mosaic_prob``."""
    if not 0.0 <= mosaic_prob <= 1.0:
        raise ValueError(f"mosaic probability must be in [0, 1], got {mosaic_prob}")
    rng = np.random.default_rng([seed, epoch])
    per_class: dict[int, dict[str, list[int]]] = {}
    for c in set(data.classes):
        indices = [i for i, k in enumerate(data.classes) if k == c]
        per_class[c] = group_by_defect(data.samples, indices)
    plan: list[Item] = []
    for i in rng.permutation(len(data.samples)):
        if mosaic_prob > 0 and rng.random() < mosaic_prob:
            plan.append(pick_members(rng, per_class[data.classes[i]]))
        else:
            plan.append((int(i),))
    return plan


def _mask_of(sample: Sample, size: int | tuple[int, int]) -> np.ndarray:
    if sample.mask_path is None:
        height, width = (size, size) if isinstance(size, int) else size
        return np.zeros((height, width), dtype=bool)
    return load_mask(sample.mask_path, size)


def load_item(samples: Sequence[Sample], item: Item, size: int,
              prep: Preprocessing) -> tuple[torch.Tensor, torch.Tensor]:
    """One planned item -> (pixels ``[3, S, S]`` normalised, mask ``[S, S]`` float in {0, 1})."""
    if len(item) == 1:
        sample = samples[item[0]]
        return to_input(load_image(sample.path), size, prep), torch.from_numpy(_mask_of(sample, size)).float()
    images = [load_image(samples[i].path) for i in item]
    masks = [_mask_of(samples[i], image.shape[:2]) for i, image in zip(item, images)]
    image, mask = mosaic_2x2(images, masks)
    return to_input(image, size, prep), torch.from_numpy(resize_mask(mask, size)).float()


class PlannedItems(Dataset):
    """A torch view of one epoch's plan, so a DataLoader can decode in worker processes."""

    def __init__(self, data: TrainingSamples, plan: list[Item], size: int, prep: Preprocessing):
        self.data, self.plan, self.size, self.prep = data, plan, size, prep

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        item = self.plan[index]
        pixels, mask = load_item(self.data.samples, item, self.size, self.prep)
        return pixels, mask, self.data.classes[item[0]]
