"""One configuration: validation in one place, JSON/TOML round trips, presets as data, layering, and
the command-line options generated from it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from vandal.cli.main import app
from vandal.config import ALIASES, FIELDS, ConfigError, DetectorConfig, from_dict
from vandal.presets import compose, load_preset, preset_names, read_config_file


def test_defaults_round_trip_through_json():
    config = from_dict({"neighbourhood": "1,3,5", "augment": "true", "memory": {"augment": True}})
    assert config.memory.neighbourhood == (1, 3, 5) and config.memory.augment is True
    again = from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert config.diff() == {"memory.neighbourhood": (1, 3, 5), "memory.augment": True}
    assert DetectorConfig().diff() == {}


def test_every_field_has_one_alias_and_one_flag():
    assert len(ALIASES) == len(FIELDS)
    flags = [spec.flag for spec in FIELDS.values()]
    assert len(set(flags)) == len(flags)
    for key, spec in FIELDS.items():
        assert from_dict({spec.alias: spec.default}).get(key) == spec.default


@pytest.mark.parametrize("settings, message", [
    ({"neighbourhod": 3}, "did you mean neighbourhood"),
    ({"neighbourhood": (2,)}, "odd sizes"),
    ({"resize": "stretch"}, "views.resize must be one of auto, squash, pad, tile"),
    ({"augment": "maybe"}, "memory.augment takes true or false"),
    ({"image_size": 0}, "backbone.image_size must be in"),
    ({"image_size": 10**9}, "backbone.image_size must be in"),
    ({"smoothing_sigma": float("nan")}, "post.smoothing_sigma"),
    ({"smoothing_sigma": 1e308}, "post.smoothing_sigma"),
    ({"image_threshold": 0}, "post.image_threshold must be a positive finite number"),
    ({"image_threshold": float("nan")}, "post.image_threshold"),
    ({"text_scales": "pooled"}, "needs text.class_name"),
    ({"mutual": "objects", "individual": "on"}, "reference-free"),
    ({"taps": "8,8"}, "distinct taps"),
    ({"backbone": 3}, "backbone.name takes text"),
])
def test_bad_settings_fail_naming_the_key(settings, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(settings)


def test_a_config_is_a_mapping_of_sections():
    with pytest.raises(ConfigError, match="mapping"):
        from_dict([1, 2])  # type: ignore[arg-type]


def test_presets_are_data_and_all_valid():
    names = preset_names()
    assert {"embedded", "april-gan-zero-shot", "april-gan-few-shot", "mmc-zero-shot", "mmc-few-shot",
            "april-gan-reference"} <= set(names)
    for name in names:
        preset = load_preset(name)
        assert preset.description
        from_dict(preset.detector, {"class_name": "bottle"})
    reference = compose("april-gan-reference", extra={"class_name": "bottle"})
    assert reference.config.backbone.hidden_act == "gelu" and reference.config.post.smoothing_sigma == 0.0
    assert reference.config.memory.neighbourhood == (1,) and reference.config.backbone.image_size == 518
    assert reference.evaluate == {"protocol": "grid", "transductive": True}
    with pytest.raises(ConfigError, match="did you mean mmc-few-shot"):
        load_preset("mmc-fewshot")


def test_layering_defaults_preset_file_set_flags(tmp_path):
    path = tmp_path / "line3.toml"
    path.write_text('preset = "mmc-few-shot"\n[memory]\nneighbourhood = [1, 3]\n[objects]\nsegmenter = "classical"\n')
    file = read_config_file(path)
    assert file.preset == "mmc-few-shot" and file.detector["memory"]["neighbourhood"] == [1, 3]
    composed = compose(config_file=path, assignments=["memory.neighbourhood=5", "objects.fusion=mean"],
                       flags={"neighbourhood": (7,), "class_name": "pcb", "augment": None})
    config = composed.config
    assert composed.preset == "mmc-few-shot"
    assert config.memory.neighbourhood == (7,)  # flag > --set > file
    assert config.objects.fusion == "mean" and config.objects.segmenter == "classical"  # --set, file > preset
    assert config.memory.augment is True and config.text.scales == "pooled"  # from the preset
    assert compose(flags={"class_name": "x"}, base={"backbone": "clip-dir"}).config.backbone.name == "clip-dir"
    assert compose("embedded", base={"backbone": "clip-dir"}).config.backbone.name == "efficientnet-lite2"


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[memory]\nneighbourhood = [2]\n")
    with pytest.raises(ConfigError, match="odd sizes"):
        read_config_file(bad)
    bad.write_text("[memroy]\n")
    with pytest.raises(ConfigError, match="bad.toml: unknown table or key 'memroy'"):
        read_config_file(bad)
    bad.write_text("not = [toml")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        read_config_file(bad)
    with pytest.raises(ConfigError, match="--set takes key=value"):
        compose(assignments=["neighbourhood"])


@pytest.mark.parametrize("command", ["fit", "predict", "evaluate"])
def test_every_config_field_is_an_option_of_the_command(command):
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    for spec in FIELDS.values():
        assert spec.flag in result.output, f"{command} lacks {spec.flag}"
    for flag in ("--preset", "--config", "--set"):
        assert flag in result.output


def test_presets_command_lists_and_shows():
    runner = CliRunner()
    listed = runner.invoke(app, ["presets"])
    assert listed.exit_code == 0 and "embedded (default)" in listed.output and "april-gan-reference" in listed.output
    shown = runner.invoke(app, ["presets", "--show", "mmc-few-shot"])
    assert shown.exit_code == 0 and 'segmenter = "sam"' in shown.output
    missing = runner.invoke(app, ["presets", "--show", "nope"])
    assert missing.exit_code == 2 and missing.output.count("error:") == 1 and "unknown preset 'nope'" in missing.output


def test_help_imports_no_torch():
    import subprocess
    import sys

    code = "import sys; from vandal.cli.main import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass\n" \
           "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")
