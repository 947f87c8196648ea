"""Damaged bundles are refused on load with one message naming the field, never a traceback or a
detector that scores NaN; a fuzz test mutates the JSON and truncates the tensors."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vandal.bundle import CONFIG_FILE, TENSORS_FILE, IncompatibleBundleError
from vandal.cli.main import app
from vandal.detector import Detector


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, textures):
    out = tmp_path_factory.mktemp("bundle") / "model"
    Detector(image_size=64, progress=False).fit(textures[0]).save(str(out))
    return out


def damaged(bundle, tmp_path, change) -> str:
    target = tmp_path / "damaged"
    shutil.copytree(bundle, target)
    document = json.loads((target / CONFIG_FILE).read_text())
    document = change(document)
    (target / CONFIG_FILE).write_text(json.dumps(document))
    return str(target)


def drop(key):
    return lambda d: {k: v for k, v in d.items() if k != key}


def setting(path, value):
    def change(document):
        node = document
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return document
    return change


@pytest.mark.parametrize("change, message", [
    (drop("calibration"), "'calibration' is missing"),
    (drop("config"), "'config' is missing"),
    (drop("backbone"), "'backbone' is missing"),
    (drop("n_references"), "'n_references' is missing"),
    (drop("sources"), "'sources' is missing"),
    (lambda d: [d], "not a vandal detector bundle"),
    (setting(("calibration", "image_threshold"), 0), "image_threshold must be a positive finite number"),
    (setting(("calibration", "pixel_threshold"), -1.0), "pixel_threshold must be a positive finite number"),
    (setting(("calibration", "image_threshold"), float("nan")), "image_threshold must be a positive finite"),
    (setting(("calibration", "image_scores"), [1, "x"]), "image_scores must be a finite number"),
    (setting(("config", "post", "smoothing_sigma"), 1e308), "post.smoothing_sigma"),
    (setting(("config", "backbone", "image_size"), 10**9), "backbone.image_size"),
    (setting(("config", "memory", "neighbourhood"), "x"), "memory.neighbourhood"),
    (setting(("n_references",), "3"), "'n_references' has the wrong type"),
    (setting(("sources",), [{"name": "rm -rf", "meta": {}}]), "not a known source"),
    (setting(("format_version",), 1), "reads format 2"),
    (setting(("backbone", "tap_dims"), [1, 2]), "tap_dims"),
])
def test_each_damage_names_its_field(bundle, tmp_path, change, message):
    with pytest.raises(IncompatibleBundleError, match=message):
        Detector.load(damaged(bundle, tmp_path, change), progress=False)


def test_truncated_tensors_and_one_cli_error(bundle, tmp_path, textures):
    from PIL import Image

    target = tmp_path / "cut"
    shutil.copytree(bundle, target)
    data = (target / TENSORS_FILE).read_bytes()
    (target / TENSORS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(IncompatibleBundleError, match="cannot read the tensors"):
        Detector.load(str(target), progress=False)
    Image.fromarray(textures[0][0]).save(tmp_path / "a.png")
    result = CliRunner().invoke(app, ["predict", str(target), str(tmp_path / "a.png"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.output.count("error:") == 1 and "Traceback" not in result.output


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True)
                           | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def _leaves(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, path + (key,))
    elif isinstance(node, list) and node:
        for i, value in enumerate(node):
            yield from _leaves(value, path + (i,))
    else:
        yield path


# 150 draws (4-14 s): over two runs each kept finding new kinds of refusal to the end (43 and 62 distinct
# messages, the last at draws 149 and 150), so fewer would test less.
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_bundles_fail_only_with_the_documented_error(bundle, tmp_path_factory, data):
    target = tmp_path_factory.mktemp("fuzz") / "b"
    shutil.copytree(bundle, target)
    document = json.loads((target / CONFIG_FILE).read_text())
    leaves = list(_leaves(document))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(leaves))
        node = document
        for key in path[:-1]:
            node = node[key]
        if path:
            node[path[-1]] = data.draw(JSON_VALUES)
    (target / CONFIG_FILE).write_text(json.dumps(document))
    if data.draw(st.booleans()):
        raw = (target / TENSORS_FILE).read_bytes()
        (target / TENSORS_FILE).write_bytes(raw[: data.draw(st.integers(0, len(raw)))])
    try:
        detector = Detector.load(str(target), progress=False)
    except IncompatibleBundleError:
        return
    # Whatever loaded must be a working detector (a harmless change, e.g. a description string).
    assert detector.fitted and detector.calibration_.image_threshold > 0
