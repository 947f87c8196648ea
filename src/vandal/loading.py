"""``vandal.load(path)``: one call for any saved model, whatever engine runs it.

A bundle folder (``Detector.save``, ``vandal fit``) becomes a torch :class:`~vandal.detector.Detector`;
an ``.onnx`` file (``vandal export``) an :class:`~vandal.export.onnx_detector.OnnxDetector`. Both are
:class:`~vandal.runner.Predictor`: callers need not know which they hold.
"""

from __future__ import annotations

import os
from pathlib import Path

from .data.images import DEFAULT_MAX_PIXELS
from .runner import Predictor


def is_onnx_file(path: str | os.PathLike) -> bool:
    """An exported model: a file named ``*.onnx`` (a bundle folder may carry any name)."""
    return Path(path).suffix == ".onnx" and not Path(path).is_dir()


def load(path: str | os.PathLike, device: str = "auto", progress: bool = True, batch_size: int = 8,
         max_pixels: int | None = DEFAULT_MAX_PIXELS, allow_download: bool = False, precision: str = "float32",
         threads: int | None = None) -> Predictor:
    """The model saved at ``path``, ready to predict. device: cpu, cuda or auto; batch_size: images per
    forward (views per graph run for ONNX); max_pixels: larger inputs are refused as unreadable.
    Bundles only: allow_download (a Hugging Face backbone not in the local cache), precision. ONNX
    only: threads (onnxruntime's intra-op threads; None: its default)."""
    if is_onnx_file(path):
        if precision != "float32":
            raise ValueError(f"{path}: an exported ONNX model runs in float32; drop precision={precision!r}")
        from .export.onnx_detector import OnnxDetector

        return OnnxDetector(path, device=device, progress=progress, batch_size=batch_size, threads=threads,
                            max_pixels=max_pixels)
    from .detector import Detector

    if threads is not None:
        raise ValueError(f"{path}: threads applies to ONNX models; for a bundle set torch.set_num_threads")
    return Detector.load(str(path), device=device, progress=progress, batch_size=batch_size, max_pixels=max_pixels,
                         allow_download=allow_download, precision=precision)
