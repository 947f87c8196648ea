"""``--engine ray`` on a local 2-worker cluster: the same rows and files as the local engine (predict), the
same results.json and resume (evaluate); how the cores are shared among workers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vandal.cli.main import app
from vandal.engines.ray_engine import Share, worker_share

from synthetic import plant_defect, texture

SCORE_TOLERANCE = 1e-4
# Workers run 1 torch thread each (2 cores, 2 workers); the local runs here too, so convolutions sum in
# the same order and results agree to float rounding (another thread count moves them by ~1e-6).
pytestmark = pytest.mark.usefixtures("one_thread")


def test_worker_share_splits_the_cores():
    assert worker_share({"CPU": 2.0}, 2, "cpu") == Share(2, 1.0, 0.0)
    assert worker_share({"CPU": 16.0}, 3, "auto") == Share(3, 5.0, 0.0)
    assert worker_share({"CPU": 16.0}, None, "cpu").workers == 4  # one per 4 cores by default
    assert worker_share({"CPU": 16.0, "GPU": 2.0}, None, "auto") == Share(2, 8.0, 1.0)
    assert worker_share({"CPU": 8.0, "GPU": 1.0}, 2, "cuda").gpus == 0.5
    share = worker_share({"CPU": 16.0}, 3, "cpu")
    assert share.threads == 5 and share.remote_args()["runtime_env"]["env_vars"]["OMP_NUM_THREADS"] == "5"
    with pytest.raises(RuntimeError, match="no GPU"):
        worker_share({"CPU": 4.0}, 1, "cuda")
    with pytest.raises(ValueError, match="more than the cluster's 2 CPUs"):
        worker_share({"CPU": 2.0}, 3, "cpu")


@pytest.fixture(scope="module")
def ray_cluster():
    """A local cluster of 2 CPUs for this module (the engine joins it instead of starting its own)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def bundle_and_images(tmp_path_factory):
    from vandal.detector import Detector

    root = tmp_path_factory.mktemp("ray")
    model = root / "model"
    # 64 px leaves the distribution source a 4 x 4 token grid, too few tokens for a mean token (it would
    # switch itself off with a warning): the memory alone decides, so labels differ between the images.
    Detector(image_size=64, device="cpu", progress=False, distribution="off").fit([texture(0), texture(1)]).save(
        str(model))
    images = root / "images"
    (images / "a").mkdir(parents=True)
    Image.fromarray(plant_defect(texture(11), 1)[0]).save(images / "defect.png")
    Image.fromarray(texture(60)).save(images / "good.png")
    Image.fromarray(texture(61)[:90]).save(images / "a" / "good.png")  # same name in a subfolder: stem good_1
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return model, images


def _predict(*args: str) -> str:
    result = CliRunner().invoke(app, ["predict", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "predictions.csv").open()))


def test_ray_predict_writes_what_the_local_engine_writes(ray_cluster, bundle_and_images, tmp_path):
    import pyarrow.parquet as pq

    model, images = bundle_and_images
    common = [str(model), str(images), "--recursive", "--save-maps", "--skip-unreadable", "--device", "cpu"]
    _predict(*common, "--out", str(tmp_path / "local"))
    _predict(*common, "--out", str(tmp_path / "ray"), "--engine", "ray", "--num-workers", "2")
    local, ray = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert [r["path"] for r in ray] == [r["path"] for r in local] and len(local) == 3
    assert [r["pred_label"] for r in ray] == [r["pred_label"] for r in local]
    assert "true" in [r["pred_label"] for r in local] and "false" in [r["pred_label"] for r in local]
    assert [r["map_file"] for r in ray] == [r["map_file"] for r in local]
    for want, got in zip(local, ray):
        assert abs(float(want["pred_score"]) - float(got["pred_score"])) <= SCORE_TOLERANCE
    files = {p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*") if p.is_file()}
    assert {p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*") if p.is_file()} == files | {
        Path("predictions.parquet")}
    assert Path("overlays/good_1.png") in files and Path("skipped.csv") in files
    assert (tmp_path / "ray" / "skipped.csv").read_text() == (tmp_path / "local" / "skipped.csv").read_text()
    for want in local:
        a, b = (np.load(tmp_path / run / want["map_file"]) for run in ("local", "ray"))
        assert float(np.abs(a.astype(np.float32) - b.astype(np.float32)).max()) <= 1e-2  # float16 maps
    table = pq.read_table(tmp_path / "ray" / "predictions.parquet").to_pylist()
    assert [row["path"] for row in table] == [r["path"] for r in ray]
    assert all(abs(row["pred_score"] - float(r["pred_score"])) <= 1e-6 for row, r in zip(table, ray))


def test_ray_predict_reads_pyarrow_uris_and_stops_on_unreadable(ray_cluster, bundle_and_images, tmp_path):
    model, images = bundle_and_images
    uri = images.resolve().as_uri()  # file:///...: read through pyarrow's local filesystem
    output = _predict(str(model), uri, "--out", str(tmp_path / "uri"), "--engine", "ray", "--skip-unreadable",
                      "--device", "cpu", "--image-threshold", "100")
    rows = _rows(tmp_path / "uri")
    assert [r["path"] for r in rows] == [f"{uri}/defect.png", f"{uri}/good.png"]
    assert [r["pred_label"] for r in rows] == ["false", "false"]  # --image-threshold reached the workers
    assert "skipped" in output and f"{uri}/broken.png" in (tmp_path / "uri" / "skipped.csv").read_text()
    result = CliRunner().invoke(app, ["predict", str(model), uri, "--out", str(tmp_path / "stop"), "--engine", "ray",
                                      "--device", "cpu"])
    assert result.exit_code != 0 and "broken.png" in str(result.output) + str(result.exception)


def test_ray_evaluate_matches_local_and_resumes(ray_cluster, tmp_path):
    root = tmp_path / "mvtec"
    for c, category in enumerate(("fabric", "weave")):
        for sub in ("train/good", "test/good", "test/scratch", "ground_truth/scratch"):
            (root / category / sub).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(texture(100 * c + i, size=96)).save(root / category / f"train/good/{i}.png")
            Image.fromarray(texture(100 * c + 10 + i, size=96)).save(root / category / f"test/good/{i}.png")
            image, mask = plant_defect(texture(100 * c + 20 + i, size=96), i, radius=10)
            Image.fromarray(image).save(root / category / f"test/scratch/{i}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / category / f"ground_truth/scratch/{i}_mask.png")
    args = ["evaluate", "--dataset", "mvtec", "--root", str(root), "--shots", "1", "2", "--seeds", "1",
            "--image-size", "64", "--no-progress", "--no-legacy-pro", "--device", "cpu"]
    runner = CliRunner()
    local = runner.invoke(app, [*args, "--out", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    ray = runner.invoke(app, [*args, "--out", str(tmp_path / "ray"), "--engine", "ray", "--num-workers", "2"])
    assert ray.exit_code == 0, ray.output
    want, got = (json.loads((tmp_path / run / "results.json").read_text()) for run in ("local", "ray"))
    assert got["config"] == want["config"]
    assert [(r["category"], r["shots"], r["seed"], r["files"]) for r in got["runs"]] == [
        (r["category"], r["shots"], r["seed"], r["files"]) for r in want["runs"]] and len(want["runs"]) == 4
    for a, b in zip(want["runs"], got["runs"]):
        assert b["metrics"] == pytest.approx(a["metrics"], abs=1e-12)  # float summation order only
        assert b["decisions"] == a["decisions"]
    again = runner.invoke(app, [*args, "--out", str(tmp_path / "ray"), "--engine", "ray", "--num-workers", "2"])
    assert again.exit_code == 0 and "resuming: 4 of 4 cells" in again.output
    assert json.loads((tmp_path / "ray" / "results.json").read_text())["runs"] == got["runs"]  # nothing recomputed
