"""Running a vandal ``.onnx`` file: its format, its metadata, and onnxruntime sessions (shared by the
exporter, which checks what it wrote, and :class:`~vandal.export.onnx_detector.OnnxDetector`)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from ..config_sections import MAX_IMAGE_SIZE
from ..data.lighting import check_target

FORMAT = "vandal-onnx"
FORMAT_VERSION = 1
INPUT = "pixels"
# Protocol buffers refuse messages of 2 GiB and more; keep a margin for the graph itself.
PROTO_LIMIT = (1 << 31) - (64 << 20)
# The exported graph must reproduce the torch module on its example input within this (raw map units).
VERIFY_TOLERANCE = 1e-4
# The format's key for the image-level decision terms' level, margin, mode and source (outputs dist_delta,
# dist_pdelta); format version 1 fixed its name.
DECISION_KEY = "distribution"
METADATA_KEYS = ("format", "format_version", "vandal_version", "backbone", "backbone_kind", "image_size", "mean",
                 "std", "resample", "resize", "image_threshold", "pixel_threshold", "decision_level", "taps",
                 "tap_dims", "neighbourhood", "smoothing_sigma", "n_references", "inputs", "outputs", "config",
                 "calibration", DECISION_KEY, "sources", "lighting")
TEXT_KEYS = ("format", "vandal_version", "backbone", "backbone_kind", "resample", "resize")  # not JSON
RESAMPLING = ("bicubic", "bilinear", "nearest")  # PIL filters the views are resized with
# exports from before the decision terms (or the source list, or the lighting target) lack them
OPTIONAL_KEYS = (DECISION_KEY, "sources", "lighting")


class DamagedModelError(ValueError):
    """An ``.onnx`` file that cannot be run as a vandal model; the message names the file and the fix."""


def _require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("running an .onnx model needs onnxruntime: pip install 'vandal[onnx]'") from error
    return onnxruntime


def providers(device: str) -> list[str]:
    """onnxruntime execution providers for ``device`` (cpu, cuda or auto)."""
    available = _require_onnxruntime().get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise RuntimeError("--device cuda was asked for, but this onnxruntime has no CUDA provider "
                           "(install onnxruntime-gpu); use --device cpu")
    if device in ("cuda", "auto") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device must be cpu, cuda or auto, got {device!r}")
    return ["CPUExecutionProvider"]


def session(path: str, device: str = "auto", threads: int | None = None):
    """An onnxruntime session on ``path``; threads: intra-op threads (None: onnxruntime's default)."""
    ort = _require_onnxruntime()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    chosen = providers(device)
    state = ort.capi.onnxruntime_pybind11_state
    unreadable = tuple(getattr(state, name) for name in ("InvalidProtobuf", "InvalidArgument", "InvalidGraph", "Fail",
                                                         "NoSuchFile", "NoModel") if hasattr(state, name))
    try:
        return ort.InferenceSession(path, options, providers=chosen)
    except unreadable as error:  # empty, truncated or not ONNX at all: the file's fault, not a bug
        reason = str(error).split(" failed:", 1)[-1].strip() or type(error).__name__
        raise DamagedModelError(f"{path}: not a readable ONNX model ({reason}); the file is empty, truncated or not "
                                "ONNX: export it again with `vandal export MODEL_DIR --out model.onnx` (and copy the "
                                "whole file, with its .data beside it if it has one)") from error


def read_metadata(path: str, props: dict[str, str]) -> dict[str, Any]:
    """``metadata_props`` -> values, checked for format and version and validated as strictly as a
    bundle (:func:`check_metadata`) before anything is allocated from them."""
    if props.get("format") != FORMAT:
        raise DamagedModelError(f"{path}: not a vandal ONNX model (metadata 'format' is {props.get('format')!r}); "
                                "export one with `vandal export MODEL_DIR --format onnx --out model.onnx`")
    missing = [key for key in METADATA_KEYS if key not in props and key not in OPTIONAL_KEYS]
    try:
        values = {key: json.loads(value) if key not in TEXT_KEYS else value
                  for key, value in props.items() if key in METADATA_KEYS}
    except (json.JSONDecodeError, RecursionError) as error:
        raise DamagedModelError(f"{path}: damaged metadata ({type(error).__name__}); export the model again") from None
    if missing:
        raise DamagedModelError(f"{path}: metadata {missing} missing; export the model again")
    version = values["format_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise DamagedModelError(f"{path}: metadata 'format_version' must be a whole number, got {version!r}; "
                                "export the model again")
    if version > FORMAT_VERSION:
        raise DamagedModelError(f"{path}: ONNX format version {version} is newer than this vandal reads "
                                f"({FORMAT_VERSION}); upgrade vandal")
    check_metadata(path, values)
    return values


def _number(value: Any, positive: bool = False) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            and (value > 0 or not positive))


def _problems(values: dict[str, Any]) -> Iterator[str]:
    """What is wrong with read metadata values, one phrase each."""
    try:
        check_target(values.get("lighting"), "lighting")
    except ValueError as error:
        yield str(error).removeprefix("field ")
    size = values["image_size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_IMAGE_SIZE:
        yield f"'image_size' must be a whole number in [1, {MAX_IMAGE_SIZE}], got {size!r}"
    for key in ("mean", "std"):
        value = values[key]
        if not isinstance(value, list) or len(value) != 3 or not all(_number(v, key == "std") for v in value):
            need = "positive finite" if key == "std" else "finite"
            yield f"'{key}' must list 3 {need} numbers (one per RGB channel), got {value!r}"
    if values["resample"] not in RESAMPLING:
        yield f"'resample' must be one of {', '.join(RESAMPLING)}, got {values['resample']!r}"
    for key in ("image_threshold", "pixel_threshold", "decision_level"):
        if not _number(values[key], positive=True):
            yield f"'{key}' must be a positive finite number, got {values[key]!r}"
    references = values["n_references"]
    if isinstance(references, bool) or not isinstance(references, int) or references < 0:
        yield f"'n_references' must be a whole number >= 0, got {references!r}"
    calibration = values["calibration"]
    if not isinstance(calibration, dict):
        yield f"'calibration' must be an object, got {type(calibration).__name__}"
    else:
        for key in ("image_threshold", "pixel_threshold"):
            if not _number(calibration.get(key), positive=True):
                yield f"'calibration.{key}' must be a positive finite number, got {calibration.get(key)!r}"
        scales = calibration.get("scales")
        if scales is not None and (not isinstance(scales, list) or len(scales) != 2
                                   or not all(_number(v, positive=True) for v in scales)):
            yield f"'calibration.scales' must be two positive finite numbers, got {scales!r}"
    terms = values.get(DECISION_KEY)
    if terms is not None and not (isinstance(terms, dict) and _number(terms.get("level"), positive=True)
                                  and _number(terms.get("margin"), positive=True)
                                  and isinstance(terms.get("exclusive", False), bool)
                                  and isinstance(terms.get("source", DECISION_KEY), str)):
        yield f"'{DECISION_KEY}' must hold a positive finite level and margin, got {terms!r}"
    sources = values.get("sources")
    if sources is not None and not (isinstance(sources, list) and sources and all(isinstance(s, str) for s in sources)):
        yield f"'sources' must list the source names, got {sources!r}"


def check_metadata(path: str, values: dict[str, Any]) -> None:
    """Refuse metadata a damaged or edited file carries (sizes, thresholds, normalisation, resampling),
    naming every bad field: an input side of 99999 would otherwise allocate 100+ GB at the first image."""
    problems = list(_problems(values))
    if problems:
        raise DamagedModelError(f"{path}: damaged metadata: {'; '.join(problems)}; export the model again "
                                "(`vandal export MODEL_DIR --out model.onnx`)")
