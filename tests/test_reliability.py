"""Hostile and careless use: every misuse ends in one ``error:`` line (exit 2) naming the file and the fix,
and nothing of the user's is deleted or left half-written."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import stat
import warnings

import pytest
from click.testing import CliRunner
from PIL import Image

from vandal.cli.main import app

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def one_error(output: str) -> bool:
    return output.count("error:") == 1 and "Traceback" not in output


@pytest.fixture(scope="module")
def folders(tmp_path_factory, textures):
    root = tmp_path_factory.mktemp("rel")
    references, tests = textures
    (root / "normal").mkdir()
    for i, image in enumerate(references):
        Image.fromarray(image).save(root / "normal" / f"ref{i}.png")
    (root / "test").mkdir()
    for i, (image, _) in enumerate(tests[:2]):
        Image.fromarray(image).save(root / "test" / f"t{i}.png")
    return root


@pytest.fixture(scope="module")
def model(folders):
    out = folders / "model"
    code, output = invoke("fit", "--normal", folders / "normal", "--out", out, "--image-size", "64")
    assert code == 0, output
    return out


# ------------------------------------------------------------------ fit --out never deletes user files


def test_fit_refuses_a_folder_with_foreign_files(folders, tmp_path):
    target = tmp_path / "mine"
    (target / "sub").mkdir(parents=True)
    (target / "important.txt").write_text("keep me")
    (target / "detector.json").write_text('{"another": "tool"}')
    code, output = invoke("fit", "--normal", folders / "normal", "--out", target, "--image-size", "64")
    assert code == 2 and one_error(output) and "not a vandal detector bundle" in output
    assert (target / "important.txt").read_text() == "keep me" and (target / "sub").is_dir()


def test_fit_refuses_a_bundle_holding_a_users_file(folders, model, tmp_path):
    import shutil

    target = tmp_path / "bundle"
    shutil.copytree(model, target)
    (target / "README.txt").write_text("notes")
    code, output = invoke("fit", "--normal", folders / "normal", "--out", target, "--image-size", "64")
    assert code == 2 and one_error(output)
    assert (target / "README.txt").read_text() == "notes"
    (target / "README.txt").unlink()
    code, output = invoke("fit", "--normal", folders / "normal", "--out", target, "--image-size", "64")
    assert code == 0, output  # a bundle alone is replaced


def test_fit_out_dot_and_umask(folders, tmp_path, monkeypatch):
    import vandal.atomic as atomic

    workdir = tmp_path / "here"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    atomic.umask.cache_clear()
    old = os.umask(0o022)
    try:
        code, output = invoke("fit", "--normal", folders / "normal", "--out", ".", "--image-size", "64")
    finally:
        os.umask(old)
        atomic.umask.cache_clear()
    assert code == 0, output
    assert stat.S_IMODE((workdir / "detector.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((workdir / "tensors.safetensors").stat().st_mode) == 0o644


def test_fit_checks_the_destination_before_fitting(folders, tmp_path):
    (tmp_path / "file").write_text("x")
    code, output = invoke("fit", "--normal", folders / "normal", "--out", tmp_path / "file")
    assert code == 2 and one_error(output) and "is a file" in output


# ------------------------------------------------------------------ predict --out


def test_predict_out_is_a_file_or_unwritable(folders, model, tmp_path):
    (tmp_path / "file").write_text("x")
    code, output = invoke("predict", model, folders / "test", "--out", tmp_path / "file")
    assert code == 2 and one_error(output) and "is a file" in output
    code, output = invoke("predict", model, folders / "test", "--out", "/proc/vandal-results")
    assert code == 2 and one_error(output) and "/proc/vandal-results" in output


def test_rerun_is_refused_then_overwrite_keeps_foreign_files(folders, model, tmp_path):
    out = tmp_path / "o"
    assert invoke("predict", model, folders / "test", "--out", out)[0] == 0
    (out / "my-notes.txt").write_text("mine")
    (out / "overlays" / "t0.png").rename(out / "overlays" / "stale.png")  # as if from an older run
    manifest = json.loads((out / ".vandal-run.json").read_text())
    manifest["files"].append("overlays/stale.png")
    (out / ".vandal-run.json").write_text(json.dumps(manifest))
    code, output = invoke("predict", model, folders / "test" / "t1.png", "--out", out)
    assert code == 2 and one_error(output) and "--overwrite" in output
    code, output = invoke("predict", model, folders / "test" / "t1.png", "--out", out, "--overwrite")
    assert code == 0, output
    assert (out / "my-notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["t1.png"]
    assert len(list(csv.reader((out / "predictions.csv").open()))) == 2


def test_a_second_run_into_a_locked_folder_stops(folders, model, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    with open(out / ".vandal.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        code, output = invoke("predict", model, folders / "test", "--out", out)
    assert code == 2 and one_error(output) and "another vandal run" in output


def test_an_out_folder_inside_the_input_is_refused_and_nothing_is_written(folders, model, tmp_path):
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(folders / "test", tree)
    code, output = invoke("predict", model, tree, "--out", tree / "results", "--recursive")
    assert code == 2 and "error:" in output, output
    assert not (tree / "results").exists()


def test_formula_file_names_are_escaped_in_csv(model, tmp_path, textures, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(textures[0][0]).save(tmp_path / "=HYPERLINK(1).png")
    assert invoke("predict", model, "=HYPERLINK(1).png", "--out", tmp_path / "o")[0] == 0
    rows = list(csv.reader((tmp_path / "o" / "predictions.csv").open()))
    assert rows[1][0] == "'=HYPERLINK(1).png"
    assert rows[1][3] == "overlays/_HYPERLINK_1_.png"


def test_errors_print_once_and_the_empty_folder_hint_is_a_flag(model, tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    code, output = invoke("predict", model, empty, "--out", tmp_path / "o")
    assert code == 2 and one_error(output) and "--recursive" in output and "recursive=True" not in output


# ------------------------------------------------------------------ decompression bombs in fit


def test_fit_counts_a_bomb_as_unreadable(folders, tmp_path):
    import shutil

    normal = tmp_path / "normal"
    shutil.copytree(folders / "normal", normal)
    Image.new("1", (12000, 12000)).save(normal / "bomb.png")
    code, output = invoke("fit", "--normal", normal, "--out", tmp_path / "m", "--image-size", "64")
    assert code == 2 and one_error(output) and "bomb.png" in output and "--max-pixels" in output
    code, output = invoke("fit", "--normal", normal, "--out", tmp_path / "m", "--image-size", "64",
                          "--skip-unreadable")
    assert code == 0, output


# ------------------------------------------------------------------ degenerate references


def test_identical_references_fall_back_and_warn(textures):
    from vandal.calibration import DegenerateReferencesWarning
    from vandal.detector import Detector

    references, tests = textures
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = Detector(image_size=64, progress=False).fit([references[0]] * 5)
    assert any(issubclass(w.category, DegenerateReferencesWarning) for w in caught)
    assert detector.calibration_.method.startswith("perturbed-reference")
    assert detector.calibration_.pixel_threshold > 1e-3
    from synthetic import texture

    normal = detector.predict([texture(70 + i, 160) for i in range(3)])
    assert max(p.pred_score for p in normal) < 5, "normal images must not score ~1e5"


# ------------------------------------------------------------------ bundles that download


def test_loading_a_bundle_never_downloads_unless_allowed(tmp_path, textures):
    from vandal.detector import Detector

    from clip_fixtures import make_tiny_clip

    clip = make_tiny_clip(tmp_path / "clip")
    Detector(backbone=clip, image_size=32, progress=False).fit(textures[0][:2]).save(str(tmp_path / "b"))
    document = json.loads((tmp_path / "b" / "detector.json").read_text())
    document["config"]["backbone"]["name"] = "openai/clip-vit-tiny-not-cached"
    (tmp_path / "b" / "detector.json").write_text(json.dumps(document))
    with pytest.raises(OSError, match="not in the local cache and downloading was not allowed"):
        Detector.load(str(tmp_path / "b"), progress=False)
    images = tmp_path / "in"
    images.mkdir()
    Image.fromarray(textures[0][0]).save(images / "a.png")
    code, output = invoke("predict", tmp_path / "b", images, "--out", tmp_path / "o")
    assert code == 2 and one_error(output) and "--allow-download" in output


def test_a_nan_bank_is_refused(model, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from vandal.bundle import IncompatibleBundleError
    from vandal.detector import Detector

    target = tmp_path / "nan"
    shutil.copytree(model, target)
    tensors = load_file(str(target / "tensors.safetensors"))
    first = sorted(tensors)[0]
    tensors[first][0, 0] = float("nan")
    save_file(tensors, str(target / "tensors.safetensors"))
    with pytest.raises(IncompatibleBundleError, match="NaN or infinite"):
        Detector.load(str(target), progress=False)
