"""Drawing the k few-shot reference images (docs/method.md §5)."""

from __future__ import annotations

import numpy as np

from vandal.data.datasets import Sample


def sample_shots(train: list[Sample], k: int, seed: int) -> list[Sample]:
    """``k`` distinct references from ``train``, drawn with ``numpy.random.default_rng(seed)``.

    Without replacement (the reference code drew with replacement, so a shot could repeat).
    The draw is a prefix of one seeded permutation, so for a fixed seed the k-shot set is
    contained in the (k+1)-shot set: results across k differ only by the added shots.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an integer, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1 reference image, got k={k}")
    if k > len(train):
        where = f" of category {train[0].category!r}" if train else ""
        raise ValueError(
            f"asked for k={k} reference images but the training set{where} has only "
            f"{len(train)} normal image(s); lower k or add normal images to train/good"
        )
    order = np.random.default_rng(seed).permutation(len(train))
    return [train[i] for i in order[:k]]
