"""ONNX export: the graph scores as the torch detector does (synthetic always, bottle when present),
carries what running it needs, refuses what it cannot hold, and runs without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from vandal.detector import Detector  # noqa: E402
from vandal.export import NotExportableError, OnnxDetector, export_onnx  # noqa: E402

from synthetic import plant_defect, texture  # noqa: E402

SCORE_TOLERANCE = 1e-3
MAP_TOLERANCE = 1e-3


def _tests():
    wide = np.concatenate([texture(3), texture(4)], axis=1)[:120]
    return [plant_defect(texture(11), 1)[0], texture(60), wide, texture(5)[:100, :140]]


def _assert_same(torch_predictions, onnx_predictions):
    assert len(torch_predictions) == len(onnx_predictions)
    for want, got in zip(torch_predictions, onnx_predictions):
        assert abs(want.pred_score - got.pred_score) <= SCORE_TOLERANCE, (want.pred_score, got.pred_score)
        assert want.pred_label == got.pred_label
        assert want.anomaly_map.shape == got.anomaly_map.shape
        assert float(np.abs(want.anomaly_map - got.anomaly_map).max()) <= MAP_TOLERANCE


@pytest.fixture(scope="module")
def squash(tmp_path_factory):
    """A default detector (resize auto: squash, decided from these square references; 3 x 3 neighbourhoods,
    smoothing) and its export, at 128 px: the smallest input whose deepest grid (8 x 8) keeps the
    distribution source."""
    detector = Detector(image_size=128, device="cpu", progress=False).fit([texture(0), texture(1)])
    path = export_onnx(detector, tmp_path_factory.mktemp("onnx") / "model.onnx")
    return detector, path


def test_onnx_scores_as_torch(squash):
    detector, path = squash
    images = _tests()
    onnx_detector = OnnxDetector(path, device="cpu", progress=False)
    _assert_same(detector.predict(images), onnx_detector.predict(images))
    assert detector.predict(images)[0].pred_label  # the planted defect is found, so labels compare something


def test_a_loaded_detector_exports_with_an_empty_smoothing_cache(squash, tmp_path):
    from vandal.scoring import smoothing

    detector, _ = squash
    detector.save(str(tmp_path / "model"))
    smoothing.blur_matrix.cache_clear()  # as in a fresh process: the export traces the smoothing first
    loaded = Detector.load(str(tmp_path / "model"), device="cpu", progress=False)
    path = export_onnx(loaded, tmp_path / "model.onnx")
    images = _tests()
    torch_predictions = loaded.predict(images)  # the cache holds real tensors after the trace
    _assert_same(torch_predictions, OnnxDetector(path, device="cpu", progress=False).predict(images))
    _assert_same(torch_predictions, detector.predict(images))


def test_vandal_load_chooses_the_engine(squash, tmp_path):
    import vandal
    from vandal.runner import Predictor

    detector, path = squash
    loaded = vandal.load(path, device="cpu", progress=False)
    assert isinstance(loaded, OnnxDetector) and isinstance(loaded, Predictor)
    with pytest.raises(ValueError, match="vandal.load"):
        Detector.load(str(path), device="cpu", progress=False)
    detector.save(str(tmp_path / "folder.onnx"))  # a bundle folder may carry any name
    bundle = vandal.load(tmp_path / "folder.onnx", device="cpu", progress=False)
    assert isinstance(bundle, Detector) and isinstance(bundle, Predictor)
    assert loaded.source_names == ["memory", "distribution"] and not loaded.transductive


def test_graph_takes_any_batch_and_calibrates_inside(squash):
    import torch

    from vandal.export import DetectorGraph
    from vandal.export.runtime import session

    detector, path = squash
    graph = DetectorGraph(detector).eval()
    run = session(str(path), "cpu", threads=1)
    inputs = torch.cat([detector.embedder_.views(image)[1] for image in _tests()[:3]])
    for batch in (1, 3):
        pred_score, anomaly_map, raw_map, delta, pdelta = run.run(None, {"pixels": inputs[:batch].numpy()})
        with torch.no_grad():
            want = [t.numpy() for t in graph(inputs[:batch])]
        assert pred_score.shape == (batch,) and raw_map.shape == (batch, 128, 128)
        np.testing.assert_allclose(raw_map, want[2], atol=1e-4)
        calibration = detector.calibration_
        np.testing.assert_allclose(anomaly_map, 0.5 * raw_map / calibration.pixel_threshold, rtol=1e-5, atol=1e-6)
        # The graph's own score: the larger of the map's and the distribution source's (one view each).
        model = next(s for s in detector.sources_ if s.name == "distribution").model
        distribution = 0.5 * (delta * pdelta).sum(axis=1) / (model.level * model.margin)
        np.testing.assert_allclose(pred_score, np.maximum(0.5 * raw_map.max(axis=(1, 2)) / calibration.image_threshold,
                                                          distribution), rtol=1e-5)


def test_metadata_is_enough_to_run(squash):
    import onnx

    detector, path = squash
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    for key in ("vandal_version", "format_version", "backbone", "image_size", "mean", "std", "resize",
                "image_threshold", "pixel_threshold", "taps"):
        assert key in props, key
    assert props["backbone"] == "efficientnet-lite2" and json.loads(props["image_size"]) == 128
    assert json.loads(props["image_threshold"]) == detector.calibration_.image_threshold
    assert json.loads(props["taps"]) == [8, 16] and props["resize"] == "squash"  # auto, decided from the square references


def test_threshold_override_and_fixed_settings(squash):
    from vandal.config import ConfigError

    detector, path = squash
    onnx_detector = OnnxDetector(path, device="cpu", progress=False)
    image = _tests()[1]
    score = onnx_detector.predict_image(image).pred_score
    assert onnx_detector.predict_image(image, image_threshold=score / 2).pred_label
    assert not onnx_detector.predict([image], image_threshold=score * 2)[0].pred_label
    onnx_detector.set_params(image_threshold=score / 2)
    assert onnx_detector.predict_image(image).pred_label
    with pytest.raises(ConfigError, match="fixed in the exported graph"):
        onnx_detector.set_params(neighbourhood=(1, 3))


def test_runs_without_torch(squash):
    """The file alone: metadata, numpy, PIL and onnxruntime, torch not importable (squash recipe)."""
    detector, path = squash
    image = _tests()[0]
    want = detector.predict_image(image, grid=True).pred_score
    np.save(path.parent / "image.npy", image)
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["torch"] = None  # any import of torch now fails
        import numpy as np, onnxruntime as ort
        from PIL import Image
        session = ort.InferenceSession({str(path)!r}, providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        size, resample = json.loads(meta["image_size"]), getattr(Image.Resampling, meta["resample"].upper())
        mean, std = np.float32(json.loads(meta["mean"])), np.float32(json.loads(meta["std"]))
        rgb = np.asarray(Image.fromarray(np.load({str(path.parent / "image.npy")!r})).resize((size, size), resample))
        pixels = (rgb / np.float32(255) - mean) / std
        score = session.run(["pred_score"], {{"pixels": pixels.transpose(2, 0, 1)[None].astype(np.float32)}})[0][0]
        print(float(score))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert abs(float(done.stdout.strip()) - want) <= SCORE_TOLERANCE


def test_tile_and_augment_parity(tmp_path):
    """Tiles are merged outside the graph and the image score taken on the merged map, as in torch."""
    detector = Detector(image_size=64, resize="tile", augment=True, neighbourhood=(1, 3), device="cpu",
                        progress=False).fit([texture(0), texture(1)])
    onnx_detector = OnnxDetector(export_onnx(detector, tmp_path / "tile.onnx"), device="cpu", progress=False)
    images = _tests()
    assert len(detector.embedder_.views(images[2])[0]) > 1  # the wide image is tiled
    _assert_same(detector.predict(images), onnx_detector.predict(images))


def test_over_the_single_file_limit(squash, tmp_path, monkeypatch):
    from vandal.export import onnx_export

    detector, _ = squash
    monkeypatch.setattr(onnx_export, "PROTO_LIMIT", 1000)
    with pytest.raises(ValueError, match="--external-data"):
        export_onnx(detector, tmp_path / "big.onnx")
    assert not (tmp_path / "big.onnx").exists()
    path = export_onnx(detector, tmp_path / "big.onnx", external_data=True)
    assert (tmp_path / "big.onnx.data").stat().st_size > path.stat().st_size
    images = _tests()[:2]
    _assert_same(detector.predict(images), OnnxDetector(path, device="cpu", progress=False).predict(images))


def test_refuses_what_the_graph_does_not_hold(tmp_path):
    from clip_fixtures import make_tiny_clip
    from scenes import capsule_scene

    clip = make_tiny_clip(tmp_path / "clip")
    text = Detector(backbone=clip, class_name="bottle", device="cpu", progress=False).fit()
    with pytest.raises(NotExportableError, match="text.class_name"):
        export_onnx(text, tmp_path / "text.onnx")
    mutual = Detector(image_size=64, mutual="objects", device="cpu", progress=False).fit()
    with pytest.raises(NotExportableError, match="mutual.mode"):
        export_onnx(mutual, tmp_path / "mutual.onnx")
    scenes = [capsule_scene(seed, size=160)[0] for seed in (1, 2)]
    objects = Detector(image_size=64, individual="on", device="cpu", progress=False).fit(scenes)
    with pytest.raises(NotExportableError, match="objects.individual"):
        export_onnx(objects, tmp_path / "objects.onnx")
    assert not list(tmp_path.glob("*.onnx"))


def test_clip_memory_only_exports(tmp_path):
    from clip_fixtures import make_tiny_clip

    clip = make_tiny_clip(tmp_path / "clip")
    detector = Detector(backbone=clip, taps=(2, 4), smoothing_sigma=1.5, device="cpu",
                        progress=False).fit([texture(0)])
    onnx_detector = OnnxDetector(export_onnx(detector, tmp_path / "clip.onnx"), device="cpu", progress=False)
    images = _tests()[:2]
    _assert_same(detector.predict(images), onnx_detector.predict(images))


def test_not_a_vandal_model(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "other.onnx"))
    with pytest.raises(ValueError, match="not a vandal ONNX model"):
        OnnxDetector(tmp_path / "other.onnx", device="cpu")


def test_bottle_parity(tmp_path):
    """Real images at the default 320 px: scores within 1e-3, identical labels, maps within 1e-3."""
    from conftest import SHARED_BOTTLE

    if not SHARED_BOTTLE.is_dir():
        pytest.skip("MVTec bottle is not in ../shared")
    references = sorted((SHARED_BOTTLE / "train" / "good").glob("*.png"))[:2]
    tests = [sorted((SHARED_BOTTLE / "test" / kind).glob("*.png"))[0] for kind in ("broken_large", "good",
                                                                                     "contamination")]
    detector = Detector(device="cpu", progress=False).fit(references)
    onnx_detector = OnnxDetector(export_onnx(detector, tmp_path / "bottle.onnx"), device="cpu", progress=False)
    torch_predictions = detector.predict(tests)
    _assert_same(torch_predictions, onnx_detector.predict(tests))
    assert [p.pred_label for p in torch_predictions] == [True, False, True]


def test_cli_export_then_predict_writes_the_same_outputs(tmp_path):
    """`vandal export` then `vandal predict model.onnx`: the torch run's rows and files (pad, no smoothing)."""
    import csv

    from click.testing import CliRunner
    from PIL import Image

    from vandal.cli.main import app

    for folder, images in (("good", [texture(0), texture(1)]), ("test", _tests())):
        (tmp_path / folder).mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image).save(tmp_path / folder / f"{i}.png")
    runner = CliRunner()

    def ok(*args):
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    model, onnx_file = str(tmp_path / "model"), str(tmp_path / "model.onnx")
    ok("fit", "--normal", str(tmp_path / "good"), "--out", model, "--image-size", "64", "--resize", "pad",
       "--smoothing-sigma", "0", "--device", "cpu")
    assert "wrote" in ok("export", model, "--format", "onnx", "--out", onnx_file)
    ok("predict", model, str(tmp_path / "test"), "--out", str(tmp_path / "torch"), "--save-maps", "--device", "cpu")
    ok("predict", onnx_file, str(tmp_path / "test"), "--out", str(tmp_path / "onnx"), "--save-maps", "--device", "cpu")
    rows = [list(csv.DictReader((tmp_path / run / "predictions.csv").open())) for run in ("torch", "onnx")]
    assert [r["path"] for r in rows[1]] == [r["path"] for r in rows[0]] and len(rows[0]) == 4
    assert [(r["pred_label"], r["map_file"]) for r in rows[1]] == [(r["pred_label"], r["map_file"]) for r in rows[0]]
    for want, got in zip(*rows):
        assert abs(float(want["pred_score"]) - float(got["pred_score"])) <= SCORE_TOLERANCE
    listing = [sorted(p.relative_to(tmp_path / run) for p in (tmp_path / run).rglob("*")) for run in ("torch", "onnx")]
    assert listing[0] == listing[1]
    refused = runner.invoke(app, ["predict", onnx_file, str(tmp_path / "test"), "--out", str(tmp_path / "x"),
                                  "--neighbourhood", "1,3"])
    assert refused.exit_code == 2 and "--neighbourhood" in refused.output
