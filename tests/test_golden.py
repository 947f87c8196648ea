"""Outputs recorded before the composition refactor (issue 8) stay identical: every configuration of
the golden matrix (``golden_cases.py``) gives the same scores, thresholds and maps within 1e-6."""

from __future__ import annotations

import json

import numpy as np
import pytest

from golden_cases import GOLDEN_DIR, cases, map_sample

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def two_threads():
    """The goldens were recorded with 2 torch threads; another count moves convolutions by ~1e-6."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def recorded():
    return json.loads((GOLDEN_DIR / "golden.json").read_text()), np.load(GOLDEN_DIR / "maps.npz")


def _close(actual, expected, what):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    # Relative for large values (a map may reach ~10), absolute near zero.
    assert np.allclose(actual, expected, rtol=TOLERANCE, atol=TOLERANCE), (
        f"{what}: max difference {np.abs(actual - expected).max():.3g}")


def test_golden_matrix(recorded, tmp_path_factory, two_threads):
    from vandal.detector import Detector

    golden, maps = recorded
    seen = []
    for name, settings, references, tests in cases(tmp_path_factory.mktemp("golden")):
        if name not in golden:
            continue
        seen.append(name)
        detector = Detector(**settings, device="cpu", progress=False).fit(references or None)
        predictions = detector.predict(tests)
        want = golden[name]
        _close([p.pred_score for p in predictions], want["pred_score"], f"{name} pred_score")
        _close([p.raw_score for p in predictions], want["raw_score"], f"{name} raw_score")
        _close(detector.calibration_.image_threshold, want["image_threshold"], f"{name} image threshold")
        _close(detector.calibration_.pixel_threshold, want["pixel_threshold"], f"{name} pixel threshold")
        assert [p.pred_label for p in predictions] == want["pred_label"], name
        for i, p in enumerate(predictions):
            _close(map_sample(p.anomaly_map), maps[f"{name}/{i}"], f"{name} map {i}")
    assert len(seen) >= 13, seen
