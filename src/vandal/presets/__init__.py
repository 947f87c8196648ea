"""Presets as data (``*.toml`` beside this file, as open_clip keeps model configs) and config files.

A preset or a ``--config`` file is TOML with the config's sections as tables, optional top-level
``description`` and ``preset`` (a base preset), and an optional ``[evaluate]`` table of defaults
for ``vandal evaluate`` (``protocol``, ``transductive``...), ignored elsewhere::

    preset = "mmc-few-shot"
    [memory]
    neighbourhood = [1, 3, 5]

Settings are layered, later layers winning: defaults < preset < config file < ``--set`` < flags.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import SECTIONS, ConfigError, DetectorConfig, from_dict, parse_assignment

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_PRESET = "embedded"
TOP_LEVEL = ("description", "preset", "evaluate")


@dataclass(frozen=True)
class SettingsFile:
    """One preset or config file: detector settings (nested sections), evaluation defaults, base preset."""

    detector: dict[str, Any]
    evaluate: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    description: str = ""


def _preset_files() -> dict[str, Any]:
    return {entry.name[:-len(".toml")]: entry for entry in resources.files(__name__).iterdir()
            if entry.name.endswith(".toml")}


def preset_names() -> list[str]:
    return sorted(_preset_files())


def _parse(text: str, where: str) -> SettingsFile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: not valid TOML ({error})") from error
    unknown = [k for k in data if k not in SECTIONS and k not in TOP_LEVEL]
    if unknown:
        raise ConfigError(f"{where}: unknown table or key {unknown[0]!r}; expected sections "
                          f"{', '.join(SECTIONS)} and {', '.join(TOP_LEVEL)}")
    for key in SECTIONS:
        if key in data and not isinstance(data[key], Mapping):
            raise ConfigError(f"{where}: [{key}] must be a table of settings")
    detector = {k: dict(v) for k, v in data.items() if k in SECTIONS}
    evaluate = data.get("evaluate", {})
    if not isinstance(evaluate, Mapping):
        raise ConfigError(f"{where}: [evaluate] must be a table")
    from_dict(detector, _PARTIAL)  # fail early on unknown keys and wrong types, naming the file
    return SettingsFile(detector, dict(evaluate), data.get("preset"), str(data.get("description", "")))


# Validating a partial layer: text options may wait for the class name a later layer gives.
_PARTIAL = {"text.class_name": "partial-layer-check"}


def load_preset(name: str) -> SettingsFile:
    """A named preset; unknown names fail listing the known ones."""
    files = _preset_files()
    if name not in files:
        close = difflib.get_close_matches(name, files, n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint}; presets: {', '.join(sorted(files))} (`vandal presets`)")
    try:
        return _parse(files[name].read_text(encoding="utf-8"), f"preset {name!r}")
    except ConfigError as error:
        raise ConfigError(str(error)) from None


def read_config_file(path: str | os.PathLike) -> SettingsFile:
    """A ``--config`` TOML file (its ``preset`` key names a base preset)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the config file ({error})") from error
    return _parse(text, str(path))


@dataclass(frozen=True)
class Composed:
    """The result of layering: the detector config and the evaluation defaults that came with it."""

    config: DetectorConfig
    evaluate: dict[str, Any]
    preset: str | None


def compose(preset: str | None = None, config_file: str | os.PathLike | None = None,
            assignments: Iterable[str] = (), flags: Mapping[str, Any] | None = None,
            extra: Mapping[str, Any] | None = None, base: Mapping[str, Any] | None = None) -> Composed:
    """defaults < ``base`` < preset < config file < ``--set key=value`` < flags < ``extra``.

    ``flags`` maps keys or aliases to values (None: not given). ``base``: defaults a surface puts
    below everything (zero-shot prediction's CLIP backbone); ``extra``: settings it adds last (the
    evaluation harness's class name for each category). A config file's own ``preset`` key names
    its base preset, unless ``preset`` is given.
    """
    file = read_config_file(config_file) if config_file else None
    preset_name = preset or (file.preset if file else None)
    named = load_preset(preset_name) if preset_name else None
    layers: list[Mapping[str, Any]] = [base or {}]
    evaluate: dict[str, Any] = {}
    for item in (named, file):
        if item is not None:
            layers.append(item.detector)
            evaluate.update(item.evaluate)
    sets = dict(parse_assignment(text) for text in assignments)
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    config = from_dict(None, *layers, sets, given, extra or {})
    return Composed(config, evaluate, preset_name)
