"""One configuration for the detector, defined once (STYLE: open_clip's configs, HF's PretrainedConfig).

Frozen dataclasses grouped by concern validate themselves on construction, round-trip through JSON
(the bundle stores :meth:`DetectorConfig.to_dict`) and TOML (``--config FILE``, presets), and carry
per-field metadata from which the command line, the evaluation harness and the service derive their
options: nobody keeps an option list by hand.

Every field has a dotted key (``memory.neighbourhood``) and a short, unique alias
(``neighbourhood``): ``Detector(neighbourhood=(1, 3, 5))``, ``--neighbourhood 1,3,5`` and
``--set memory.neighbourhood=1,3,5`` all name the same field. A field's ``stage`` says when it acts:
``fit`` fields are fixed by fitting (a saved detector keeps them); ``predict`` fields (decision
thresholds) may change on a fitted detector.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config_sections import (  # noqa: F401 - the sections are part of this module's API
    DEFAULT_CLIP,
    FUSIONS,
    HIDDEN_ACTS,
    INDIVIDUAL_MODES,
    MAX_IMAGE_SIZE,
    MUTUAL_MODES,
    RESIZE_POLICIES,
    TEXT_SCALES,
    BackboneConfig,
    ConfigError,
    DistributionConfig,
    MemoryConfig,
    MutualConfig,
    ObjectsConfig,
    PostConfig,
    TextConfig,
    ViewsConfig,
    check_choice,
)

SECTIONS: dict[str, type] = {
    "backbone": BackboneConfig, "views": ViewsConfig, "memory": MemoryConfig, "distribution": DistributionConfig,
    "objects": ObjectsConfig, "text": TextConfig, "mutual": MutualConfig, "post": PostConfig,
}


@dataclass(frozen=True)
class DetectorConfig:
    """Everything that shapes a detector's results, grouped by concern."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    distribution: DistributionConfig = field(default_factory=DistributionConfig)
    objects: ObjectsConfig = field(default_factory=ObjectsConfig)
    text: TextConfig = field(default_factory=TextConfig)
    mutual: MutualConfig = field(default_factory=MutualConfig)
    post: PostConfig = field(default_factory=PostConfig)

    def __post_init__(self) -> None:
        if self.mutual.mode is not None and self.objects.individual != "off":
            raise ConfigError("mutual comparison is reference-free, the individual bank needs references: "
                              "drop objects.individual or mutual.mode")

    # -------------------------------------------------------------- views of the fields
    def get(self, key: str) -> Any:
        spec = FIELDS[resolve_key(key)]
        return getattr(getattr(self, spec.section), spec.name)

    def replace(self, **settings: Any) -> DetectorConfig:
        """A copy with settings changed (dotted keys or aliases), validated."""
        return from_dict(self.to_dict(), settings)

    def flat(self) -> dict[str, Any]:
        """``{dotted key: value}`` for every field."""
        return {key: self.get(key) for key in FIELDS}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested JSON types: ``{section: {field: value}}`` (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def diff(self, other: DetectorConfig | None = None) -> dict[str, Any]:
        """Dotted keys whose values differ from ``other`` (default: the defaults)."""
        base = (other or DetectorConfig()).flat()
        return {k: v for k, v in self.flat().items() if base[k] != v}


# ------------------------------------------------------------------ field table


@dataclass(frozen=True)
class FieldSpec:
    """One configurable field: where it lives, its names, type and help."""

    section: str
    name: str
    alias: str
    flag: str
    stage: str
    help: str
    kind: str  # "int", "float", "str", "bool", "ints"
    optional: bool
    choices: tuple | None
    default: Any

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


def _kind(annotation: Any) -> tuple[str, bool]:
    """A field's annotation -> (kind, optional)."""
    args = typing.get_args(annotation)
    optional = type(None) in args
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in args if a is not type(None))
    if typing.get_origin(annotation) is tuple:
        return "ints", optional
    return {int: "int", float: "float", str: "str", bool: "bool"}[annotation], optional


def _field_table() -> dict[str, FieldSpec]:
    table: dict[str, FieldSpec] = {}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind, optional = _kind(hints[f.name])
            alias = f.metadata.get("alias") or f.name
            spec = FieldSpec(section, f.name, alias, f.metadata.get("flag") or "--" + alias.replace("_", "-"),
                             f.metadata.get("stage", "fit"), f.metadata["help"], kind, optional,
                             f.metadata.get("choices"), f.default)
            table[spec.key] = spec
    aliases = [s.alias for s in table.values()]
    duplicated = {a for a in aliases if aliases.count(a) > 1}
    if duplicated:  # pragma: no cover - a programming error, caught by any test run
        raise RuntimeError(f"config aliases must be unique, duplicated: {duplicated}")
    return table


FIELDS: dict[str, FieldSpec] = _field_table()
ALIASES: dict[str, str] = {spec.alias: key for key, spec in FIELDS.items()}


def resolve_key(key: str) -> str:
    """A dotted key or an alias -> the dotted key; unknown keys fail with the closest names."""
    if key in FIELDS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    known = sorted(FIELDS) + sorted(ALIASES)
    close = difflib.get_close_matches(key, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(ALIASES))}"
    raise ConfigError(f"unknown setting {key!r}{hint}")


def coerce(key: str, value: Any) -> Any:
    """A value from JSON, TOML, a kwarg or the command line -> the field's type; fails naming ``key``."""
    spec = FIELDS[resolve_key(key)]
    if isinstance(value, str):
        value = _parse_text(spec, value)
    if value is None:
        if not spec.optional:
            raise ConfigError(f"{spec.key} cannot be unset")
        return None
    try:
        if spec.kind == "ints":
            items = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(v, bool) or not float(v).is_integer() for v in items):
                raise ValueError
            return tuple(int(v) for v in items)
        if spec.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError
            return value
        if spec.kind == "int":
            if isinstance(value, bool) or not float(value).is_integer():
                raise ValueError
            return int(value)
        if spec.kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if not isinstance(value, str):
            raise ValueError
        return value
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{spec.key} takes {_describe_kind(spec)}, got {value!r}") from None


def _describe_kind(spec: FieldSpec) -> str:
    text = {"ints": "integers (e.g. 1,3,5)", "bool": "true or false", "int": "an integer",
            "float": "a number", "str": "text"}[spec.kind]
    if spec.choices:
        text = "one of " + ", ".join(spec.choices)
    return text + (" or none" if spec.optional else "")


def _parse_text(spec: FieldSpec, text: str) -> Any:
    """Command-line / ``--set`` text -> a Python value (str fields keep their text)."""
    stripped = text.strip()
    if spec.optional and stripped.lower() in ("none", "null", ""):
        return None
    if spec.kind == "ints":
        parts = stripped.strip("[]()").replace(",", " ").split()
        try:
            return [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"{spec.key} takes integers separated by commas (e.g. 1,3,5), got {text!r}") from None
    if spec.kind == "bool":
        lowered = stripped.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise ConfigError(f"{spec.key} takes true or false, got {text!r}")
    if spec.kind in ("int", "float"):
        try:
            return float(stripped) if spec.kind == "float" else int(stripped)
        except ValueError:
            raise ConfigError(f"{spec.key} takes {_describe_kind(spec)}, got {text!r}") from None
    return text


# ------------------------------------------------------------------ building


def iter_settings(settings: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Flat or nested settings -> ``(dotted key, value)``; nested ``{section: {field: v}}`` allowed."""
    for key, value in settings.items():
        if key in SECTIONS and isinstance(value, Mapping):
            for name, inner in value.items():
                yield resolve_key(f"{key}.{name}"), inner
        else:
            yield resolve_key(key), value


def from_dict(data: Mapping[str, Any] | None = None, *overrides: Mapping[str, Any]) -> DetectorConfig:
    """Nested or flat settings (then each of ``overrides`` on top) -> a validated config."""
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"a detector config is a mapping of sections, got {type(data).__name__}")
    values: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for layer in (data or {}, *overrides):
        for key, value in iter_settings(layer):
            spec = FIELDS[key]
            value = coerce(key, value)
            if spec.choices is not None:
                check_choice(key, value, spec.choices, spec.optional)
            values[spec.section][spec.name] = value
    try:
        return DetectorConfig(**{name: SECTIONS[name](**fields) for name, fields in values.items()})
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from error


def stage_of(key: str) -> str:
    return FIELDS[resolve_key(key)].stage


def parse_assignment(text: str) -> tuple[str, str]:
    """``key=value`` (``--set``) -> (dotted key, raw value text)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set takes key=value (e.g. memory.neighbourhood=1,3,5), got {text!r}")
    return resolve_key(key.strip()), value
