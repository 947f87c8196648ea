"""Start-up cost of the command line: ``--help`` of the group and of every command, and importing
the CLI, load no heavy library; each command imports what it runs only when it runs."""

from __future__ import annotations

import json
import subprocess
import sys

from vandal.cli.main import COMMANDS

HEAVY = ("torch", "transformers", "fastapi", "uvicorn", "ray", "onnx", "onnxruntime", "numpy", "scipy", "PIL",
         "matplotlib", "safetensors")


def _loaded_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter -> the heavy top-level modules it left in sys.modules."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_library():
    assert _loaded_after("import vandal.cli.main") == []


def test_help_of_every_command_loads_no_heavy_library():
    calls = [["--help"]] + [[name, "--help"] for name in COMMANDS]
    code = ("import contextlib, io\nfrom vandal.cli.main import app\n"
            f"for args in {calls!r}:\n"
            "    with contextlib.redirect_stdout(io.StringIO()) as text:\n"
            "        try:\n            app(args)\n        except SystemExit:\n            pass\n"
            "    assert 'Usage:' in text.getvalue(), args\n")
    assert _loaded_after(code) == []


def test_a_detector_without_object_banks_does_not_load_scipy():
    # scipy.ndimage (~0.35 s) is for the classical segmenter only; the default predict path skips it.
    assert "scipy" not in _loaded_after("import vandal.detector, vandal.outputs.run")


def test_without_transformers_the_core_runs_and_clip_names_the_extra(monkeypatch, tmp_path):
    """transformers is the ``transformers`` extra: the default backbone never imports it, and a CLIP
    backbone without it is one error line naming the extra."""
    code = ("import sys\nsys.modules['transformers'] = None  # as if not installed\n"
            "import numpy as np\nfrom vandal.detector import Detector\n"
            "rng = np.random.default_rng(0)\nimages = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(2)]\n"
            "Detector(progress=False, image_size=64).fit(images[:1]).predict(images[1:])\n"
            "assert sys.modules['transformers'] is None\n")
    assert "torch" in _loaded_after(code)  # it fitted and predicted (a failure raises here)

    from click.testing import CliRunner
    from PIL import Image

    from vandal.cli.main import app

    monkeypatch.setitem(sys.modules, "transformers", None)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    result = CliRunner().invoke(app, ["predict", "--zero-shot", "--class-name", "widget", "--backbone",
                                      "openai/clip-vit-base-patch32", str(tmp_path / "a.png"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "pip install 'vandal[transformers]'" in result.output and "Traceback" not in result.output
