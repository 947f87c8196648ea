import copy

import numpy as np
import pytest
from PIL import Image

from vandal.bundle import FORMAT_VERSION, IncompatibleBundleError
from vandal.detector import Detector, NotFittedError
from vandal.metrics import auroc


def test_real_weights_localise_planted_defects(fitted_detector, textures):
    _, tests = textures
    predictions = fitted_detector.predict([image for image, _ in tests])
    maps = np.concatenate([p.anomaly_map.ravel() for p in predictions])
    masks = np.concatenate([mask.ravel() for _, mask in tests])
    assert auroc(masks, maps) >= 0.9
    for prediction, (_, mask) in zip(predictions, tests):
        peak = np.unravel_index(prediction.anomaly_map.argmax(), prediction.anomaly_map.shape)
        assert mask[peak], "the map's maximum must fall inside the defect"


def test_prediction_fields_at_original_size(fitted_detector, textures):
    from synthetic import texture

    wide = np.concatenate([texture(3), texture(4)], axis=1)[:120]  # 120 x 320, another size entirely
    (prediction,) = fitted_detector.predict(wide)
    assert prediction.anomaly_map.shape == (120, 320) and prediction.anomaly_map.dtype == np.float32
    assert prediction.pred_mask.shape == (120, 320) and prediction.pred_mask.dtype == bool
    assert isinstance(prediction.pred_score, float) and isinstance(prediction.pred_label, bool)


def test_decision_separates_normal_from_defective(fitted_detector, textures):
    from synthetic import texture

    _, tests = textures
    normal = fitted_detector.predict([texture(50 + i) for i in range(3)])
    defective = fitted_detector.predict([image for image, _ in tests])
    assert max(p.pred_score for p in normal) < min(p.pred_score for p in defective)
    assert all(p.pred_label for p in defective)
    # Masks cover defect pixels mostly, not the whole image.
    for p, (_, mask) in zip(defective, tests):
        assert p.pred_mask[mask].mean() > 0.3 and p.pred_mask[~mask].mean() < 0.2


def test_scores_do_not_depend_on_other_test_images(fitted_detector, textures):
    _, tests = textures
    together = fitted_detector.predict([image for image, _ in tests])
    alone = fitted_detector.predict(tests[2][0])
    # Batched forwards move the last digits on a GPU (measured 6e-6 relative on an H200): compare at 1e-4.
    assert together[2].pred_score == pytest.approx(alone[0].pred_score, rel=1e-4)


def test_threshold_override(fitted_detector, textures):
    _, tests = textures
    detector = copy.copy(fitted_detector).set_params(image_threshold=1e9, pixel_threshold=1e9)
    assert detector.fitted, "thresholds act at predict time: no refit needed"
    (p,) = detector.predict(tests[0][0])
    assert not p.pred_label and not p.pred_mask.any()


def test_save_load_round_trip_identical(fitted_detector, textures, tmp_path):
    _, tests = textures
    fitted_detector.save(tmp_path / "model")
    loaded = Detector.load(tmp_path / "model", progress=False)
    for a, b in zip(fitted_detector.predict([t for t, _ in tests]), loaded.predict([t for t, _ in tests])):
        assert a.pred_score == b.pred_score
        assert np.array_equal(a.anomaly_map, b.anomaly_map)


def test_load_refuses_other_version_and_other_backbone(fitted_detector, tmp_path):
    import json

    fitted_detector.save(tmp_path / "model")
    config_path = tmp_path / "model" / "detector.json"
    config = json.loads(config_path.read_text())
    config["format_version"] = FORMAT_VERSION + 1
    config_path.write_text(json.dumps(config))
    with pytest.raises(IncompatibleBundleError, match="format"):
        Detector.load(tmp_path / "model")
    config["format_version"] = FORMAT_VERSION
    config["backbone"]["tap_dims"] = [1, 2]
    config_path.write_text(json.dumps(config))
    with pytest.raises(IncompatibleBundleError, match="tap_dims"):
        Detector.load(tmp_path / "model")
    with pytest.raises(IncompatibleBundleError, match="not a saved vandal detector"):
        Detector.load(tmp_path)


def test_misuse_fails_early(tmp_path):
    with pytest.raises(NotFittedError):
        Detector().predict(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="at least one normal image"):
        Detector(image_size=64, progress=False).fit([])
    with pytest.raises(ValueError, match="no text encoder"):
        Detector(image_size=64, class_name="bottle", progress=False).fit([np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(ValueError, match="resize"):
        Detector(resize="stretch").fit([np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(ValueError, match="unknown backbone"):
        Detector(backbone="resnet-9000").fit([np.zeros((8, 8, 3), np.uint8)])


def test_paths_and_pil_inputs(fitted_detector, textures, tmp_path):
    _, tests = textures
    Image.fromarray(tests[0][0]).save(tmp_path / "x.png")
    from_path = fitted_detector.predict(tmp_path / "x.png")[0]
    from_pil = fitted_detector.predict(Image.fromarray(tests[0][0]))[0]
    assert from_path.pred_score == pytest.approx(from_pil.pred_score)
    assert from_path.path == str(tmp_path / "x.png")


def test_clip_few_shot_with_text_round_trip(textures, tmp_path):
    from clip_fixtures import make_tiny_clip

    references, tests = textures
    clip_dir = make_tiny_clip(tmp_path / "clip")
    # distribution on: every source in the round trip (auto may drop it for a random CLIP's features)
    detector = Detector(backbone=clip_dir, image_size=64, class_name="fabric", distribution="on",
                        progress=False).fit(references)
    assert detector.source_names == ["memory", "distribution", "text"]
    before = detector.predict([t for t, _ in tests[:2]])
    detector.save(tmp_path / "model")
    after = Detector.load(tmp_path / "model", progress=False).predict([t for t, _ in tests[:2]])
    for a, b in zip(before, after):
        assert a.pred_score == pytest.approx(b.pred_score, abs=1e-6)
        assert np.allclose(a.anomaly_map, b.anomaly_map, atol=1e-6)
        # text probability (<= 1) plus the map maximum: raw score exceeds the map part alone
        assert a.raw_score > 0


def test_save_refuses_a_file_target_and_load_refuses_an_incomplete_bundle(fitted_detector, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        fitted_detector.save(tmp_path / "file")
    fitted_detector.save(tmp_path / "model")
    assert oct((tmp_path / "model").stat().st_mode & 0o777) == "0o755"
    fitted_detector.save(tmp_path / "model")  # overwriting a bundle works and leaves no backup behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "model"]
    (tmp_path / "model" / "tensors.safetensors").unlink()
    with pytest.raises(IncompatibleBundleError, match="missing"):
        Detector.load(tmp_path / "model")


def test_misuse_of_parameters_fails_at_fit():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="smoothing_sigma"):
        Detector(smoothing_sigma=-1).fit([image])
    with pytest.raises(ValueError, match="class_name"):
        Detector(text_scales="pooled").fit([image])
    with pytest.raises(ValueError, match="image_size"):
        Detector(image_size=0).fit([image])


def test_single_inputs_and_stacks_are_understood(textures, tmp_path):
    references, tests = textures
    Image.fromarray(references[0]).save(tmp_path / "ref.png")
    one = Detector(image_size=64, progress=False).fit(str(tmp_path / "ref.png"))
    assert one.n_references_ == 1
    stacked = Detector(image_size=64, progress=False).fit(np.stack(references))
    assert stacked.n_references_ == 2
    assert len(stacked.predict(np.stack([t for t, _ in tests[:3]]))) == 3


def test_mask_level_comes_from_the_synthetic_defects(fitted_detector, textures, monkeypatch):
    """The pixel level is the one that best outlines the synthetic defects pasted into the held-out
    references, between the held-out maps' extreme-value level and the image level; the planted
    defects' masks find them."""
    import vandal.calibration as calibrating

    calibration = fitted_detector.calibration_
    assert calibration.pixel_threshold <= calibration.image_threshold
    _, tests = textures
    for prediction, (_, truth) in zip(fitted_detector.predict([t for t, _ in tests]), tests):
        assert (prediction.pred_mask & truth).sum() > 0.5 * truth.sum()  # most of the defect is outlined
    seen = []
    real = calibrating.pixel_f1_level
    monkeypatch.setattr(calibrating, "pixel_f1_level", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    references, _ = textures
    refit = Detector(progress=False).fit(references)
    level = refit.calibration_.pixel_threshold
    assert len(seen) == 1 and level == pytest.approx(min(seen[0], refit.calibration_.image_threshold))
