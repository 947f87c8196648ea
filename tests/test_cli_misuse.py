"""Misuse of ``vandal predict`` ends in one ``error: ...`` line naming the file and the fix, exit code 2,
and nothing of the user's deleted."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from vandal.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, fitted_detector, textures):
    """A saved bundle and a folder of two test images."""
    root = tmp_path_factory.mktemp("misuse")
    fitted_detector.save(root / "model")
    images = root / "images"
    images.mkdir()
    for i, (image, _) in enumerate(textures[1][:2]):
        Image.fromarray(image).save(images / f"t{i}.png")
    return root / "model", images


def _fails_cleanly(result, *names: str) -> str:
    assert result.exit_code == 2, result.output
    # Progress bars (tqdm, "img/s]") may precede the error; nothing else may.
    lines = [line for line in result.output.splitlines() if line.strip() and not line.endswith("img/s]")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert all(name in lines[0] for name in names), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("inside", ["", "results"])
def test_out_in_a_model_bundle_is_refused(setup, inside):
    model, images = setup
    before = _tree(model)
    out = model / inside if inside else model
    result = runner.invoke(app, ["predict", str(model), str(images), "--out", str(out), "--overwrite"])
    line = _fails_cleanly(result, str(model), "detector.json")
    assert "outside" in line
    assert _tree(model) == before, "the bundle must stay exactly as it was"


def test_out_in_an_input_folder_is_refused_and_nothing_is_deleted(setup, tmp_path):
    model, images = setup
    folder = tmp_path / "lot"
    shutil.copytree(images, folder)
    earlier = tmp_path / "earlier"
    assert runner.invoke(app, ["predict", str(model), str(folder), "--out", str(earlier)]).exit_code == 0
    shutil.copytree(earlier, folder, dirs_exist_ok=True)  # an earlier run's results inside the input folder
    before = _tree(folder)
    for out in (folder, folder / "overlays", folder / "new"):
        result = runner.invoke(app, ["predict", str(model), str(folder), "--out", str(out), "--recursive",
                                     "--overwrite"])
        assert "outside the input folders" in _fails_cleanly(result, str(out), str(folder))
    assert _tree(folder) == before


def test_recursive_inputs_skip_earlier_runs_outputs(setup, tmp_path):
    model, images = setup
    folder = tmp_path / "lot"
    shutil.copytree(images, folder)
    assert runner.invoke(app, ["predict", str(model), str(folder), "--out", str(folder.parent / "run")]).exit_code == 0
    shutil.move(folder.parent / "run", folder / "run")  # a results folder kept among the inputs
    out = tmp_path / "again"
    result = runner.invoke(app, ["predict", str(model), str(folder), "--out", str(out), "--recursive"])
    assert result.exit_code == 0, result.output
    with open(out / "predictions.csv") as handle:
        scored = [row["path"] for row in csv.DictReader(handle)]
    assert sorted(scored) == sorted(str(p) for p in folder.glob("*.png")), scored


def test_a_one_pixel_image_is_named(setup, tmp_path):
    model, images = setup
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tiny)
    result = runner.invoke(app, ["predict", str(model), str(images / "t0.png"), str(tiny), "--out",
                                 str(tmp_path / "out")])
    _fails_cleanly(result, str(tiny))
    skipped = runner.invoke(app, ["predict", str(model), str(images / "t0.png"), str(tiny), "--out",
                                  str(tmp_path / "out2"), "--skip-unreadable"])
    assert skipped.exit_code == 0, skipped.output
    with open(tmp_path / "out2" / "skipped.csv") as handle:
        assert str(tiny) in handle.read()


def test_fit_names_a_normal_image_too_small_to_calibrate_on(tmp_path):
    from vandal.detector import Detector

    rng = np.random.default_rng(0)
    strip = tmp_path / "strip.png"
    Image.fromarray((rng.random((3, 40, 3)) * 99).astype(np.uint8)).save(strip)
    good = [(rng.random((60, 60, 3)) * 99).astype(np.uint8) for _ in range(2)]
    with pytest.raises(ValueError, match=r"at least 4 x 4 pixels.*strip\.png"):
        Detector(image_size=64, progress=False, device="cpu").fit([*good, str(strip)])
    fitted = Detector(image_size=64, progress=False, device="cpu").fit(good)
    with pytest.raises(ValueError, match=r"strip\.png"):
        fitted.add_references([str(strip)])
