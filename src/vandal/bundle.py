"""Saving and loading fitted detectors: ``detector.json`` + ``tensors.safetensors``, never pickle.

The JSON records the format version, the config (with the backbone's resolved size and taps), the
backbone's spec (to refuse a different one), the active sources with their JSON state, and the
calibration; tensors are each source's state, prefixed by the source's name. Loading validates
everything (types, ranges, finiteness, tensor names and shapes) and refuses a damaged bundle with
one message naming the field.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .atomic import write_directory
from .backbones.base import BackboneSpec
from .config import ConfigError, DetectorConfig, from_dict
from .planning import ViewPlan
from .scoring.levels import Calibration
from .sources import SOURCES

FORMAT = "vandal-detector"
FORMAT_VERSION = 2
CONFIG_FILE = "detector.json"
TENSORS_FILE = "tensors.safetensors"
BUNDLE_FILES = {CONFIG_FILE, TENSORS_FILE}


class IncompatibleBundleError(ValueError):
    """A saved detector that this version cannot use, is damaged, or whose backbone differs."""


# --------------------------------------------------------------------------- destination


def is_bundle(directory: Path) -> bool:
    """A directory holding exactly a vandal bundle (its two files, the JSON of our format)."""
    try:
        if {p.name for p in directory.iterdir()} != BUNDLE_FILES:
            return False
        return json.loads((directory / CONFIG_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_destination(directory: str | os.PathLike) -> Path:
    """Where a bundle may be written: a new path, an empty directory, or an existing bundle that
    holds nothing else. Anything else is refused before any work is done (a user's files are
    never replaced). Returns the resolved path."""
    target = Path(directory).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} is a file: give a directory path for the detector bundle")
    if target.is_dir() and any(target.iterdir()) and not is_bundle(target):
        raise FileExistsError(f"{target} exists and holds files that are not a vandal detector bundle: refusing to "
                              "replace it; choose a new or empty folder")
    parent = target if target.is_dir() else target.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write to {parent}: choose a folder you may write to")
    return target


# --------------------------------------------------------------------------- save


def bundle_document(config: DetectorConfig, spec: BackboneSpec, sources: list, n_references: int,
                    calibration: Calibration, plan: ViewPlan) -> tuple[dict, dict[str, torch.Tensor]]:
    """A fitted detector's parts -> (the JSON document, the tensors by name)."""
    config = config.replace(image_size=spec.image_size, taps=spec.taps)
    tensors = {f"{s.name}.{k}": v.contiguous().cpu() for s in sources for k, v in s.state_dict().items()}
    document = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "vandal_version": __version__,
        "config": config.to_dict(),
        "backbone": spec.to_dict(),
        "n_references": n_references,
        "sources": [{"name": s.name, "meta": s.meta()} for s in sources],
        "calibration": calibration.to_dict(),
        "plan": plan.to_dict(),
    }
    return document, tensors


def write_bundle(directory: str | os.PathLike, document: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Write atomically: everything goes to a temporary sibling, then replaces ``directory``."""
    from safetensors.torch import save_file

    target = check_destination(directory)

    def fill(staging: Path) -> None:
        save_file(tensors, str(staging / TENSORS_FILE), metadata={"format": FORMAT})
        (staging / CONFIG_FILE).write_text(json.dumps(document, indent=2, allow_nan=False))

    write_directory(target, fill)


# --------------------------------------------------------------------------- load


def _field(document: dict, key: str, kind: type | tuple, where: Path) -> Any:
    if key not in document:
        raise IncompatibleBundleError(f"{where}: field {key!r} is missing; the bundle is damaged, refit")
    value = document[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise IncompatibleBundleError(f"{where}: field {key!r} has the wrong type ({type(value).__name__}); "
                                      "the bundle is damaged, refit")
    return value


def read_document(directory: str | os.PathLike) -> dict:
    """``detector.json``, checked for format and version."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise IncompatibleBundleError(f"{directory}: no {CONFIG_FILE}; this is not a saved vandal detector")
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IncompatibleBundleError(f"{path}: not valid JSON ({error}); the bundle is damaged") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise IncompatibleBundleError(f"{path}: not a vandal detector bundle")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise IncompatibleBundleError(
            f"{directory}: saved with bundle format {version} (vandal {document.get('vandal_version')}); this vandal "
            f"{__version__} reads format {FORMAT_VERSION}. Refit the detector with this version.")
    return document


def _finite(value: Any, key: str, where: Path, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
            positive and value <= 0):
        need = "a positive finite number" if positive else "a finite number"
        raise IncompatibleBundleError(f"{where}: calibration.{key} must be {need}, got {value!r}; refit")
    return float(value)


def _calibration(data: dict, where: Path) -> Calibration:
    try:
        calibration = Calibration.from_dict(data)
    except TypeError as error:
        raise IncompatibleBundleError(f"{where}: calibration is damaged ({error}); refit") from error
    _finite(calibration.image_threshold, "image_threshold", where, positive=True)
    _finite(calibration.pixel_threshold, "pixel_threshold", where, positive=True)
    for key in ("image_scores", "map_maxima"):
        values = getattr(calibration, key)
        if not isinstance(values, list):
            raise IncompatibleBundleError(f"{where}: calibration.{key} must be a list; refit")
        for value in values:
            _finite(value, key, where)
    if calibration.scales is not None and (not isinstance(calibration.scales, list) or len(calibration.scales) != 2):
        raise IncompatibleBundleError(f"{where}: calibration.scales must be two numbers; refit")
    for value in calibration.scales or []:
        _finite(value, "scales", where, positive=True)
    if not isinstance(calibration.method, str):
        raise IncompatibleBundleError(f"{where}: calibration.method must be text; refit")
    return calibration


def check_backbone(saved: dict, built: dict, directory: str | os.PathLike) -> None:
    """The rebuilt backbone must match the saved one in everything the memory depends on."""
    for field in ("kind", "image_size", "taps", "tap_dims", "embed_dim", "preprocessing"):
        if saved.get(field) != built.get(field):
            raise IncompatibleBundleError(
                f"{directory}: saved for backbone {saved.get('name')!r} with {field}={saved.get(field)}, but the "
                f"backbone built now has {field}={built.get(field)}; refit, or load with the original backbone")


def _tensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = directory / TENSORS_FILE
    if not path.is_file():
        raise IncompatibleBundleError(f"{directory}: {TENSORS_FILE} is missing; the bundle is incomplete, refit "
                                      "or copy it whole")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise IncompatibleBundleError(f"{path}: cannot read the tensors ({error}); the bundle is damaged, "
                                      "refit or copy it whole") from error


def _check_state(source, state: dict[str, torch.Tensor], meta: dict, where: Path) -> None:
    expected = source.expected_state(meta)
    if expected is not None and set(state) != set(expected):
        raise IncompatibleBundleError(f"{where}: {source.name} tensors {sorted(state)} do not match the "
                                      f"configuration ({sorted(expected)}); the bundle is damaged, refit")
    for key, tensor in state.items():
        shape = (expected or {}).get(key)
        if shape is not None and (tensor.ndim != len(shape) or any(
                want is not None and got != want for got, want in zip(tensor.shape, shape))):
            raise IncompatibleBundleError(f"{where}: tensor {source.name}.{key} has shape {tuple(tensor.shape)}, "
                                          f"expected {shape}; the bundle is damaged, refit")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise IncompatibleBundleError(f"{where}: tensor {source.name}.{key} holds NaN or infinite values; "
                                          "the bundle is damaged, refit")


@dataclass
class SavedDetector:
    """A bundle read and validated: everything :meth:`Detector.load` needs to rebuild the detector."""

    config: DetectorConfig
    backbone: dict
    n_references: int
    sources: list[str]
    metas: list[dict]
    tensors: dict[str, torch.Tensor]
    calibration: Calibration
    where: Path
    plan: ViewPlan


def read_bundle(directory: str | os.PathLike) -> SavedDetector:
    """Read and validate a bundle (tensor shapes are checked against the sources in :func:`restore_sources`)."""
    where = Path(directory)
    document = read_document(where)
    try:
        config = from_dict(_field(document, "config", dict, where))
    except ConfigError as error:
        raise IncompatibleBundleError(f"{where}: config: {error}; refit") from error
    spec = _field(document, "backbone", dict, where)
    n_references = _field(document, "n_references", int, where)
    entries = _field(document, "sources", list, where)
    calibration = _calibration(_field(document, "calibration", dict, where), where)
    if n_references < 0:
        raise IncompatibleBundleError(f"{where}: field 'n_references' must be >= 0, got {n_references}")
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name not in SOURCES or not isinstance(entry.get("meta"), dict):
            raise IncompatibleBundleError(f"{where}: field 'sources' holds {entry!r}, not a known source; refit")
    if not entries:
        raise IncompatibleBundleError(f"{where}: field 'sources' is empty; the bundle is damaged, refit")
    names = [entry["name"] for entry in entries]
    tensors = _tensors(where)
    stray = [k for k in tensors if not any(k.startswith(f"{name}.") for name in names)]
    if stray:
        raise IncompatibleBundleError(f"{where}: tensors {stray[:3]} belong to no source; the bundle is damaged, refit")
    try:  # bundles written before the plan existed were banked as configured
        plan = ViewPlan.from_dict(document["plan"]) if "plan" in document else ViewPlan.configured(config)
    except ValueError as error:
        raise IncompatibleBundleError(f"{where}: {error}; the bundle is damaged, refit") from error
    return SavedDetector(config, spec, n_references, names, [e["meta"] for e in entries], tensors, calibration, where,
                         plan)


def restore_sources(sources: list, saved: SavedDetector) -> None:
    """Load each source's saved state into the freshly built ``sources`` (same order as saved)."""
    for source, meta in zip(sources, saved.metas):
        prefix = f"{source.name}."
        state = {k[len(prefix):]: v for k, v in saved.tensors.items() if k.startswith(prefix)}
        _check_state(source, state, meta, saved.where)
        try:
            source.load_state_dict(state, meta)
        except (KeyError, ValueError, TypeError) as error:
            raise IncompatibleBundleError(f"{saved.where}: {source.name} state is damaged ({error}); refit") from error
