"""vandal: zero-/few-shot visual anomaly detection and localisation."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Detector", "Prediction", "Predictor", "__version__", "load"]


def __getattr__(name: str):
    # Lazy, so `import vandal` (and the CLI's --help) stays fast: torch loads only when needed.
    if name == "Detector":
        from .detector import Detector

        return Detector
    if name == "load":
        from .loading import load

        return load
    if name == "Predictor":
        from .runner import Predictor

        return Predictor
    if name == "Prediction":
        from .prediction import Prediction

        return Prediction
    raise AttributeError(f"module 'vandal' has no attribute {name!r}")
