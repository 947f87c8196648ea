"""The detector: ``fit`` on a few normal images, ``predict`` anomaly scores, maps and masks.

Estimator style (scikit-learn): ``__init__`` stores parameters only (one validated
:class:`~vandal.config.DetectorConfig` and runtime options), ``fit`` learns the state that ends in
``_``, ``predict`` never refits; ``get_params`` / ``set_params`` / ``clone`` come from the config.

Composition: the detector embeds each image once (:mod:`vandal.embedding`), asks each of its score
sources (:mod:`vandal.sources`: global memory, text, object memory, mutual comparison), fuses their
maps and scores (:mod:`vandal.scoring.fusion`), smooths, and calibrates on the references only
(:mod:`vandal.calibration`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import FIELDS, DetectorConfig, from_dict, stage_of
from .data.images import DEFAULT_MAX_PIXELS, ImageInput, as_image_list, describe, load_image
from .embedding import PRECISIONS, EmbeddedImage, Embedder
from .runner import Runner
from .scoring.fusion import ScoredImage, collect
from .sources import SOURCES, ScoreSource

if TYPE_CHECKING:
    from .planning import ViewPlan

RUNTIME = ("device", "batch_size", "progress", "max_pixels", "allow_download", "precision")


def resolve_device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    return device


class NotFittedError(RuntimeError):
    pass


def make_config(config: DetectorConfig | Mapping | None = None, preset: str | None = None,
                settings: Mapping[str, Any] | None = None) -> DetectorConfig:
    """A config from a config object or mapping, a preset name, and settings on top (aliases or dotted keys)."""
    if preset is not None:
        if config is not None:
            raise ValueError("give a config or a preset, not both")
        from .presets import compose

        return compose(preset, extra=settings).config
    base = config.to_dict() if isinstance(config, DetectorConfig) else config
    return from_dict(base, settings or {})


def decode_workers(device: str) -> int:
    """Threads that decode and resize images ahead of the backbone (0: in the predicting thread).

    A GPU is fed by several. On a CPU the backbone's threads own the cores: a decoding thread helps
    only on a core they leave spare. Without one it slows the whole predict: it preempts one of the
    backbone's OpenMP threads, and every parallel region waits for that straggler (docs/performance.md).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if device != "cpu":
        return max(1, min(8, cores - 1))
    return 1 if cores > torch.get_num_threads() else 0


class Detector(Runner):
    """Zero-/few-shot anomaly detector.

    config: a :class:`~vandal.config.DetectorConfig` (or its dict); preset: a preset name
    (``vandal presets``); settings: any config field by alias or dotted key, on top
    (``Detector(neighbourhood=(1, 3, 5), augment=True)``). Runtime options (not saved): device:
    cpu, cuda or auto; batch_size: images per backbone forward; progress: progress bars;
    max_pixels: larger inputs are refused as unreadable (decompression bombs; None: no limit);
    allow_download: whether a Hugging Face id may be downloaded (``load`` defaults to no);
    precision: ``float32``, or ``bfloat16``/``float16`` autocast of the frozen backbone (GPU speed).
    """

    RUNTIME = RUNTIME

    def __init__(self, config: DetectorConfig | Mapping | None = None, *, preset: str | None = None,
                 device: str = "auto", batch_size: int = 8, progress: bool = True,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, allow_download: bool = True,
                 precision: str = "float32", **settings: Any):
        self.config = make_config(config, preset, settings)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if max_pixels is not None and max_pixels < 4:
            raise ValueError(f"max_pixels must be at least 4 (a 2 x 2 image) or None, got {max_pixels}")
        self.device = device
        self.batch_size = batch_size
        self.progress = progress
        self.max_pixels = max_pixels
        self.allow_download = allow_download
        self.precision = precision

    # ------------------------------------------------------------------ scikit-learn contract
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """``config`` and the runtime options; ``deep`` adds every config field by its alias."""
        params: dict[str, Any] = {"config": self.config, **{k: getattr(self, k) for k in RUNTIME}}
        if deep:
            params.update({FIELDS[key].alias: value for key, value in self.config.flat().items()})
        return params

    def set_params(self, **params: Any) -> Detector:
        """Change runtime options, the whole ``config``, or fields (aliases or dotted keys). Changing a
        fit-stage field forgets the fitted state (fit again); thresholds apply at once."""
        super().set_params(**params)
        return self

    def _set_fixed(self, params: dict[str, Any]) -> None:
        config = params.pop("config", None)
        new = make_config(config if config is not None else self.config, None, params)
        changed = [key for key, value in new.flat().items() if self.config.get(key) != value]
        self.config = new
        if any(stage_of(key) == "fit" for key in changed):
            self._forget()

    def clone(self) -> Detector:
        """A new, unfitted detector with the same parameters."""
        return type(self)(self.config, **{k: getattr(self, k) for k in RUNTIME})

    def _forget(self) -> None:
        for name in ("calibration_", "sources_", "n_references_", "plan_"):
            self.__dict__.pop(name, None)

    # ------------------------------------------------------------------ set-up
    @property
    def fitted(self) -> bool:
        return hasattr(self, "calibration_")

    @property
    def backbone_name(self) -> str:
        self._check_fitted()
        return self.backbone_.spec.name

    @property
    def input_size(self) -> int:
        """The backbone's input side in pixels."""
        self._check_fitted()
        return self.backbone_.spec.image_size

    @property
    def source_names(self) -> list[str]:
        """The fitted detector's score sources, in fusion order (e.g. ["memory", "text"])."""
        self._check_fitted()
        return [s.name for s in self.sources_]

    @property
    def transductive(self) -> bool:
        """Whether scores depend on the other images of a predict call (mutual="batch")."""
        return any(s.transductive for s in getattr(self, "sources_", []))

    def _setup(self, names: list[str]) -> None:
        """Backbone, segmenter and embedder for ``names`` sources (a backbone already built for the
        same settings and device is kept, so refitting does not reload weights)."""
        from .backbones import create_backbone

        cfg = self.config
        device = resolve_device(self.device)
        built = getattr(self, "_built", None)
        if built is None or built[0] != (cfg.backbone, device):
            options: dict[str, object] = {"hidden_act": cfg.backbone.hidden_act} if cfg.backbone.hidden_act else {}
            if not self.allow_download:
                options["offline"] = True
            backbone = create_backbone(cfg.backbone.name, cfg.backbone.image_size, cfg.backbone.taps,
                                       device=device, **options)
            self._built = ((cfg.backbone, device), backbone)
        self.device_ = device
        self.backbone_ = self._built[1]
        segmenter = None
        if any(SOURCES[name].uses_objects for name in names):
            from .segmentation import create_segmenter

            segmenter_options: dict[str, object] = {} if cfg.objects.segmenter == "classical" else {"device": device,
                                                                        "offline": not self.allow_download}
            segmenter = create_segmenter(cfg.objects.segmenter, **segmenter_options)
        self.embedder_ = Embedder(self.backbone_, cfg.views.resize, self.batch_size, device, segmenter,
                                  cfg.objects.align, self.precision)

    def _sources(self, names: list[str], plan: ViewPlan) -> list[ScoreSource]:
        """The ``names`` sources, built with the planned settings (after :meth:`_setup`)."""
        self.plan_ = plan
        self.embedder_.resize = plan.resize or self.config.views.resize
        self.embedder_.lighting = plan.lighting
        return [SOURCES[name](plan.apply(self.config), self.embedder_) for name in names]

    def _wanted(self, has_references: bool) -> list[str]:
        names = [name for name, source in SOURCES.items() if source.wanted(self.config, has_references)]
        if not names:
            raise ValueError("fit needs at least one normal image; zero-shot (no references) needs a CLIP backbone "
                             "and a class_name, or mutual comparison")
        return names

    # ------------------------------------------------------------------ fit
    def fit(self, normal_images: Iterable[ImageInput] | ImageInput | None = None) -> Detector:
        """Learn from normal images (none: zero-shot / mutual) and calibrate on them; returns self."""
        from .calibration import calibrate_sources
        from .planning import choose_plan

        images = self._references(normal_images)
        # What a source learned without references (text features, adapters) carries over a refit.
        carried = {s.name: (s.state_dict(), s.meta()) for s in getattr(self, "sources_", [])
                   if s.carries_over(self.config)}
        names = self._wanted(bool(images))
        self._setup(names)
        sources = self._sources(names, choose_plan(self.config, self.embedder_, images))
        for source in sources:
            if source.name in carried:
                source.load_state_dict(*carried[source.name])
        references = self._add_references(sources, images)
        self.sources_ = [s for s in sources if s.finish()]
        self.n_references_ = len(images)
        self.calibration_ = calibrate_sources(self.sources_, self.embedder_, self.config.post.smoothing_sigma,
                                              references, self.progress)
        return self

    def _references(self, normal_images: Iterable[ImageInput] | ImageInput | None) -> list[np.ndarray]:
        """The normal images decoded; one smaller than the calibration's cells is refused, by name."""
        from .scoring.thresholds import CELLS

        inputs = as_image_list(normal_images)
        images = [load_image(x, self.max_pixels) for x in inputs]
        small = [describe(x, i) for i, (x, image) in enumerate(zip(inputs, images)) if min(image.shape[:2]) < CELLS]
        if small:
            raise ValueError(f"normal images must be at least {CELLS} x {CELLS} pixels (calibration cuts each "
                             f"held-out map into {CELLS} x {CELLS} cells); too small: {', '.join(small[:5])}"
                             f"{' ...' if len(small) > 5 else ''}. Leave them out of the normal images")
        return images

    def _add_references(self, sources: list[ScoreSource], images: list[np.ndarray]) -> list[EmbeddedImage]:
        """Embed each reference once (with its planned augmented views) and hand it to every source ->
        the first :data:`~vandal.calibration.MAX_LOO_REFERENCES` embedded, all that calibration holds out
        (the others' taps are let go: 200 references would otherwise all stay embedded)."""
        from .calibration import MAX_LOO_REFERENCES

        transforms = self.plan_.transforms
        items: list[EmbeddedImage] = []
        for image in tqdm(images, desc="fit: embedding references", unit="img", disable=not self.progress):
            reference = self.embedder_.reference(image, transforms)
            for source in sources:
                source.add(reference)
            if len(items) < MAX_LOO_REFERENCES:
                items.append(reference.item)  # identity views stay embedded for calibration
        return items

    def add_references(self, normal_images: Iterable[ImageInput] | ImageInput) -> Detector:
        """Add normal images to a fitted detector without refitting: only the new images are embedded;
        the memories grow and the calibration takes the new references' leave-one-out scores."""
        from .calibration import extend_calibration

        self._check_fitted()
        images = self._references(normal_images)
        if not images:
            raise ValueError("add_references needs at least one image")
        if not self.n_references_:
            raise ValueError("this detector was fitted without references (zero-shot or mutual): fit it on "
                             "normal images instead")
        start = self.n_references_
        items = self._add_references(self.sources_, images)
        self.sources_ = [s for s in self.sources_ if s.finish()]
        self.n_references_ += len(images)
        self.calibration_ = extend_calibration(self.calibration_, self.sources_, self.config.post.smoothing_sigma,
                                               items, start)
        return self

    # ------------------------------------------------------------------ predict
    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError("this Detector is not fitted yet: call fit(normal_images) or Detector.load(dir)")

    def score_item(self, item: EmbeddedImage) -> ScoredImage:
        """Every source's answer for one embedded image, collected for fusion."""
        return collect(item, [(s, s.score(item)) for s in self.sources_], self.embedder_.size,
                       self.config.post.smoothing_sigma)

    def _check_ready(self) -> None:
        self._check_fitted()

    def _decode_workers(self) -> int:
        return decode_workers(self.device_)

    def _prepare(self, image: np.ndarray) -> tuple:
        return self.embedder_.views(image)

    def _score(self, chunk: list[tuple[np.ndarray, str | None, Any]]) -> Iterator[ScoredImage]:
        """Embed the chunk in shared backbone forwards, then ask every source (a transductive source
        answers for the whole chunk, which is then the whole call)."""
        items = [self.embedder_.image(image, name, views) for image, name, views in chunk]
        self.embedder_.embed_items(items)
        if not self.transductive:
            yield from (self.score_item(item) for item in items)
            return
        answers = zip(*[source.score_batch(items, self.progress) for source in self.sources_])
        for item, answer in zip(items, answers):
            yield collect(item, list(zip(self.sources_, answer)), self.embedder_.size,
                          self.config.post.smoothing_sigma)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str) -> None:
        """Write the fitted detector to ``directory`` (safetensors + JSON, no pickle), atomically. Only a
        new path, an empty folder or an existing bundle holding nothing else is written to."""
        from .bundle import bundle_document, write_bundle

        self._check_fitted()
        write_bundle(directory, *bundle_document(self.config, self.backbone_.spec, self.sources_, self.n_references_,
                                                 self.calibration_, self.plan_))

    @classmethod
    def load(cls, directory: str, device: str = "auto", progress: bool = True, batch_size: int = 8,
             max_pixels: int | None = DEFAULT_MAX_PIXELS, allow_download: bool = False,
             precision: str = "float32") -> Detector:
        """Rebuild a detector saved by :meth:`save`; refuses damaged or incompatible bundles. A bundle
        naming a Hugging Face model loads it from the local cache only, unless ``allow_download``. An
        exported ``.onnx`` file is not a bundle: :func:`vandal.load` picks the engine for either."""
        from .bundle import IncompatibleBundleError, check_backbone, read_bundle, restore_sources

        if os.path.isfile(directory) and str(directory).endswith(".onnx"):
            raise ValueError(f"{directory} is an exported ONNX model, not a bundle folder: load it with "
                             "vandal.load(path), which runs it with onnxruntime (Detector.load reads folders)")
        saved = read_bundle(directory)
        detector = cls(saved.config, device=device, progress=progress, batch_size=batch_size, max_pixels=max_pixels,
                       allow_download=allow_download, precision=precision)
        try:
            detector._setup(saved.sources)
            sources = detector._sources(saved.sources, saved.plan)
        except (ValueError, TypeError, KeyError) as error:  # a cache miss (OSError) is not damage: it stays
            raise IncompatibleBundleError(f"{directory}: cannot rebuild its detector ({error}); the bundle is "
                                          "damaged or from another setup, refit") from error
        check_backbone(saved.backbone, detector.backbone_.spec.to_dict(), directory)
        restore_sources(sources, saved)
        detector.sources_ = sources
        detector.n_references_ = saved.n_references
        detector.calibration_ = saved.calibration
        return detector
