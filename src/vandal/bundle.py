"""Saving and loading fitted detectors: ``detector.json`` + ``tensors.safetensors``, never pickle.

The JSON records the format version, the backbone (name, kind, size, taps, widths, mean/std) and
every parameter, so a loaded detector rebuilds the same backbone and refuses one that differs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import load_file, save_file

from . import __version__
from .memory.bank import MemoryBank
from .scoring.calibration import Calibration

if TYPE_CHECKING:
    from .detector import Detector

FORMAT = "vandal-detector"
FORMAT_VERSION = 1
CONFIG_FILE = "detector.json"
TENSORS_FILE = "tensors.safetensors"


class IncompatibleBundleError(ValueError):
    """A saved detector that this version cannot use, or whose backbone differs."""


def save_detector(detector: "Detector", directory: str | os.PathLike) -> None:
    """Write atomically: everything goes to a temporary sibling, then replaces ``directory``."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"bank.{key}": bank.features.contiguous().cpu() for key, bank in detector.banks_.items()}
    individual = getattr(detector, "individual_banks_", None) or {}
    tensors.update({f"individual.{key}": bank.features.contiguous().cpu() for key, bank in individual.items()})
    if detector.text_ is not None:
        tensors["text_features"] = detector.text_.contiguous().cpu()
    if detector.adapters_ is not None:
        tensors.update({f"adapters.{k}": v.contiguous().cpu() for k, v in detector.adapters_.state_dict().items()})
    params = detector.get_params()
    params["taps"] = list(params["taps"]) if params["taps"] is not None else None
    params["neighbourhood"] = list(params["neighbourhood"])
    params["window_sizes"] = list(params.get("window_sizes", (2, 3)))
    params.pop("adapters")  # the adapters travel inside the bundle
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vandal_version": __version__,
        "backbone": detector.backbone_.spec.to_dict(),
        "params": params,
        "has_adapters": detector.adapters_ is not None,
        "n_references": detector.n_references_,
        "calibration": detector.calibration_.to_dict(),
        "fusion_scales": list(detector.fusion_scales_) if getattr(detector, "fusion_scales_", None) else None,
        "object_counts": list(getattr(detector, "object_counts_", [])),
    }
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} is a file: give a directory path for the detector bundle")
    if target.is_dir() and not (target / CONFIG_FILE).exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not a vandal detector: refusing to overwrite it")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be shared
        save_file(tensors, str(staging / TENSORS_FILE), metadata={"format": FORMAT})
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        if target.exists():
            # Swap in the new bundle; the old one is restored if the swap fails half-way.
            backup = target.with_name(f".{target.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            target.rename(backup)
            try:
                staging.rename(target)
            except BaseException:
                backup.rename(target)
                raise
            shutil.rmtree(backup, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_config(directory: str | os.PathLike) -> dict:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise IncompatibleBundleError(f"{directory}: no {CONFIG_FILE}; this is not a saved vandal detector")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise IncompatibleBundleError(f"{path}: not valid JSON ({error}); the bundle is damaged") from error
    if config.get("format") != FORMAT:
        raise IncompatibleBundleError(f"{path}: not a vandal detector bundle")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise IncompatibleBundleError(
            f"{directory}: saved with bundle format {version} (vandal {config.get('vandal_version')}); this vandal "
            f"{__version__} reads format {FORMAT_VERSION}. Refit the detector with this version."
        )
    return config


def check_backbone(saved: dict, built: dict, directory: str | os.PathLike) -> None:
    """The rebuilt backbone must match the saved one in everything the memory depends on."""
    for field in ("kind", "image_size", "taps", "tap_dims", "embed_dim", "preprocessing"):
        if saved.get(field) != built.get(field):
            raise IncompatibleBundleError(
                f"{directory}: saved for backbone {saved.get('name')!r} with {field}={saved.get(field)}, but the "
                f"backbone built now has {field}={built.get(field)}; refit, or load with the original backbone"
            )


def load_detector(cls: type["Detector"], directory: str | os.PathLike, device: str = "auto",
                  progress: bool = True) -> "Detector":
    config = read_config(directory)
    params = dict(config["params"])
    params["taps"] = tuple(params["taps"]) if params["taps"] is not None else None
    params["neighbourhood"] = tuple(params["neighbourhood"])
    if "window_sizes" in params:
        params["window_sizes"] = tuple(params["window_sizes"])
    # Bundles from before align_objects banked axis-aligned object crops: keep comparing like with like.
    params.setdefault("align_objects", False)
    spec = config["backbone"]
    try:
        detector = cls(**params, device=device, progress=progress)
    except TypeError as error:
        raise IncompatibleBundleError(f"{directory}: parameters this vandal does not know ({error}); refit") from error
    if not (Path(directory) / TENSORS_FILE).is_file():
        raise IncompatibleBundleError(f"{directory}: {TENSORS_FILE} is missing; the bundle is incomplete, refit or copy it whole")
    detector.backbone = spec["name"]
    detector.image_size = spec["image_size"]
    detector.taps = tuple(spec["taps"])
    # Build without class_name/adapters: text features and adapters come from the bundle exactly.
    class_name, text_scales = detector.class_name, detector.text_scales
    detector.class_name = detector.text_scales = None
    detector._build()
    detector.class_name, detector.text_scales = class_name, text_scales
    check_backbone(spec, detector.backbone_.spec.to_dict(), directory)
    tensors = load_file(str(Path(directory) / TENSORS_FILE), device="cpu")
    detector.banks_ = {key[len("bank."):]: MemoryBank(value.to(detector.device_))
                       for key, value in tensors.items() if key.startswith("bank.")}
    expected = {f"tap{i}.r{r}" for i in range(len(spec["taps"])) for r in params["neighbourhood"]}
    if config["n_references"] and set(detector.banks_) != expected:
        raise IncompatibleBundleError(f"{directory}: memory banks {sorted(detector.banks_)} do not match taps/scales")
    individual = {key[len("individual."):]: MemoryBank(value.to(detector.device_))
                  for key, value in tensors.items() if key.startswith("individual.")}
    if individual and set(individual) != expected:
        raise IncompatibleBundleError(f"{directory}: individual banks {sorted(individual)} do not match taps/scales")
    detector.individual_banks_ = individual or None
    scales = config.get("fusion_scales")
    detector.fusion_scales_ = tuple(scales) if scales else None
    detector.object_counts_ = list(config.get("object_counts", []))
    detector.text_ = tensors["text_features"].to(detector.device_) if "text_features" in tensors else None
    if config.get("has_adapters"):
        from .scoring.adapters import adapters_from_state

        state = {k[len("adapters."):]: v for k, v in tensors.items() if k.startswith("adapters.")}
        detector.adapters_ = adapters_from_state(state, detector.backbone_.spec).to(detector.device_).eval()
        detector.bundled_adapter_state = state  # a later fit() on this detector keeps the adapters
    detector.n_references_ = config["n_references"]
    detector.calibration_ = Calibration.from_dict(config["calibration"])
    return detector
