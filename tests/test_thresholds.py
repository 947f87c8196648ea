import math

import numpy as np
import pytest
import torch

from vandal.scoring.thresholds import cell_maxima, gumbel_level, memory_threshold, pixel_f1_level, synthetic_level


def test_cell_maxima_are_the_maxima_of_each_cell():
    maps = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 8, 8)
    got = cell_maxima(maps, cells=2)
    assert got.tolist() == [27, 31, 59, 63, 91, 95, 123, 127]
    with pytest.raises(ValueError):
        cell_maxima(maps[0], cells=2)


def test_gumbel_level_holds_its_false_alarm_rate():
    rng = np.random.default_rng(0)
    location, scale, blocks, alpha = 1.0, 0.1, 16, 0.05
    fit_sample = rng.gumbel(location, scale, 4000)
    level = gumbel_level(fit_sample, blocks, alpha)
    new_maxima = rng.gumbel(location, scale, (20000, blocks)).max(axis=1)
    assert abs((new_maxima > level).mean() - alpha) < 0.01
    exact = location + scale * (math.log(blocks) - math.log(-math.log(1 - alpha)))
    assert level == pytest.approx(exact, abs=0.01)


def test_synthetic_level_rises_only_for_defects_far_above_the_null():
    assert synthetic_level(1.0, np.full(10, 4.0)) == pytest.approx(2.0)
    assert synthetic_level(1.0, np.full(10, 0.9)) == 1.0
    assert synthetic_level(1.0, np.array([])) == 1.0


def test_memory_threshold_follows_the_spread_and_one_unusual_map_does_not_pin_it():
    rng = np.random.default_rng(1)
    tight = torch.from_numpy(1.0 + 0.01 * rng.random((3, 32, 32))).float()
    loose = torch.from_numpy(1.0 + 0.3 * rng.random((3, 32, 32))).float()
    assert memory_threshold(tight) >= float(tight.max())  # uniform noise: the level clears every held-out value
    assert memory_threshold(loose) - float(loose.max()) > memory_threshold(tight) - float(tight.max())
    # One of four held-out maps shows a region none of the others does: the level rises with the
    # spread it adds to the cell maxima, but is not its maximum.
    maps = torch.from_numpy(1.0 + 0.01 * rng.random((4, 32, 32))).float()
    maps[1, 4:8, 4:8] = 1.5
    level = memory_threshold(maps)
    assert memory_threshold(maps[[0, 2, 3]]) < level < 1.5
    null_maximum = float(maps.max())
    raised = memory_threshold(tight, synthetic_scores=np.full(8, 9.0))
    assert raised == pytest.approx(math.sqrt(float(tight.max()) * 9.0), rel=1e-6)
    assert memory_threshold(maps, synthetic_scores=np.full(8, 9.0)) == pytest.approx(math.sqrt(null_maximum * 9.0))
    # synthetic defects scoring below the unusual map's maximum (fine textures) leave the level alone
    assert memory_threshold(maps, synthetic_scores=np.full(8, 1.2)) == level


def test_pixel_f1_level_separates_defect_pixels_from_normal_ones():
    rng = np.random.default_rng(0)
    masks = [np.zeros((16, 16), bool) for _ in range(3)]
    maps = []
    for mask in masks:
        mask[4:8, 5:9] = True
        maps.append((np.where(mask, 2.0, 0.0) + rng.uniform(0, 0.5, mask.shape)).astype(np.float32))
    normal = [rng.uniform(0, 0.9, (32, 32))]  # a normal map reaching higher than the defect images' background
    level = pixel_f1_level(maps, masks, normal)
    lowest_defect = min(float(m[k].min()) for m, k in zip(maps, masks))
    assert 0.9 <= level < lowest_defect  # every defect pixel masked, no normal one
    assert all(((m > level) == k).all() for m, k in zip(maps, masks))
    assert pixel_f1_level(maps, [np.zeros((16, 16), bool)] * 3) is None
