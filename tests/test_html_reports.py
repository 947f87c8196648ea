"""HTML reports: ``vandal predict --report`` and ``vandal evaluate``'s report.html, their curves and figures."""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vandal.cli.main import app
from vandal.evaluation.curves import image_curves, pixel_curves
from vandal.evaluation.report_cells import misses
from vandal.evaluation.svg import line_chart
from vandal.metrics import auroc
from vandal.outputs.html import Row, ordered, read_rows

from synthetic import plant_defect, texture

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


def linked_files(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', page)


def assert_offline(page: str) -> None:
    assert not [link for link in linked_files(page) if "://" in link], "self-contained: nothing from elsewhere"
    assert "<script" not in page


def trapezoid(points: list[list[float]]) -> float:
    x, y = np.asarray(points).T
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


# ---------------------------------------------------------------------------- predict --report


def test_predict_report_flagged_first_with_thumbnails_and_skipped(tmp_path):
    normal, tests = tmp_path / "normal", tmp_path / "tests"
    normal.mkdir()
    tests.mkdir()
    for i in range(2):
        Image.fromarray(texture(i, 96)).save(normal / f"ref{i}.png")
    Image.fromarray(texture(30, 96)).save(tests / "plain.png")
    Image.fromarray(plant_defect(texture(31, 96), 0, radius=12)[0]).save(tests / "scratch.png")
    (tests / "broken.png").write_bytes(b"not an image")
    model, out = tmp_path / "model", tmp_path / "out"
    fitted = runner.invoke(app, ["fit", "--normal", str(normal), "--out", str(model), "--image-size", "64"])
    assert fitted.exit_code == 0, fitted.output
    result = runner.invoke(app, ["predict", str(model), str(tests), "--out", str(out), "--report", "--skip-unreadable"])
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'report.html'}" in result.output
    page = (out / "report.html").read_text()
    assert_offline(page)
    for link in linked_files(page):
        assert (out / link).is_file(), f"relative link {link} must point at a written file"
    assert page.index("scratch.png") < page.index("plain.png"), "flagged images come first"
    assert "broken.png" in page and "Skipped (1)" in page
    assert "<dt>scored</dt><dd>2</dd>" in page and "<dt>flagged anomalous</dt><dd>1</dd>" in page
    assert "0.5 on pred_score" in page and str(model) in page and "efficientnet-lite2 at 64 px" in page
    assert page.count("<img ") == 2


def test_report_rows_use_the_overlay_columns_when_present(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "a.png").write_bytes(b"")
    with open(tmp_path / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "pred_score", "pred_label", "map_file", "overlay_file", "mask_file"])
        writer.writerow(["in/a.png", "0.7", "true", "", "elsewhere/a.png", "masks/a.png"])
        writer.writerow(["in/b.png", "0.2", "false", "maps/b.npy", "", ""])
    rows = read_rows(tmp_path)
    assert (rows[0].overlay, rows[0].mask, rows[0].map_file) == ("elsewhere/a.png", "masks/a.png", None)
    assert (rows[1].overlay, rows[1].mask, rows[1].map_file) == (None, None, "maps/b.npy"), \
        "without the columns, only files that exist are linked"


def test_ordering_flagged_then_score_nan_first():
    rows = [Row("a", 0.2, False, None, None, None), Row("b", 0.9, True, None, None, None),
            Row("c", float("nan"), True, None, None, None), Row("d", 0.4, False, None, None, None),
            Row("e", 0.6, True, None, None, None)]
    assert [r.path for r in ordered(rows)] == ["c", "b", "e", "d", "a"]


# ---------------------------------------------------------------------------- curves and figures


def test_image_curves_are_exact():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = rng.normal(labels * 1.0, 1.0)
    curves = image_curves(labels, scores)
    assert trapezoid(curves["roc"]) == pytest.approx(auroc(labels, scores), abs=1e-4)
    assert curves["roc"][0] == [0.0, 0.0] and curves["roc"][-1] == [1.0, 1.0]
    assert curves["pr"][-1][0] == 1.0 and curves["pr"][-1][1] == pytest.approx(labels.mean(), abs=1e-4)
    perfect = image_curves([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert [0.0, 1.0] in perfect["roc"]
    assert image_curves([0, 0], [0.1, 0.2]) is None, "one class: no curve"


def test_pixel_curves_follow_the_exact_auroc():
    rng = np.random.default_rng(1)
    masks, maps = [], []
    for i in range(6):
        mask = np.zeros((64, 64), bool)
        mask[10 + i: 25 + i, 20:40] = True
        maps.append((rng.normal(0, 1, (64, 64)) + 1.5 * mask).astype(np.float16))
        masks.append(mask)
    curves = pixel_curves(masks, maps)
    exact = auroc(np.concatenate([m.ravel() for m in masks]), np.concatenate([m.ravel() for m in maps]).astype(float))
    assert trapezoid(curves["roc"]) == pytest.approx(exact, abs=0.01)
    assert len(curves["roc"]) <= 200 and len(curves["pr"]) <= 200


def test_misses_are_the_worst_at_the_detectors_decisions():
    labels = np.array([1, 1, 1, 0, 0, 0], bool)
    flags = np.array([True, False, False, True, True, False])
    scores = np.array([0.9, 0.3, 0.1, 0.8, 0.6, 0.2])
    assert misses(labels, flags, scores, worst=4) == {"false_negatives": [2, 1], "false_positives": [3, 4]}
    assert misses(labels, flags, scores, worst=1) == {"false_negatives": [2], "false_positives": [3]}


def test_line_chart_is_svg_with_one_line_per_series():
    svg = line_chart([("k=1 <a&b>", [[0, 0], [0.5, 0.9], [1, 1]]), ("k=2", [[0, 0], [1, 1]])], "ROC", "fpr", "tpr",
                     diagonal=True)
    tree = ElementTree.fromstring(svg)
    assert len(tree.findall("{http://www.w3.org/2000/svg}polyline")) == 2
    assert "k=1 &lt;a&amp;b&gt;" in svg


# ---------------------------------------------------------------------------- vandal evaluate


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mvtec")
    base = root / "weave"
    for sub in ("train/good", "test/good", "test/stain", "ground_truth/stain"):
        (base / sub).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(texture(i, 80)).save(base / f"train/good/{i:03d}.png")
        Image.fromarray(texture(10 + i, 80)).save(base / f"test/good/{i:03d}.png")
        image, mask = plant_defect(texture(20 + i, 80), i, radius=10)
        Image.fromarray(image).save(base / f"test/stain/{i:03d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(base / f"ground_truth/stain/{i:03d}_mask.png")
    return root


def test_evaluate_report_has_tables_curves_and_misses(tree, tmp_path):
    out = tmp_path / "eval"
    args = ["evaluate", "--dataset", "mvtec", "--root", str(tree), "--out", str(out), "--shots", "1", "2",
            "--seeds", "1", "--image-size", "64", "--no-progress", "--no-legacy-pro", "--image-threshold", "1000"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert_offline(page)
    assert "AUROC-cls" in page and "1-shot" in page and "2-shot" in page and "<h2>weave</h2>" in page
    assert page.count("<svg") == 4 and page.count("<polyline") == 8, "image/pixel x ROC/PR, one line per k"
    # At threshold 1000 every defect is missed: the worst false negatives are shown with their overlays.
    overlays = [link for link in linked_files(page) if link.endswith(".png")]
    assert len(overlays) >= 4 and all((out / link).is_file() for link in overlays)
    assert "missed defects (false negatives)" in page and "stain" in page
    (out / "report.html").unlink()
    again = runner.invoke(app, args)  # resumed: nothing recomputed, the report comes back whole
    assert again.exit_code == 0 and "resuming" in again.output
    assert (out / "report.html").read_text().count("<svg") == 4
