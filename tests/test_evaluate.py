"""``vandal evaluate`` end to end on a tiny generated MVTec-layout tree (real default backbone, 64 px)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vandal.cli.evaluate import join_list_values
from vandal.cli.main import app
from vandal.evaluation.cells import METRIC_KEYS
from vandal.evaluation.protocol import CategoryAccumulator, MaskCache, to_protocol, transductive_scores

from synthetic import plant_defect, texture

CATEGORIES = ("fabric", "metal_weave")
FAST = ["--image-size", "64", "--seeds", "1", "--no-progress", "--no-legacy-pro"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """2 categories x (4 train/good, 3 test/good, 3 test/scratch with masks), 96x96."""
    root = tmp_path_factory.mktemp("mvtec")
    for c, category in enumerate(CATEGORIES):
        base = root / category
        for sub in ("train/good", "test/good", "test/scratch", "ground_truth/scratch"):
            (base / sub).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(texture(100 * c + i, size=96)).save(base / f"train/good/{i:03d}.png")
        for i in range(3):
            Image.fromarray(texture(100 * c + 10 + i, size=96)).save(base / f"test/good/{i:03d}.png")
            image, mask = plant_defect(texture(100 * c + 20 + i, size=96), i, radius=10)
            Image.fromarray(image).save(base / f"test/scratch/{i:03d}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(base / f"ground_truth/scratch/{i:03d}_mask.png")
    return root


@pytest.fixture
def fit_calls(monkeypatch) -> list[int]:
    """Counts Detector.fit calls (each = one computed cell)."""
    from vandal.detector import Detector

    calls: list[int] = []
    original = Detector.fit

    def counting_fit(self, normal_images=None):
        calls.append(len(list(normal_images or [])))
        return original(self, normal_images)

    monkeypatch.setattr(Detector, "fit", counting_fit)
    return calls


def run(tree: Path, out: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["evaluate", "--dataset", "mvtec", "--root", str(tree), "--out", str(out), *args])
    return result.exit_code, result.output


def load(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def first_run(tree, tmp_path_factory) -> tuple[Path, int, str]:
    """``--shots 0 1`` on both categories, seed 0 (legacy AU-PRO on): the run later tests resume."""
    out = tmp_path_factory.mktemp("first") / "eval"
    code, output = run(tree, out, "--shots", "0", "1", "--image-size", "64", "--seeds", "1", "--no-progress")
    return out, code, output


def copy_of(first_run, tmp_path: Path) -> Path:
    out = tmp_path / "eval"
    shutil.copytree(first_run[0], out)
    return out


def test_end_to_end_writes_documented_outputs(tree, first_run):
    out, code, output = first_run
    assert code == 0, output
    assert "shots 0 skipped" in output and "no text encoder" in output  # text-free default backbone
    doc = load(out)
    assert set(doc) >= {"config", "runs", "mean"}
    config = doc["config"]
    assert config["protocol"] == "518" and config["shots"] == [0, 1] and config["seeds"] == 1
    assert config["categories"] == list(CATEGORIES) and config["transductive"] is False
    assert [(r["category"], r["shots"], r["seed"]) for r in doc["runs"]] == [(c, 1, 0) for c in CATEGORIES]
    for r in doc["runs"]:
        assert set(r["metrics"]) == set(METRIC_KEYS)
        assert all(v is None or 0.0 <= v <= 1.0 for v in r["metrics"].values())
        assert r["metrics"]["pixel_auroc"] > 0.5 and r["metrics"]["pixel_aupro_legacy"] is not None
        assert len(r["files"]) == 1 and Path(r["files"][0]).parent == tree / r["category"] / "train" / "good"
    assert set(doc["mean"]) == {"1"} and set(doc["mean"]["1"]["metrics"]) == set(METRIC_KEYS)
    assert doc["mean"]["1"]["seeds"] == [0] and doc["mean"]["1"]["categories"] == 2
    md = (out / "results.md").read_text()
    header = "| category | AUROC-segm | F1-max-segm | AP-segm | PRO-segm | AUROC-cls | F1-max-cls | AP-cls | VAND"
    assert header in md and "**mean**" in md and "±" in md and md in output  # printed too
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["shots"], r["category"]) for r in rows] == [("1", c) for c in CATEGORIES] + [("1", "mean")]
    assert float(rows[-1]["AUROC-cls"]) == pytest.approx(100 * doc["mean"]["1"]["metrics"]["image_auroc"], abs=0.051)


def test_interrupted_run_resumes_with_only_new_cells(tree, first_run, tmp_path, monkeypatch, fit_calls):
    import vandal.evaluation.run as evaluation

    out = copy_of(first_run, tmp_path)
    finished = {r["category"]: r["finished_at"] for r in load(out)["runs"]}
    real_run_cell = evaluation.run_cell
    computed = []

    def dying_run_cell(*args, **kwargs):
        if computed:
            raise KeyboardInterrupt  # killed while computing the second new cell
        computed.append(1)
        return real_run_cell(*args, **kwargs)

    args = ["--shots", "0", "1", "2", "--image-size", "64", "--seeds", "1", "--no-progress"]
    monkeypatch.setattr(evaluation, "run_cell", dying_run_cell)
    assert run(tree, out, *args)[0] != 0
    assert [(r["category"], r["shots"]) for r in load(out)["runs"]] == [
        (CATEGORIES[0], 1), (CATEGORIES[0], 2), (CATEGORIES[1], 1)]  # the finished cell was saved
    monkeypatch.setattr(evaluation, "run_cell", real_run_cell)
    code, output = run(tree, out, *args)
    assert code == 0, output
    assert "resuming: 3 of 6 cells" in output  # 2 zero-shot cells are skipped, never stored
    # Only the two new 2-shot cells were fitted (one before the kill); zero-shot cells are never fitted.
    assert fit_calls == [2, 2]
    doc = load(out)
    assert {r["category"]: r["finished_at"] for r in doc["runs"] if r["shots"] == 1} == finished
    assert set(doc["mean"]) == {"1", "2"}


def test_config_mismatch_is_refused_unless_restart(tree, first_run, tmp_path):
    out = copy_of(first_run, tmp_path)
    args = ["--categories", CATEGORIES[0], "--shots", "1", *FAST]
    code, output = run(tree, out, *args, "--transductive")
    assert code == 2
    assert "other settings" in output and "transductive" in output and "--restart" in output
    assert len(load(out)["runs"]) == 2  # untouched
    code, output = run(tree, out, *args, "--transductive", "--restart")
    assert code == 0, output
    doc = load(out)
    assert doc["config"]["transductive"] is True and "transductive" in doc["config"]["image_score"].lower()
    assert [r["category"] for r in doc["runs"]] == [CATEGORIES[0]]


def test_protocol_native_beside_518(tree, first_run, tmp_path):
    out = tmp_path / "native"
    code, output = run(tree, out, "--categories", CATEGORIES[0], "--shots", "1", "--protocol", "native", *FAST)
    assert code == 0, output
    native = load(out)
    assert native["config"]["protocol"] == "native" and "original" in native["config"]["resolution"]
    at_518 = load(first_run[0])["runs"][0]["metrics"]
    # Same draw and predictions: image metrics agree; pixel metrics are computed at another size.
    assert native["runs"][0]["metrics"]["image_auroc"] == at_518["image_auroc"]
    assert native["runs"][0]["metrics"]["pixel_auroc"] != at_518["pixel_auroc"]
    code, output = run(tree, tmp_path / "bad", "--shots", "1", "--protocol", "256", *FAST)
    assert code == 2 and "'256' is not one of '518', 'native', 'grid'" in output


def test_too_many_shots_is_a_clear_error(tree, tmp_path):
    code, output = run(tree, tmp_path / "eval", "--shots", "8", *FAST)
    assert code == 2 and "fewer normal training images" in output


# ------------------------------------------------------------------ units


def test_join_list_values():
    assert join_list_values(["--shots", "0", "1", "4", "--seeds", "5"]) == ["--shots", "0,1,4", "--seeds", "5"]
    assert join_list_values(["--categories", "a,b", "--out", "x"]) == ["--categories", "a,b", "--out", "x"]
    assert join_list_values(["--shots", "--out"]) == ["--shots", "--out"]


def test_to_protocol_and_masks(tree):
    from vandal.data.datasets import load_mvtec

    amap = np.linspace(0, 1, 96 * 80, dtype=np.float32).reshape(96, 80)
    assert to_protocol(amap, "518").shape == (518, 518) and to_protocol(amap, "518").dtype == np.float16
    assert to_protocol(amap, "native").shape == (96, 80)
    assert np.isfinite(to_protocol(amap * 1e9, "native")).all()  # clipped, never inf
    split = load_mvtec(tree, CATEGORIES[0])[CATEGORIES[0]]
    anomalous = next(s for s in split.test if s.label)
    cache = MaskCache("518")
    big = cache.get(anomalous, (518, 518))
    assert big.shape == (518, 518) and big.dtype == bool and big.any()
    small = cache.get(anomalous, (96, 96))
    assert abs(big.mean() - small.mean()) < 0.01  # same region, resized bilinear then > 0.5


def test_transductive_scores_and_accumulator():
    from vandal.prediction import Prediction

    scores = transductive_scores(np.array([0.2, 0.4, 0.6]), np.array([1.0, 3.0, 2.0]))
    np.testing.assert_allclose(scores, 0.5 * (np.array([0.2, 0.4, 0.6]) + np.array([0.0, 1.0, 0.5])))
    np.testing.assert_allclose(transductive_scores(np.zeros(2), np.ones(2)), 0.0)  # no spread: no NaN

    from vandal.data.datasets import Sample

    acc = CategoryAccumulator("native", MaskCache("native"))
    for i, peak in enumerate((0.1, 0.9, 0.5, 0.7)):
        amap = np.full((8, 8), 0.1, np.float32)
        amap[2, 2] = peak
        acc.add(Sample(Path(f"{i}.png"), 0, None, "good", "x"),
                Prediction(pred_score=1 - peak, anomaly_map=amap, pred_label=False,
                           pred_mask=amap > 0.5, raw_score=peak, text_score=None))
    np.testing.assert_allclose(acc.image_scores(False), [0.9, 0.1, 0.5, 0.3])
    np.testing.assert_allclose(acc.image_scores(True), 0.5 * np.array([0.0, 1.0, 0.5, 0.75]), atol=1e-3)


def test_grid_protocol_keeps_float32_maps_for_the_legacy_aupro(tree):
    from vandal.data.datasets import load_mvtec
    from vandal.metrics import aupro_legacy
    from vandal.prediction import Prediction

    split = load_mvtec(tree, CATEGORIES[0])[CATEGORIES[0]]
    rng = np.random.default_rng(0)
    acc, maps = CategoryAccumulator("grid", MaskCache("grid")), []
    for sample in split.test:
        # Values a float16 cast would move (1 + 1e-4 steps): the legacy thresholds then differ.
        amap = (1 + 1e-4 * rng.integers(0, 400, (64, 64))).astype(np.float32)
        maps.append(amap)
        acc.add(sample, Prediction(pred_score=0.0, anomaly_map=amap, pred_label=False, pred_mask=amap > 2,
                                   raw_score=0.0, text_score=None))
    assert all(m.dtype == np.float32 for m in acc.maps)
    assert acc.metrics()["pixel_aupro_legacy"] == aupro_legacy(acc.masks, maps)
    assert aupro_legacy(acc.masks, [m.astype(np.float16) for m in maps]) != aupro_legacy(acc.masks, maps)


def test_evaluate_adapters_across_categories_without_class_name(tree, tmp_path):
    from clip_fixtures import make_tiny_clip
    from golden_cases import adapters_file

    clip = make_tiny_clip(tmp_path / "clip")
    adapters = adapters_file(clip, tmp_path)
    code, output = run(tree, tmp_path / "eval", "--shots", "0", "--backbone", clip, "--adapters", adapters,
                       "--image-size", "32", "--seeds", "1", "--no-progress", "--no-legacy-pro")
    assert code == 0, output
    runs = load(tmp_path / "eval")["runs"]
    assert sorted(r["category"] for r in runs) == sorted(CATEGORIES)


def test_summary_means_and_stds():
    from vandal.evaluation.tables import markdown, summarise, to_csv

    def run_of(category, seed, value):
        return {"category": category, "shots": 1, "seed": seed,
                "metrics": {k: (None if k == "pixel_aupro_legacy" else value) for k in METRIC_KEYS}}

    runs = [run_of("a", 0, 0.90), run_of("a", 1, 0.80), run_of("b", 0, 0.70), run_of("b", 1, 0.50),
            run_of("a", 2, 0.10)]  # seed 2 was not asked for: ignored
    summary = summarise(runs, ["a", "b"], [0, 1], seeds=2)
    assert list(summary) == [1]  # no zero-shot cell finished
    rows = summary[1]["rows"]
    assert rows[0]["mean"]["image_auroc"] == pytest.approx(0.85) and rows[0]["std"]["image_auroc"] == pytest.approx(0.05)
    mean = summary[1]["mean"]
    assert mean["metrics"]["vand"] == pytest.approx(0.725)  # mean over categories of the seed means
    assert mean["std"]["vand"] == pytest.approx(0.075)  # std over seeds of the category means (0.8, 0.65)
    assert mean["metrics"]["pixel_aupro_legacy"] is None
    config = {"dataset": "mvtec", "backbone": "x", "protocol": "518", "resolution": "518x518", "image_score": "s"}
    assert "| a | 85.0 ± 5.0 |" in markdown(summary, config)
    assert to_csv(summary).splitlines()[-1].startswith("1,mean,2,72.5,7.5,")


def test_python_api_resumes_a_cli_run(tree, first_run, tmp_path, fit_calls):
    from vandal.config import from_dict
    from vandal.evaluation import EvalConfig, evaluate

    out = copy_of(first_run, tmp_path)
    config = EvalConfig("mvtec", str(tree), shots=[1], seeds=1, detector=from_dict({"image_size": 64}))
    doc = evaluate(config, out, progress=False, echo=lambda _: None)
    assert fit_calls == [] and len(doc["runs"]) == 2  # same settings, written as JSON: nothing recomputed


def test_a_transductive_cell_shows_its_comparisons_with_progress_on(tree, tmp_path):
    """musc compares the whole test set at once (minutes on a CPU): that work has a bar, as predict's has."""
    code, output = run(tree, tmp_path / "eval", "--shots", "0", "--preset", "musc", "--categories", "fabric",
                       "--image-size", "64", "--progress", "--no-legacy-pro")
    assert code == 0, output
    assert "comparing 6 images with each other" in output
    code, output = run(tree, tmp_path / "quiet", "--shots", "0", "--preset", "musc", "--categories", "fabric",
                       "--image-size", "64", "--no-progress", "--no-legacy-pro")
    assert code == 0 and "comparing" not in output
