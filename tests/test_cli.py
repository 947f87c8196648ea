import csv

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vandal.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def folders(tmp_path_factory, textures):
    root = tmp_path_factory.mktemp("cli")
    references, tests = textures
    normal = root / "normal"
    normal.mkdir()
    for i, image in enumerate(references):
        Image.fromarray(image).save(normal / f"ref{i}.png")
    (normal / "notes.txt").write_text("not an image")
    # Two inputs share a file name in different folders.
    for sub in ("a", "b"):
        (root / "test" / sub).mkdir(parents=True)
    Image.fromarray(tests[0][0]).save(root / "test" / "a" / "x.png")
    Image.fromarray(tests[1][0]).save(root / "test" / "b" / "x.png")
    return root


@pytest.fixture(scope="module")
def model_dir(folders):
    out = folders / "model"
    result = runner.invoke(app, ["fit", "--normal", str(folders / "normal"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "ignored 1 non-image file" in result.output
    return out


def read_rows(path):
    with open(path) as handle:
        return list(csv.reader(handle))


def test_fit_then_predict_writes_csv_overlays_masks_and_maps(folders, model_dir, tmp_path):
    a, b = folders / "test" / "a" / "x.png", folders / "test" / "b" / "x.png"
    result = runner.invoke(app, ["predict", str(model_dir), str(a), str(b), "--out", str(tmp_path), "--save-maps"])
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "predictions.csv")
    assert rows[0] == ["path", "pred_score", "pred_label", "overlay_file", "mask_file", "map_file"]
    assert [r[0] for r in rows[1:]] == [str(a), str(b)]
    assert [r[3] for r in rows[1:]] == ["overlays/x.png", "overlays/x_1.png"]  # each row names its files
    assert all((tmp_path / r[3]).is_file() and (tmp_path / r[4]).is_file() for r in rows[1:])
    map_files = [r[5] for r in rows[1:]]
    assert len(set(map_files)) == 2, "two inputs named x.png must get distinct map files"
    for row in rows[1:]:
        assert row[2] == "true"  # planted defects
        saved = np.load(tmp_path / row[5])
        assert saved.dtype == np.float16 and saved.shape == (160, 160)
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 2
    mask = np.asarray(Image.open(sorted((tmp_path / "masks").glob("*.png"))[0]))
    assert set(np.unique(mask)) <= {0, 255} and mask.shape == (160, 160)
    assert not list(tmp_path.rglob("*.part")), "no half-written files"


def test_predict_without_save_maps_leaves_map_file_empty(folders, model_dir, tmp_path):
    result = runner.invoke(app, ["predict", str(model_dir), str(folders / "test" / "a"), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert read_rows(tmp_path / "predictions.csv")[1][5] == ""


def test_unreadable_input_stops_or_is_skipped(folders, model_dir, tmp_path):
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "zero.png").write_bytes(b"")
    (bad / "junk.jpg").write_bytes(b"\x89PNG garbage")
    Image.fromarray(np.asarray(Image.open(folders / "test" / "a" / "x.png"))).save(bad / "good.png")
    result = runner.invoke(app, ["predict", str(model_dir), str(bad), "--out", str(tmp_path / "o1")])
    assert result.exit_code != 0 and "junk.jpg" in result.output
    result = runner.invoke(app, ["predict", str(model_dir), str(bad), "--out", str(tmp_path / "o2"), "--skip-unreadable"])
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "o2" / "predictions.csv")
    assert [r[0].split("/")[-1] for r in rows[1:]] == ["good.png"]
    skipped = read_rows(tmp_path / "o2" / "skipped.csv")
    assert sorted(r[0].split("/")[-1] for r in skipped[1:]) == ["junk.jpg", "zero.png"]


def test_empty_folder_and_wrong_model_dir(folders, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["fit", "--normal", str(empty), "--out", str(tmp_path / "m")])
    assert result.exit_code != 0 and "no images found" in result.output
    result = runner.invoke(app, ["predict", str(folders / "normal"), str(folders / "test"), "--out", str(tmp_path / "o"),
                                 "--recursive"])
    assert result.exit_code != 0 and "not a saved vandal detector" in result.output


def test_zero_shot_needs_a_text_backbone(folders, tmp_path):
    result = runner.invoke(app, ["predict", "--zero-shot", "--class-name", "bottle", "--backbone", "efficientnet-lite2",
                                 str(folders / "test" / "a"), "--out", str(tmp_path)])
    assert result.exit_code != 0 and "no text encoder" in result.output


def test_zero_shot_with_tiny_clip(folders, tmp_path):
    from clip_fixtures import make_tiny_clip

    clip_dir = make_tiny_clip(tmp_path / "clip")
    result = runner.invoke(app, ["predict", "--zero-shot", "--class-name", "bottle", "--backbone", clip_dir,
                                 str(folders / "test" / "a"), "--out", str(tmp_path / "o"), "--save-maps"])
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "o" / "predictions.csv")
    score = float(rows[1][1])
    assert 0.0 <= score <= 1.0  # zero-shot: a text probability scaled so 0.5 is the decision level
    assert np.load(tmp_path / "o" / rows[1][5]).shape == (160, 160)


def test_fit_records_options_in_the_bundle(folders, tmp_path):
    import json

    out = tmp_path / "m"
    result = runner.invoke(app, ["fit", "--normal", str(folders / "normal"), "--out", str(out), "--neighbourhood", "1,3",
                                 "--smoothing-sigma", "0", "--image-size", "128"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "detector.json").read_text())["config"]
    assert config["memory"]["neighbourhood"] == [1, 3] and config["post"]["smoothing_sigma"] == 0.0
    assert config["backbone"]["image_size"] == 128 and config["backbone"]["taps"] == [8, 16]  # resolved, explicit


def test_zero_shot_mutual_defaults_to_the_embedded_backbone(folders, tmp_path):
    result = runner.invoke(app, ["predict", "--zero-shot", "--mutual", "objects", str(folders / "test" / "a"),
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert len(read_rows(tmp_path / "predictions.csv")) == 2


def test_zero_shot_mutual_batch_scores_images_against_each_other(folders, tmp_path):
    from synthetic import texture

    batch = tmp_path / "batch"
    batch.mkdir()
    for i in range(3):
        Image.fromarray(texture(60 + i)).save(batch / f"n{i}.png")
    Image.fromarray(np.asarray(Image.open(folders / "test" / "a" / "x.png"))).save(batch / "z_defect.png")
    result = runner.invoke(app, ["predict", "--zero-shot", "--mutual", "batch", str(batch), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    rows = read_rows(tmp_path / "o" / "predictions.csv")[1:]
    scores = {r[0].split("/")[-1]: float(r[1]) for r in rows}
    assert len(scores) == 4 and max(scores, key=scores.get) == "z_defect.png"
    assert min(scores.values()) > 0, "batch mode must really compare images, not return zeros"


def test_predict_with_a_bundle_refuses_fit_time_options(folders, model_dir, tmp_path):
    result = runner.invoke(app, ["predict", str(model_dir), str(folders / "test" / "a"), "--out", str(tmp_path),
                                 "--class-name", "bottle"])
    assert result.exit_code != 0 and "--class-name" in result.output and "--zero-shot" in result.output


def test_demo_runs_on_the_packaged_textiles(tmp_path):
    pytest.importorskip("conformal_clip_data")
    result = runner.invoke(app, ["demo", "--shots", "2", "--per-class", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "image AUROC" in result.output
    assert len(read_rows(tmp_path / "predictions.csv")) == 1 + 6  # 2 nominal + 2 per defect kind (2 kinds)
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 6
