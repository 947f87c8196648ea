import math

import numpy as np
import pytest
import torch

from vandal.scoring.thresholds import cell_maxima, gumbel_level, memory_threshold, synthetic_level


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


def test_memory_threshold_never_below_a_held_out_value_and_follows_the_spread():
    rng = np.random.default_rng(1)
    tight = torch.from_numpy(1.0 + 0.01 * rng.random((3, 32, 32))).float()
    loose = torch.from_numpy(1.0 + 0.3 * rng.random((3, 32, 32))).float()
    assert memory_threshold(tight) >= float(tight.max())
    assert memory_threshold(loose) - float(loose.max()) > memory_threshold(tight) - float(tight.max())
    raised = memory_threshold(tight, synthetic_scores=np.full(8, 9.0))
    assert raised == pytest.approx(math.sqrt(float(tight.max()) * 9.0), rel=1e-6)
