"""docs/configuration.md documents every config field and preset, and its generated tables are current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vandal.config import FIELDS
from vandal.presets import preset_names

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGE = DOCS / "configuration.md"


def _generator():
    spec = importlib.util.spec_from_file_location("make_configuration", DOCS / "make_configuration.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_field_and_preset_is_documented():
    text = PAGE.read_text(encoding="utf-8")
    missing = [key for key, spec in FIELDS.items() if f"`{key}`" not in text or f"`{spec.alias}`" not in text
               or spec.flag not in text]
    missing += [name for name in preset_names() if f"### `{name}`" not in text]
    assert not missing, f"docs/configuration.md lacks {missing}: run python docs/make_configuration.py"


def test_generated_tables_are_current():
    text = PAGE.read_text(encoding="utf-8")
    assert _generator().render(text) == text, "docs/configuration.md is stale: run python docs/make_configuration.py"


def test_render_names_missing_markers():
    make = _generator()
    page = PAGE.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="generated: presets"):
        make.render(page.replace("<!-- BEGIN generated: presets -->", ""))
    stale = page.replace("| `memory.neighbourhood` |", "| `memory.neighbourhoods` |", 1)
    assert make.render(stale) == page  # a hand edit inside the markers is rewritten, not kept
