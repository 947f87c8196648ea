"""Damaged or edited model files are refused at load with one message naming the file and the fix:
ONNX metadata as strictly as bundles (before anything is allocated from it), unreadable .onnx files,
and a bundle whose memory bank is empty."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import vandal  # noqa: E402
from vandal.bundle import TENSORS_FILE, IncompatibleBundleError  # noqa: E402
from vandal.cli.main import app  # noqa: E402
from vandal.detector import Detector  # noqa: E402
from vandal.export import OnnxDetector, export_onnx  # noqa: E402
from vandal.export.runtime import RESAMPLING, DamagedModelError  # noqa: E402

from synthetic import texture  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small bundle and its export (64 px: the distribution source stays off, the export is quick)."""
    folder = tmp_path_factory.mktemp("misuse")
    detector = Detector(image_size=64, device="cpu", progress=False).fit([texture(0), texture(1)])
    detector.save(str(folder / "model"))
    path = export_onnx(detector, folder / "model.onnx", verify=False)
    Image.fromarray(texture(5)).save(folder / "a.png")
    return folder, path


def edited(path, tmp_path, **changes):
    import onnx

    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key in changes:
            prop.value = changes[prop.key]
    target = tmp_path / "edited.onnx"
    onnx.save(model, str(target))
    return target


def cli_predict(model, image, out):
    result = CliRunner().invoke(app, ["predict", str(model), str(image), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    return result.output


@pytest.mark.parametrize("key, value, message", [
    ("image_size", "99999", "'image_size' must be a whole number in"),
    ("image_size", "64.5", "'image_size' must be a whole number"),
    ("image_threshold", "NaN", "'image_threshold' must be a positive finite number"),
    ("pixel_threshold", "-1", "'pixel_threshold' must be a positive finite number"),
    ("std", "[0, 0, 0]", "'std' must list 3 positive finite numbers"),
    ("mean", "[0.5]", "'mean' must list 3 finite numbers"),
    ("resample", "lanczos9", "'resample' must be one of"),
    ("calibration", json.dumps({"image_threshold": float("inf"), "pixel_threshold": 1.0}),
     "'calibration.image_threshold' must be a positive finite number"),
    ("config", "[" * 100_000 + "]" * 100_000, "damaged metadata"),
    ("format_version", '"one"', "'format_version' must be a whole number"),
])
def test_edited_metadata_is_refused_at_load(exported, tmp_path, key, value, message):
    folder, path = exported
    target = edited(path, tmp_path, **{key: value})
    with pytest.raises(DamagedModelError, match=message) as caught:
        OnnxDetector(target, device="cpu", progress=False)
    assert str(target) in str(caught.value) and "export the model again" in str(caught.value)


def test_a_huge_input_side_fails_fast_in_the_cli(exported, tmp_path):
    """The red-team case: image_size=99999 once took 23 GB before the kernel killed the run."""
    import resource

    folder, path = exported
    target = edited(path, tmp_path, image_size="99999")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    output = cli_predict(target, folder / "a.png", tmp_path / "out")
    assert "image_size" in output and str(target) in output
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 512 * 1024  # KiB: under 512 MB more
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_unreadable_onnx_files_end_in_one_error_line(exported, tmp_path, damage):
    folder, path = exported
    data = path.read_bytes()
    target = tmp_path / f"{damage}.onnx"
    target.write_bytes({"empty": b"", "truncated": data[: len(data) // 3],
                        "garbage": np.random.default_rng(0).bytes(4096)}[damage])
    with pytest.raises(DamagedModelError, match="not a readable ONNX model") as caught:
        vandal.load(target, device="cpu", progress=False)
    assert str(target) in str(caught.value) and "export it again" in str(caught.value)
    output = cli_predict(target, folder / "a.png", tmp_path / "out")
    assert str(target) in output and "export it again" in output


def test_resampling_names_are_the_ones_views_use():
    from vandal.data import layout

    assert set(RESAMPLING) == set(layout._RESAMPLE)


def test_a_bundle_with_an_empty_memory_is_refused_at_load(exported, tmp_path):
    from safetensors.torch import load_file, save_file

    folder, _ = exported
    target = tmp_path / "empty-memory"
    shutil.copytree(folder / "model", target)
    tensors = load_file(str(target / TENSORS_FILE))
    save_file({key: value[:0] if key.startswith("memory.") else value for key, value in tensors.items()},
              str(target / TENSORS_FILE))
    with pytest.raises(IncompatibleBundleError, match="memory state is damaged .the memory bank is empty") as caught:
        Detector.load(str(target), device="cpu", progress=False)
    assert str(target) in str(caught.value) and "refit" in str(caught.value)
    output = cli_predict(target, folder / "a.png", tmp_path / "out")
    assert "memory bank is empty" in output
