import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vandal.memory.augment as augment_module
from vandal.memory.augment import (
    Transform,
    apply_transform,
    augment,
    calibration_transforms,
    paper_transforms,
)


def _whole_image_warp(image, transform):
    """The one-shot reference: float copy of the whole image, affine_grid, grid_sample, rounding."""
    out = image[:, ::-1] if transform.flip_h else image
    out = out[::-1] if transform.flip_v else out
    height, width = out.shape[:2]
    tensor = torch.from_numpy(out.copy()).permute(2, 0, 1)[None].float()
    cos, sin, aspect = math.cos(transform.angle), math.sin(transform.angle), width / height
    theta = torch.tensor([[cos, -sin / aspect, -2 * transform.shift_x],
                          [sin * aspect, cos, -2 * transform.shift_y]], dtype=torch.float32)[None]
    grid = F.affine_grid(theta, list(tensor.shape), align_corners=False)
    warped = F.grid_sample(tensor, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return warped[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


@pytest.mark.parametrize("shape", [(40, 40), (23, 71), (90, 31)])
def test_banded_warp_is_bit_identical_to_the_whole_image_warp(shape, monkeypatch):
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    monkeypatch.setattr(augment_module, "WARP_BAND_BYTES", shape[1] * 8 * 3)  # bands of 3 rows
    for transform in paper_transforms()[1:9] + calibration_transforms() + [Transform(angle=0.3, flip_h=True)]:
        assert np.array_equal(apply_transform(image, transform), _whole_image_warp(image, transform)), transform


def test_flips_and_identity():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert apply_transform(image, Transform()) is image
    assert np.array_equal(apply_transform(image, Transform(flip_h=True)), image[:, ::-1])
    assert np.array_equal(apply_transform(image, Transform(flip_v=True)), image[::-1])


def test_augment_makes_views_one_at_a_time():
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    views = augment(image, paper_transforms())
    assert not isinstance(views, list)  # lazy: a large image's 11 views never sit in memory together
    assert len(list(views)) == 11
