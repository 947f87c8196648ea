"""Deployment formats: one ONNX graph per fitted detector (``vandal export``), run by onnxruntime.

Importing this package loads neither onnx nor onnxruntime; they are needed only to export
(``onnx``, ``onnxscript``) or to run (``onnxruntime``): ``pip install 'vandal[onnx]'``.
"""

from __future__ import annotations

from .onnx_detector import OnnxDetector
from .onnx_export import export_onnx
from .onnx_graph import DetectorGraph, NotExportableError, check_exportable
from .runtime import FORMAT, FORMAT_VERSION

__all__ = ["FORMAT", "FORMAT_VERSION", "DetectorGraph", "NotExportableError", "OnnxDetector", "check_exportable",
           "export_onnx"]
