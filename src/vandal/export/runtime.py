"""Running a vandal ``.onnx`` file: its format, its metadata, and onnxruntime sessions (shared by the
exporter, which checks what it wrote, and :class:`~vandal.export.onnx_detector.OnnxDetector`)."""

from __future__ import annotations

import json
from typing import Any

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
                 "calibration", DECISION_KEY, "sources")
OPTIONAL_KEYS = (DECISION_KEY, "sources")  # exports from before the decision terms (or the source list) lack them


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
    return ort.InferenceSession(path, options, providers=providers(device))


def read_metadata(path: str, props: dict[str, str]) -> dict[str, Any]:
    """``metadata_props`` -> values, checked for format and version."""
    if props.get("format") != FORMAT:
        raise ValueError(f"{path}: not a vandal ONNX model (metadata 'format' is {props.get('format')!r}); export one "
                         "with `vandal export MODEL_DIR --format onnx --out model.onnx`")
    missing = [key for key in METADATA_KEYS if key not in props and key not in OPTIONAL_KEYS]
    try:
        values = {key: json.loads(value) if key not in ("format", "vandal_version", "backbone", "backbone_kind",
                                                         "resample", "resize") else value
                  for key, value in props.items() if key in METADATA_KEYS}
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: damaged metadata ({error}); export the model again") from error
    if missing:
        raise ValueError(f"{path}: metadata {missing} missing; export the model again")
    if values["format_version"] > FORMAT_VERSION:
        raise ValueError(f"{path}: ONNX format version {values['format_version']} is newer than this vandal reads "
                         f"({FORMAT_VERSION}); upgrade vandal")
    return values


