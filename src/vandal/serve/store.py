"""The service's models: named detector bundles in one folder, loaded on demand, kept in an LRU cache.

A model named ``NAME`` is the folder ``DIR/NAME`` holding exactly what :meth:`Detector.save` writes,
so ``vandal fit --out DIR/NAME`` makes one and ``vandal predict DIR/NAME ...`` uses one. Names are
1-64 of ``[A-Za-z0-9_.-]`` and do not start with a dot: a request never names a path outside
``DIR``, and dot-names stay free for the atomic writer's staging folders and the service's own
``DIR/.vandal-serve/``. Every operation on a model holds that model's lock, so concurrent requests
get the scores a sequential call gets and a refit never races a prediction.
"""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..bundle import CONFIG_FILE, IncompatibleBundleError, check_destination, is_bundle, read_document
from ..config import ConfigError, DetectorConfig, from_dict
from ..data.images import DEFAULT_MAX_PIXELS
from ..prediction import Prediction, decision_levels
from ..runner import Predictor
from ..sources.mutual import TooFewImagesError
from .cache import DetectorCache, bundle_stamp
from .errors import ServiceError
from .settings import STATION_DIR

if TYPE_CHECKING:
    from ..detector import Detector

NAME_RULE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
SERVICE_DIR = STATION_DIR  # the service's own files (deleted models on their way out, the station's)


def holds_bundle(folder: Path) -> bool:
    """A model folder: a bundle, or one whose JSON is nested too deeply to read (a damaged model, listed
    with its error, never a crash of the listing)."""
    try:
        return is_bundle(folder)
    except RecursionError:
        return True


def check_name(name: str) -> str:
    """A model name a request may use, or a 422 saying the rule."""
    if not NAME_RULE.fullmatch(name) or name.startswith("."):
        shown = name if len(name) <= 80 else name[:80] + "..."
        raise ServiceError(422, f"model name {shown!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-', "
                                "not starting with a dot")
    return name


def summary_of(name: str, document: dict, folder: Path) -> dict[str, Any]:
    """What ``GET /models`` says about one bundle, from its JSON alone (no tensors are read).

    image_threshold / pixel_threshold: the decision levels on ``pred_score`` and the calibrated map
    (0.5 unless the model sets its own); ``calibration`` holds the raw levels learned at fit.
    """
    for key, kind in (("config", dict), ("n_references", int), ("sources", list), ("calibration", dict)):
        if not isinstance(document.get(key), kind):
            # A light check for the listing; loading validates everything (tensors included).
            raise IncompatibleBundleError(f"{name}/{CONFIG_FILE}: field {key!r} is missing or of the wrong type; "
                                          "the bundle is damaged, refit")
    config = from_dict(document["config"])
    calibration = document["calibration"]
    levels = decision_levels(config.post)
    modified = datetime.fromtimestamp((folder / CONFIG_FILE).stat().st_mtime, timezone.utc)
    return {
        "name": name,
        "backbone": config.backbone.name,
        "image_size": config.backbone.image_size,
        "references": document.get("n_references"),
        "image_threshold": levels.image,
        "pixel_threshold": levels.pixel,
        "sources": [entry.get("name") for entry in document["sources"] if isinstance(entry, dict)],
        "transductive": config.mutual.transductive,
        "settings": {key: list(v) if isinstance(v, tuple) else v for key, v in config.diff().items()},
        "calibration": {key: calibration.get(key) for key in ("method", "image_threshold", "pixel_threshold")},
        "vandal_version": document.get("vandal_version"),
        "modified": modified.isoformat(timespec="seconds"),
    }


class ModelStore:
    """Named bundles under ``root`` (created if missing). Detectors run on ``device``, refuse images
    above ``max_pixels``, and fetch Hugging Face backbones only with ``allow_download``."""

    def __init__(self, root: Path, device: str = "auto", cache_size: int = 4,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, allow_download: bool = False):
        root = Path(root).expanduser()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OSError(f"cannot create the models folder {root} ({error}); choose another with --models") from error
        self.root = root.resolve()
        self.device = device
        self.runtime: dict[str, Any] = {"device": device, "progress": False, "max_pixels": max_pixels,
                        "allow_download": allow_download}
        self.cache = DetectorCache(cache_size)
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    # ------------------------------------------------------------------ names and paths
    def path(self, name: str) -> Path:
        """``DIR/name``; never anywhere else (a symlink leading out of ``DIR`` is refused)."""
        path = self.root / check_name(name)
        if path.is_symlink() or path.resolve().parent != self.root:
            raise ServiceError(403, f"model {name!r} is a link leading out of the models folder; refusing it")
        return path

    def lock(self, name: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(name, threading.RLock())

    def _clean(self, message: str) -> str:
        """Messages name files relative to the models folder, never the server's own paths."""
        return message.replace(f"{self.root}/", "").replace(str(self.root), "<models>")

    def require(self, name: str) -> Path:
        """The folder of an existing model, or 404."""
        path = self.path(name)
        if not holds_bundle(path):
            raise ServiceError(404, f"no model named {name!r}; GET /models lists them")
        return path

    # ------------------------------------------------------------------ reading
    def names(self) -> list[str]:
        """Models in the folder (valid names holding a bundle), sorted."""
        found = []
        for entry in self.root.iterdir():
            if NAME_RULE.fullmatch(entry.name) and not entry.name.startswith(".") and not entry.is_symlink() \
                    and entry.is_dir() and holds_bundle(entry):
                found.append(entry.name)
        return sorted(found)

    def summary(self, name: str) -> dict[str, Any]:
        path = self.require(name)
        try:
            return summary_of(name, read_document(path), path)
        except (IncompatibleBundleError, ConfigError, OSError) as error:
            return {"name": name, "error": self._clean(str(error))}
        except RecursionError:
            return {"name": name, "error": f"{name}/{CONFIG_FILE}: nested too deeply to read; the bundle is damaged"}

    def summaries(self) -> list[dict[str, Any]]:
        out = []
        for name in self.names():
            try:
                out.append(self.summary(name))
            except ServiceError:
                continue  # deleted between listing and reading
        return out

    def detector(self, name: str) -> Predictor:
        """The loaded detector of ``name`` (from the cache when its bundle is unchanged); hold its lock."""
        from ..loading import load

        path = self.require(name)
        stamp = bundle_stamp(path)
        detector = self.cache.get(name, stamp)
        if detector is None:
            try:
                detector = load(path, **self.runtime)  # a folder: a bundle, whatever its name
            except (ValueError, OSError, RecursionError) as error:  # IncompatibleBundleError, ConfigError among them
                raise ServiceError(409, f"model {name!r} cannot be loaded, its bundle is damaged: "
                                        f"{self._clean(str(error)) or type(error).__name__}") from error
            self.cache.put(name, stamp, detector)
        return detector

    # ------------------------------------------------------------------ writing
    def create(self, name: str, images: Sequence[np.ndarray], config: DetectorConfig,
               overwrite: bool = False) -> dict[str, Any]:
        """Fit a new model on ``images`` and save it; nothing is written when the fit fails."""
        from ..detector import Detector

        path = self.path(name)
        with self.lock(name):
            if path.exists() and not is_bundle(path):
                raise ServiceError(409, f"{name!r} is a folder in the models folder that is not a model bundle; "
                                        "it is never replaced: choose another name")
            if path.exists() and not overwrite:
                raise ServiceError(409, f"model {name!r} exists; DELETE /models/{name} first, or POST with "
                                        "?overwrite=true to replace it")
            try:
                check_destination(path)
            except (FileExistsError, PermissionError) as error:
                raise ServiceError(409, f"model {name!r}: {self._clean(str(error))}") from error
            try:
                detector = Detector(config, **self.runtime).fit(list(images))
            except (ConfigError, ValueError, OSError) as error:  # OSError: a backbone not cached, no download
                raise ServiceError(422, f"fit failed: {self._clean(str(error))}") from error
            self._save(name, path, detector)
        return self.summary(name)

    def add_references(self, name: str, images: Sequence[np.ndarray]) -> dict[str, Any]:
        """Grow a model's memory and calibration with more normal images (no refit from scratch)."""
        from ..detector import Detector

        path = self.require(name)
        with self.lock(name):
            detector = self.detector(name)
            if not isinstance(detector, Detector):  # models here are bundle folders, which load as Detectors
                raise ServiceError(409, f"model {name!r} is not a bundle: references cannot be added to it")
            try:
                detector.add_references(list(images))
            except ValueError as error:
                self.cache.drop(name)  # the in-memory detector may be half-changed: reload from disk
                raise ServiceError(422, f"cannot add references to {name!r}: {error}") from error
            except BaseException:
                self.cache.drop(name)
                raise
            self._save(name, path, detector)
        return self.summary(name)

    def _save(self, name: str, path: Path, detector: Detector) -> None:
        try:
            detector.save(str(path))
        except BaseException:
            self.cache.drop(name)
            raise
        self.cache.put(name, bundle_stamp(path), detector)

    def delete(self, name: str) -> None:
        """Remove a model: moved out of sight at once (one rename), then erased."""
        path = self.require(name)
        trash = self.root / SERVICE_DIR / f"deleted-{name}-{uuid.uuid4().hex[:8]}"
        with self.lock(name):
            self.require(name)
            trash.parent.mkdir(exist_ok=True)
            path.rename(trash)
            self.cache.drop(name)
        shutil.rmtree(trash, ignore_errors=True)

    # ------------------------------------------------------------------ predicting
    def predict(self, name: str, images: Sequence[np.ndarray], image_threshold: float | None = None,
                pixel_threshold: float | None = None) -> tuple[list[Prediction], float]:
        """Score ``images`` with the model -> (predictions, the pixel level their masks used).

        Thresholds given here apply to this call only: the shared detector is never changed.
        """
        with self.lock(name):
            detector = self.detector(name)
            try:
                level = decision_levels(detector.config.post, image_threshold, pixel_threshold).pixel
                predictions = detector.predict(list(images), image_threshold=image_threshold,
                                               pixel_threshold=pixel_threshold)
            except ConfigError as error:  # the request's thresholds
                raise ServiceError(422, str(error)) from error
            except TooFewImagesError as error:  # a transductive model and a request of one image
                raise ServiceError(422, f"model {name!r} is transductive (mutual.mode = batch): {error}") from error
            except ValueError as error:  # images are decoded and checked already: the model is at fault
                raise ServiceError(409, f"model {name!r} cannot score images, its bundle is damaged ({error}); "
                                        f"roll it back (POST /models/{name}/rollback) or refit it") from error
        return predictions, level
