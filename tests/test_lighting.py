"""Lighting normalisation: decided from the references, applied to every image alike (torch, bundle, ONNX)."""

from __future__ import annotations

import numpy as np
import pytest

from vandal.data.lighting import LIGHTING_LIMIT, check_target, grey_stats, lighting_target, normalise_lighting
from vandal.detector import Detector

from synthetic import plant_defect, texture


def lit(image: np.ndarray, gain: float, offset: float = 0.0) -> np.ndarray:
    return np.clip(image.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)


def test_auto_normalises_only_references_whose_brightness_varies():
    alike = [texture(i) for i in range(4)]
    varied = [lit(texture(i), gain) for i, gain in enumerate((0.7, 0.9, 1.1, 1.3))]
    means = np.array([grey_stats(image)[0] for image in varied])
    assert means.std() / means.mean() > LIGHTING_LIMIT  # the case is what it claims
    assert lighting_target("auto", alike) is None
    target = lighting_target("auto", varied)
    assert target is not None and target[0] == pytest.approx(means.mean())
    assert lighting_target("auto", varied[:1]) is None  # one part shows no variation between parts
    assert lighting_target("on", alike[:1]) == pytest.approx(grey_stats(alike[0]))
    assert lighting_target("off", varied) is None and lighting_target("on", []) is None
    with pytest.raises(ValueError, match="views.lighting"):
        lighting_target("sometimes", alike)


def test_normalising_moves_the_grey_levels_to_the_target_and_keeps_a_flat_image_flat():
    image = lit(texture(3), 0.6, 10)
    out = normalise_lighting(image, (120.0, 30.0))
    mean, std = grey_stats(out)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert mean == pytest.approx(120.0, abs=0.6) and std == pytest.approx(30.0, rel=0.02)
    flat = np.full((8, 8, 3), 77, np.uint8)
    assert (normalise_lighting(flat, (100.0, 20.0)) == 100).all()


@pytest.mark.parametrize("bad", [[1.0], [300.0, 10.0], [100.0, 0.0], ["a", 1.0], [100.0, float("nan")], {}])
def test_a_damaged_saved_target_names_its_field(bad):
    with pytest.raises(ValueError, match="plan.lighting"):
        check_target(bad, "plan.lighting")
    assert check_target(None, "plan.lighting") is None


@pytest.fixture(scope="module")
def relit():
    """Parts under a drifting lamp: the detector brings every image to the references' lighting."""
    references = [lit(texture(i), gain) for i, gain in enumerate((0.7, 0.9, 1.1, 1.3))]
    return Detector(image_size=128, device="cpu", progress=False, lighting="auto").fit(references)


def test_a_relit_normal_part_scores_as_it_would_under_the_references_light(relit):
    assert relit.plan_.lighting is not None
    normal = texture(20)
    scores = [p.pred_score for p in relit.predict([lit(normal, g) for g in (0.75, 1.0, 1.2)])]
    plain = Detector(image_size=128, device="cpu", progress=False).fit(  # off by default
        [lit(texture(i), g) for i, g in enumerate((0.7, 0.9, 1.1, 1.3))])
    assert plain.plan_.lighting is None
    off = [p.pred_score for p in plain.predict([lit(normal, g) for g in (0.75, 1.0, 1.2)])]
    spread_on, spread_off = ((max(v) - min(v)) / max(v) for v in (scores, off))
    assert spread_on < 0.08 and spread_off > 3 * spread_on  # most of the lamp's drift is gone before the backbone
    defect, _ = plant_defect(texture(21), 2)
    assert relit.predict([lit(defect, 0.7)])[0].pred_label


def test_the_target_travels_with_the_bundle_and_the_onnx_file(relit, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from vandal.export import OnnxDetector, export_onnx

    images = [lit(texture(30), 0.7), lit(plant_defect(texture(31), 3)[0], 1.25)]
    want = relit.predict(images)
    relit.save(str(tmp_path / "bundle"))
    loaded = Detector.load(str(tmp_path / "bundle"), device="cpu", progress=False)
    assert loaded.plan_.lighting == pytest.approx(relit.plan_.lighting)
    path = export_onnx(relit, tmp_path / "model.onnx")
    for other in (loaded, OnnxDetector(path, device="cpu", progress=False)):
        for w, g in zip(want, other.predict(images), strict=True):
            assert abs(w.pred_score - g.pred_score) <= 1e-3 and w.pred_label == g.pred_label


def test_flat_references_give_a_target_that_loads_again(tmp_path):
    """Constant references have no grey-level spread: the saved target keeps the least one, so the bundle and
    the ONNX file load (a zero spread was saved, then refused as damaged)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from vandal.export import OnnxDetector, export_onnx

    flat = [np.full((64, 64, 3), value, np.uint8) for value in (100, 150)]
    detector = Detector(image_size=64, progress=False, device="cpu", lighting="auto").fit(flat)
    assert detector.plan_.lighting is not None and detector.plan_.lighting[1] > 0
    detector.save(str(tmp_path / "bundle"))
    loaded = Detector.load(str(tmp_path / "bundle"), device="cpu", progress=False)
    assert loaded.plan_.lighting == pytest.approx(detector.plan_.lighting)
    OnnxDetector(export_onnx(detector, tmp_path / "model.onnx"), device="cpu", progress=False).predict(flat[:1])
