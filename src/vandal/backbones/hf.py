"""What every Hugging Face backbone shares: the lazy ``transformers`` import, where the weights are
(a local ``save_pretrained`` directory or a Hub id), the config's ``model_type`` and the model's own
preprocessing (``preprocessor_config.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from ..extras import require
from .base import Backbone, Preprocessing

# PIL's resample codes, as image processors store them in preprocessor_config.json.
PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
INSTALL_HINT = "pip install 'vandal[transformers]'"


def require_transformers(purpose: str = "Hugging Face backbones (CLIP, DINOv2)") -> ModuleType:
    """``transformers``, or an ImportError that names the extra that installs it."""
    return require("transformers", "transformers", purpose)


def local_model_dir(name: str, family: str) -> Path | None:
    """The directory ``name`` points to, ``None`` for a Hugging Face id; fail on anything else."""
    path = Path(name).expanduser()
    if not path.exists():
        return None
    if not path.is_dir():
        raise ValueError(
            f"{name!r} is a file; a {family} backbone loads a Hugging Face model directory (config.json, weights) "
            "as written by save_pretrained, or a Hugging Face id"
        )
    if not (path / "config.json").is_file():
        raise ValueError(f"{name!r} is not a {family} model directory: it has no config.json")
    return path


def model_type_of(name: str) -> str | None:
    """``model_type`` of a local model directory's config.json, or of a Hub id already in the local
    cache; ``None`` when neither is there (never touches the network)."""
    path = Path(name).expanduser()
    config_path: str | None = None
    if path.is_dir():
        candidate = path / "config.json"
        config_path = str(candidate) if candidate.is_file() else None
    elif not path.exists() and name.count("/") == 1:
        try:
            from transformers.utils import cached_file
        except ImportError:
            return None
        try:
            config_path = cached_file(name, "config.json", local_files_only=True,
                                      _raise_exceptions_for_missing_entries=False,
                                      _raise_exceptions_for_connection_errors=False)
        except (OSError, ValueError):
            config_path = None
    if not config_path:
        return None
    try:
        value = json.loads(Path(config_path).read_text()).get("model_type")
    except (OSError, ValueError) as error:
        raise ValueError(f"{config_path}: not a readable model config ({error})") from error
    return value if isinstance(value, str) else None


def read_preprocessing(name: str, local_dir: Path | None, default: Preprocessing,
                       offline: bool = False) -> Preprocessing:
    """mean/std/resample from ``preprocessor_config.json`` if the model has one, else ``default``."""
    path: str | None = None
    if local_dir is not None:
        candidate = local_dir / "preprocessor_config.json"
        path = str(candidate) if candidate.is_file() else None
    else:
        from transformers.utils import cached_file

        try:  # a missing file or no network is not an error: the family's defaults apply
            path = cached_file(name, "preprocessor_config.json", local_files_only=offline,
                               _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False)
        except OSError:
            path = None
    raw = json.loads(Path(path).read_text()) if path else {}
    mean = tuple(float(v) for v in raw.get("image_mean", default.mean))
    std = tuple(float(v) for v in raw.get("image_std", default.std))
    resample = raw.get("resample", default.resample)
    resample = PIL_RESAMPLE.get(resample, default.resample) if isinstance(resample, int) else str(resample)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"{name!r}: expected 3-channel image_mean/image_std, got {mean} / {std}")
    return Preprocessing(mean=(mean[0], mean[1], mean[2]), std=(std[0], std[1], std[2]), resample=resample)


def load_config(name: str, local: bool, offline: bool, family: str, model_types: tuple[str, ...]):
    """The model's ``transformers`` config, refused unless its ``model_type`` is one of ``model_types``."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name, local_files_only=local or offline)
    except (OSError, ValueError, KeyError) as err:
        if local:
            raise ValueError(f"{name!r} is not a {family} model directory: {err}") from err
        if offline:
            raise OSError(f"Hugging Face model {name!r} is not in the local cache and downloading was not allowed: "
                          "allow it once (--allow-download, or Detector.load(..., allow_download=True)), or refit "
                          "with a local model directory") from err
        raise OSError(f"cannot fetch the config of Hugging Face model {name!r}: {err}") from err
    if getattr(config, "model_type", None) not in model_types:
        raise ValueError(f"{name!r} is a {getattr(config, 'model_type', type(config).__name__)!r} model, not "
                         f"{family} (config.json model_type must be {' or '.join(repr(t) for t in model_types)})")
    return config


class PatchBackbone(Backbone):
    """A vision transformer's backbone (CLIP, DINOv2): square patches, one token grid per tap."""

    @property
    def patch_size(self) -> int:
        return self.spec.extra["patch_size"]

    @property
    def grid_size(self) -> int:
        """Side of the token grid: ``image_size // patch_size``."""
        return self.image_size // self.patch_size
