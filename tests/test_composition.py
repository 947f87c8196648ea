"""The composed detector: score sources in a registry, embed once, the scikit-learn contract,
adding references, scoring on the input grid, and NaN never passing as normal."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from vandal.detector import Detector, NotFittedError
from vandal.sources import SOURCES, ScoreSource


def test_registry_sources_honour_the_contract():
    for name, source in SOURCES.items():
        assert issubclass(source, ScoreSource) and source.name == name
        assert source.space in ("views", "image")
        assert callable(source.wanted)


def test_get_set_params_and_clone(fitted_detector):
    params = fitted_detector.get_params()
    assert params["neighbourhood"] == (3,) and params["backbone"] == "efficientnet-lite2"
    assert set(fitted_detector.get_params(deep=False)) == {"config", "device", "batch_size", "progress", "max_pixels",
                                                           "allow_download", "precision"}
    twin = fitted_detector.clone()
    assert twin.config == fitted_detector.config and not twin.fitted
    with pytest.raises(NotFittedError):
        twin.predict(np.zeros((32, 32, 3), np.uint8))
    tuned = copy.copy(fitted_detector).set_params(image_threshold=0.8)
    assert tuned.fitted and tuned.config.post.image_threshold == 0.8
    refit = copy.copy(fitted_detector).set_params(neighbourhood=(1,))
    assert not refit.fitted, "a fit-stage change forgets the fitted state"
    assert fitted_detector.fitted


def test_preset_and_settings_build_the_same_detector():
    by_preset = Detector(preset="embedded", augment=True)
    by_settings = Detector(augment=True)
    assert by_preset.config == by_settings.config
    with pytest.raises(ValueError, match="not both"):
        Detector(by_settings.config, preset="embedded")


class CountingBackbone(torch.nn.Module):
    """Counts the images the wrapped backbone sees."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.images = inner, 0

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)

    def forward(self, pixels):
        self.images += pixels.shape[0]
        return self.inner(pixels)


def test_references_are_embedded_once(textures, monkeypatch):
    """k references, no augmentation, no texture plan: k backbone images for banking and holding out, plus
    the synthetic defects the calibration pastes into them."""
    import vandal.backbones as backbones
    from vandal.calibration import SYNTHETIC_DEFECTS

    references, _ = textures
    seen = []
    real = backbones.create_backbone

    def counting(*args, **kwargs):
        seen.append(CountingBackbone(real(*args, **kwargs)))
        return seen[-1]

    monkeypatch.setattr(backbones, "create_backbone", counting)
    detector = Detector(progress=False, texture="off", distribution="off").fit(references + [references[0][::-1].copy()])
    assert detector.calibration_.method == "held-out (leave-one-out)" and len(detector.calibration_.image_scores) == 3
    assert seen[0].images == 3 + SYNTHETIC_DEFECTS


def test_objects_are_segmented_once_per_reference(monkeypatch):
    from vandal.segmentation import ClassicalSegmenter

    from scenes import capsule_scene

    calls = []
    real = ClassicalSegmenter.__call__

    def counting(self, image):
        calls.append(image.shape)
        return real(self, image)

    monkeypatch.setattr(ClassicalSegmenter, "__call__", counting)
    references = [capsule_scene(seed, size=128)[0] for seed in (1, 2, 3)]
    detector = Detector(individual="on", image_size=128, progress=False).fit(references)
    assert "objects" in detector.source_names
    assert len(calls) == 3  # fit and leave-one-out calibration share each reference's segmentation


def test_add_references_matches_the_memory_of_a_full_fit(textures):
    from synthetic import texture

    references, tests = textures
    extra = [texture(7), texture(8)]
    grown = Detector(progress=False).fit(references).add_references(extra)
    full = Detector(progress=False).fit(references + extra)
    assert grown.n_references_ == full.n_references_ == 4
    state_a, state_b = grown.sources_[0].state_dict(), full.sources_[0].state_dict()
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key])
    a, b = grown.predict(tests[0][0])[0], full.predict(tests[0][0])[0]
    assert a.raw_score == pytest.approx(b.raw_score, rel=1e-6)
    # Old leave-one-out scores were taken against smaller banks: the grown threshold is never lower.
    assert grown.calibration_.image_threshold >= full.calibration_.image_threshold * (1 - 1e-9)
    assert len(grown.calibration_.image_scores) == 4
    with pytest.raises(ValueError, match="at least one image"):
        grown.add_references([])


def test_grid_maps_are_the_input_grid(fitted_detector, textures):
    _, tests = textures
    wide = np.concatenate([tests[0][0], tests[1][0]], axis=1)
    squashed = copy.copy(fitted_detector)
    squashed.embedder_ = copy.copy(fitted_detector.embedder_)
    squashed.embedder_.resize = "squash"
    at_size = squashed.predict_image(wide)
    on_grid = squashed.predict_image(wide, grid=True)
    size = fitted_detector.backbone_.image_size
    assert at_size.anomaly_map.shape == wide.shape[:2] and on_grid.anomaly_map.shape == (size, size)
    assert on_grid.pred_score == pytest.approx(at_size.pred_score, rel=0.05)
    # a product laid out in tiles (auto on long references): its views are not the input grid
    tiled = copy.copy(squashed)
    tiled.embedder_ = copy.copy(fitted_detector.embedder_)
    tiled.embedder_.resize = "tile"
    with pytest.raises(ValueError, match="squash"):
        tiled.predict_image(wide, grid=True)


def test_nan_is_never_normal(fitted_detector, textures, monkeypatch):
    from vandal.sources.memory import MemorySource

    _, tests = textures
    real = MemorySource.score

    def poisoned(self, item):
        answer = real(self, item)
        answer.map[..., :4, :4] = float("nan")
        return answer

    monkeypatch.setattr(MemorySource, "score", poisoned)
    prediction = fitted_detector.predict(tests[0][0])[0]
    assert np.isnan(prediction.pred_score) and prediction.pred_label is True
    assert prediction.pred_mask[np.isnan(prediction.anomaly_map)].all()


def test_thresholds_per_call_leave_the_detector_alone(fitted_detector, textures):
    from vandal.config import ConfigError
    from vandal.prediction import decision_levels
    from vandal.runner import Predictor

    assert isinstance(fitted_detector, Predictor)
    _, tests = textures
    image = tests[0][0]
    before = fitted_detector.config
    usual = fitted_detector.predict(image)[0]
    high = fitted_detector.predict(image, image_threshold=1e6, pixel_threshold=1e6)[0]
    assert not high.pred_label and not high.pred_mask.any() and high.pred_score == usual.pred_score
    low = fitted_detector.predict_image(image, image_threshold=1e-6, pixel_threshold=1e-6)
    assert low.pred_label and low.pred_mask.all()
    assert fitted_detector.config == before, "a call's levels never change the detector"
    with pytest.raises(ConfigError, match="post.image_threshold must be a positive finite number"):
        fitted_detector.predict(image, image_threshold=0.0)  # 0 is refused, never read as "not given"
    levels = decision_levels(before.replace(pixel_threshold=0.7).post, image_threshold=None, pixel_threshold=None)
    assert (levels.image, levels.pixel) == (0.5, 0.7)
