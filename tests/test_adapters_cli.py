"""``vandal train-adapters`` / ``convert-adapters`` end to end, then ``predict --zero-shot --adapters``."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vandal.backbones import DEFAULT_CLIP, create_backbone
from vandal.cli.main import app
from vandal.metrics import auroc
from vandal.scoring.adapters import AUTHORS_KEY, load_adapters, read_adapters_file

from adapter_data import blob_defect, write_tree
from clip_fixtures import make_tiny_clip

runner = CliRunner()
SIZE = "64"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="module")
def trained(tiny_dir, tmp_path_factory):
    root = write_tree(tmp_path_factory.mktemp("tree"))
    out = tmp_path_factory.mktemp("adapters") / "adapters.safetensors"
    args = ["train-adapters", "--dataset", "mvtec", "--root", str(root), "--backbone", tiny_dir, "--image-size", SIZE,
            "--batch-size", "4", "--device", "cpu", "--out", str(out)]
    first = runner.invoke(app, args + ["--epochs", "2"])
    assert first.exit_code == 0, first.output
    resumed = runner.invoke(app, args + ["--epochs", "6", "--resume", "--mosaic", "0"])
    assert resumed.exit_code == 0, resumed.output
    assert "trained 6 epoch(s)" in resumed.output
    return out


def test_train_then_predict_zero_shot_with_adapters(tiny_dir, trained, tmp_path):
    _, metadata = read_adapters_file(trained)
    assert metadata["training"]["dataset"] == "mvtec" and metadata["training"]["epochs"] == 6
    folder = tmp_path / "images"
    folder.mkdir()
    masks = []
    for i in range(4):
        image, mask = blob_defect(500 + i, int(SIZE))
        Image.fromarray(image).save(folder / f"{i}.png")
        masks.append(mask)
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", "--zero-shot", "--class-name", "widget", "--backbone", tiny_dir,
                                 "--image-size", SIZE, "--adapters", str(trained), "--device", "cpu",
                                 str(folder), "--out", str(out), "--save-maps"])
    assert result.exit_code == 0, result.output
    with open(out / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    maps = [np.load(out / row["map_file"]).astype(np.float32) for row in rows]
    assert auroc(np.stack(masks).ravel(), np.stack(maps).ravel()) >= 0.85


def test_train_adapters_refuses_a_dataset_without_masks(tiny_dir, tmp_path):
    root = write_tree(tmp_path, with_masks=False)
    result = runner.invoke(app, ["train-adapters", "--dataset", "mvtec", "--root", str(root), "--backbone", tiny_dir,
                                 "--out", str(tmp_path / "a.safetensors")])
    assert result.exit_code == 2
    assert "no anomaly masks" in result.output and "ground_truth" in result.output


def test_convert_the_authors_checkpoint(tiny_dir, trained, tmp_path):
    state, _ = read_adapters_file(trained)
    authors = tmp_path / "visa_pretrained.pth"
    torch.save({AUTHORS_KEY: state}, authors)
    converted = tmp_path / "converted.safetensors"
    result = runner.invoke(app, ["convert-adapters", str(authors), str(converted), "--backbone", tiny_dir,
                                 "--image-size", SIZE, "--taps", "1,2,3,4"])
    assert result.exit_code == 0, result.output
    spec = create_backbone(tiny_dir, image_size=int(SIZE)).spec
    loaded = load_adapters(converted, spec)
    for key, value in state.items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    _, metadata = read_adapters_file(converted)
    assert metadata["backbone"]["taps"] == [1, 2, 3, 4] and "visa_pretrained.pth" in metadata["source"]

    # Without options the authors' setting is recorded, which this tiny backbone is not.
    default = tmp_path / "default.safetensors"
    Image.fromarray(blob_defect(0, int(SIZE))[0]).save(tmp_path / "a.png")
    assert runner.invoke(app, ["convert-adapters", str(authors), str(default)]).exit_code == 0
    assert read_adapters_file(default)[1]["backbone"]["name"] == DEFAULT_CLIP
    result = runner.invoke(app, ["predict", "--zero-shot", "--class-name", "widget", "--backbone", tiny_dir,
                                 "--adapters", str(default), str(tmp_path / "a.png"),
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "backbone id differs" in result.output

    wrong = runner.invoke(app, ["convert-adapters", str(authors), str(tmp_path / "w.safetensors"), "--taps", "6,12"])
    assert wrong.exit_code == 2 and "4 adapters" in wrong.output
