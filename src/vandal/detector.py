"""The detector: ``fit`` on a few normal images, ``predict`` anomaly scores, maps and masks.

Estimator style (scikit-learn): ``__init__`` stores parameters only, ``fit`` learns the state that
ends in ``_`` (backbone, memory banks, text features, calibration), ``predict`` never refits.

Per image: square views of the image (``resize`` policy) -> backbone taps -> per tap, nearest
cosine distance to the reference memory (averaged over neighbourhood scales) upsampled to the
input and summed over taps (METHOD section 5) -> plus the zero-shot text map when the backbone has
text and a class name is given (METHOD section 3) -> Gaussian smoothing -> views merged back to
the original size -> calibrated on the references.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .backbones import DEFAULT_BACKBONE, Backbone, BackboneOutput, create_backbone
from .data.images import ImageInput, UnreadableImageError, as_image_list, decode_ahead, describe, load_image
from .data.layout import POLICIES, View, image_views
from .memory.augment import Transform, augment, calibration_transforms, paper_transforms
from .memory.bank import MemoryBank
from .memory.maps import sum_over_taps
from .memory.individual import FUSIONS, INDIVIDUAL_MODES
from .object_scoring import ObjectScoring, SourceMaps
from .memory.pooling import pool_neighbourhood
from .prediction import Prediction
from .scoring.calibration import DECISION_LEVEL, Calibration, calibrate, fixed_calibration
from .scoring.text import gaussian_smooth, pooled_text_maps, text_anomaly_maps, text_image_score

MAX_LOO_REFERENCES = 16  # leave-one-out calibration cost grows with k^2; 16 folds are plenty
# Thresholds = largest normal calibration score x margin. Measured on MVTec bottle (k = 1, 2, 4):
# normal test images scored up to ~2.7x the perturbed-reference maximum (k = 1) and ~1.2-1.4x the
# leave-one-out maximum (k >= 2), while defects scored above both margins. Overridable per detector.
CALIBRATION_MARGIN = {"leave-one-out": 1.25, "perturbed-reference": 2.5}
# Zero-shot mutual comparison has no normal data to calibrate on: a heuristic raw threshold per tap
# (nearest cosine distance to the siblings). On the synthetic multi-object scenes (EfficientNet,
# taps 8 and 16) normal objects' maxima stay below ~0.25 per tap, defects go above. Documented.
MUTUAL_THRESHOLD_PER_TAP = 0.3
MUTUAL_MODES = ("objects", "batch")


def resolve_device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    return device


class NotFittedError(RuntimeError):
    pass


class Detector(ObjectScoring):
    """Zero-/few-shot anomaly detector.

    backbone: registry name, Hugging Face CLIP id or local CLIP directory.
    image_size, taps: backbone input size and tap set (backbone defaults when None).
    class_name: object name for the text prompts (text backbones only): enables the zero-shot map.
    adapters: path to trained per-tap adapters (APRIL-GAN) for the text map.
    resize: how images of any aspect become square inputs: "squash", "pad" or "tile".
    neighbourhood: memory comparison scales (r x r token averaging), e.g. (1, 3, 5).
    augment: add the 11 augmented views of every reference to the memory.
    individual: individual (per-object) memory bank, "on", "off" or "auto" (on when every reference
        holds two or more segmented objects). segmenter: its segmenter ("classical", "sam", a dir).
    fusion: how the individual map joins the global one: "sum", or "mean" of the maps each divided
        by its own reference-calibrated scale (leave-one-out / perturbed-reference maxima).
    mutual: zero-shot, text-free, reference-free mode: "objects" scores each object of a test image
        against the other objects of the same image; "batch" scores each test image against the
        other test images given to one predict call (TRANSDUCTIVE: scores depend on the batch).
        Calibration is a fixed heuristic threshold (MUTUAL_THRESHOLD_PER_TAP per tap).
    align_objects: orientation-normalised object crops (individual bank and mutual="objects"): each
        object is turned so its major axis lies horizontal, and compared both ways round (on the
        synthetic capsule scenes it lifts both modes). False: axis-aligned boxes.
    text_scales: multi-scale text map (text backbones): None (single scale), "pooled" (token pooling
        over 1, 3, 5 neighbourhoods) or "windows" (exact WinCLIP windows of ``window_sizes`` patches).
    smoothing_sigma: Gaussian smoothing of the map in input pixels (0 turns it off).
    image_threshold, pixel_threshold: decision levels on the calibrated scores (default 0.5).
    """

    def __init__(self, backbone: str = DEFAULT_BACKBONE, image_size: int | None = None,
                 taps: Sequence[int] | None = None, *, class_name: str | None = None,
                 adapters: str | None = None, resize: str = "squash", neighbourhood: Sequence[int] = (3,),
                 augment: bool = False, individual: str = "off", segmenter: str = "classical",
                 fusion: str = "sum", mutual: str | None = None, align_objects: bool = True,
                 text_scales: str | None = None,
                 window_sizes: Sequence[int] = (2, 3), smoothing_sigma: float = 4.0, image_threshold: float | None = None,
                 pixel_threshold: float | None = None, batch_size: int = 8, device: str = "auto",
                 progress: bool = True):
        self.backbone = backbone
        self.image_size = image_size
        self.taps = taps
        self.class_name = class_name
        self.adapters = adapters
        self.resize = resize
        self.neighbourhood = neighbourhood
        self.augment = augment
        self.individual = individual
        self.segmenter = segmenter
        self.fusion = fusion
        self.mutual = mutual
        self.align_objects = align_objects
        self.text_scales = text_scales
        self.window_sizes = window_sizes
        self.smoothing_sigma = smoothing_sigma
        self.image_threshold = image_threshold
        self.pixel_threshold = pixel_threshold
        self.batch_size = batch_size
        self.device = device
        self.progress = progress

    # ------------------------------------------------------------------ set-up
    def _check_params(self) -> None:
        if self.resize not in POLICIES:
            raise ValueError(f"resize must be one of {POLICIES}, got {self.resize!r}")
        if not self.neighbourhood or any(r < 1 or r % 2 == 0 for r in self.neighbourhood):
            raise ValueError(f"neighbourhood sizes must be odd and >= 1, got {self.neighbourhood}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.individual not in INDIVIDUAL_MODES:
            raise ValueError(f"individual must be one of {INDIVIDUAL_MODES}, got {self.individual!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.text_scales not in (None, "pooled", "windows"):
            raise ValueError(f"text_scales must be None, 'pooled' or 'windows', got {self.text_scales!r}")
        if self.mutual not in (None, *MUTUAL_MODES):
            raise ValueError(f"mutual must be one of {MUTUAL_MODES} or None, got {self.mutual!r}")
        if self.smoothing_sigma < 0:
            raise ValueError(f"smoothing_sigma must be >= 0 (0 turns smoothing off), got {self.smoothing_sigma}")
        if (self.adapters or self.text_scales) and not self.class_name:
            raise ValueError("adapters and text_scales shape the text map, which needs a class_name (and a CLIP "
                             "backbone); give class_name or drop them")
        if self.image_size is not None and self.image_size <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")

    def _build(self, backbone: Backbone | None = None) -> None:
        self._check_params()
        self.device_ = resolve_device(self.device)
        self.backbone_ = backbone or create_backbone(self.backbone, self.image_size, self.taps, device=self.device_)
        self.segmenter_ = None
        if self.individual != "off" or self.mutual == "objects":
            from .segmentation import create_segmenter

            self.segmenter_ = create_segmenter(self.segmenter, **self._segmenter_options())
        self.individual_banks_: dict[str, MemoryBank] | None = None
        self.fusion_scales_: tuple[float, float] | None = None
        self.text_ = None
        self.adapters_ = None
        if self.class_name:
            if not self.backbone_.has_text:
                raise ValueError(
                    f"class_name={self.class_name!r} asks for text scoring, but backbone "
                    f"{self.backbone_.spec.name!r} has no text encoder; use a CLIP backbone or drop class_name"
                )
            from .prompts import text_features

            with torch.inference_mode():
                self.text_ = text_features(self.backbone_, self.class_name).float()
        if self.adapters:
            from .scoring.adapters import load_adapters

            self.adapters_ = load_adapters(self.adapters, self.backbone_.spec).to(self.device_).eval()
        elif getattr(self, "bundled_adapter_state", None) is not None:
            from .scoring.adapters import adapters_from_state

            self.adapters_ = adapters_from_state(self.bundled_adapter_state, self.backbone_.spec).to(self.device_).eval()

    def _segmenter_options(self) -> dict:
        """SAM runs where the detector runs (the classical segmenter takes no device)."""
        return {} if self.segmenter == "classical" else {"device": self.device_}

    @property
    def fitted(self) -> bool:
        return hasattr(self, "calibration_")

    # ------------------------------------------------------------------ features
    def _embed(self, inputs: torch.Tensor) -> BackboneOutput:
        """``[V, 3, S, S]`` -> taps and global embeddings on the detector's device, batched."""
        taps: list[list[torch.Tensor]] = []
        globals_: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, inputs.shape[0], self.batch_size):
                out = self.backbone_(inputs[start: start + self.batch_size].to(self.device_))
                taps.append([t.float() for t in out.taps])
                if out.global_embedding is not None:
                    globals_.append(out.global_embedding.float())
        joined = [torch.cat([batch[i] for batch in taps]) for i in range(len(taps[0]))]
        return BackboneOutput(taps=joined, global_embedding=torch.cat(globals_) if globals_ else None)

    def _memory_tokens(self, out: BackboneOutput) -> dict[str, torch.Tensor]:
        """Tap grids at every neighbourhood scale, keyed ``tap{i}.r{r}``."""
        return {f"tap{i}.r{r}": pool_neighbourhood(grid, r)
                for i, grid in enumerate(out.taps) for r in self.neighbourhood}

    # ------------------------------------------------------------------ scoring
    def _memory_maps(self, out: BackboneOutput, banks: dict[str, MemoryBank]) -> torch.Tensor:
        """V inputs -> per tap nearest distance (mean over scales), upsampled, summed: ``[V, S, S]``."""
        tokens = self._memory_tokens(out)
        return sum_over_taps((torch.stack([banks[f"tap{i}.r{r}"].distance_grid(tokens[f"tap{i}.r{r}"])
                                           for r in self.neighbourhood]).mean(0) for i in range(len(out.taps))),
                             self.backbone_.image_size)

    def _view_maps(self, out: BackboneOutput, banks: dict[str, MemoryBank] | None,
                   inputs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Backbone output of V views -> (raw maps ``[V, S, S]`` smoothed, text image scores ``[V]``)."""
        size = self.backbone_.image_size
        count = out.taps[0].shape[0]
        maps = self._memory_maps(out, banks) if banks else torch.zeros(count, size, size, device=out.taps[0].device)
        text_scores = None
        if self.text_ is not None:
            with torch.inference_mode():
                projected = self.adapters_(out.taps) if self.adapters_ is not None else self.backbone_.project_taps(out.taps)
            maps += self._text_maps([p.float() for p in projected], inputs)
            text_scores = text_image_score(out.global_embedding, self.text_)
        if self.smoothing_sigma > 0:
            maps = gaussian_smooth(maps, self.smoothing_sigma)
        return maps, text_scores

    def _text_maps(self, projected: list[torch.Tensor], inputs: torch.Tensor | None) -> torch.Tensor:
        """Projected taps ``[V, h, w, D]`` -> text map ``[V, S, S]`` in ``[0, n_taps]`` at the chosen scales."""
        size = self.backbone_.image_size
        if self.text_scales == "pooled":
            return pooled_text_maps(projected, self.text_, size)
        if self.text_scales != "windows":
            return text_anomaly_maps(projected, self.text_, size)
        if inputs is None or not hasattr(self.backbone_, "grid_size"):
            raise ValueError("text_scales='windows' needs a CLIP backbone and the input pixels")
        from .scoring.windows import window_text_map

        with torch.inference_mode():
            windows = window_text_map(self.backbone_, inputs.to(self.device_), self.text_, tuple(self.window_sizes))
        windows = F.interpolate(windows[:, None], size=(size, size), mode="bilinear", align_corners=True)[:, 0]
        # Per tap: the harmonic mean of its full-image patch probability and every window scale, each
        # weighted alike (METHOD section 4). `windows` is already the harmonic mean of n scales, so
        # 1/w_2 + ... + 1/w_n = n / windows.
        n = len(self.window_sizes)
        return sum((n + 1) / (text_anomaly_maps([p], self.text_, size).reciprocal() + n / windows)
                   for p in projected)

    def _raw_image_score(self, maps: torch.Tensor, text_scores: torch.Tensor | None, with_memory: bool) -> float:
        """One image's raw map -> its raw score: text probability (+ the map maximum with references)."""
        text = float(text_scores.mean()) if text_scores is not None else 0.0
        return text + float(maps.amax()) if with_memory else text

    # ------------------------------------------------------------------ fit
    def _prepare(self, image: np.ndarray) -> tuple[list[View], torch.Tensor]:
        return image_views(image, self.backbone_.image_size, self.backbone_.preprocessing, self.resize)

    def _reference_tokens(self, images: list[np.ndarray], transforms: list[Transform]) -> list[dict[str, torch.Tensor]]:
        out = []
        for image in tqdm(images, desc="fit: embedding references", unit="img", disable=not self.progress):
            inputs = torch.cat([self._prepare(view)[1] for view in augment(image, transforms)])
            out.append({k: v.reshape(-1, v.shape[-1]) for k, v in self._memory_tokens(self._embed(inputs)).items()})
        return out

    @staticmethod
    def _banks_from(tokens: list[dict[str, torch.Tensor]]) -> dict[str, MemoryBank]:
        banks = {}
        for key in tokens[0]:
            bank = MemoryBank(dim=tokens[0][key].shape[-1])
            bank.add(torch.cat([t[key] for t in tokens]))
            banks[key] = bank
        return banks

    def fit(self, normal_images: Iterable[ImageInput] | None = None) -> "Detector":
        """Learn the memory banks and the calibration from normal images; returns self.

        With no images and a text backbone + class_name, the detector is zero-shot.
        """
        self._build()
        images = [load_image(x) for x in as_image_list(normal_images)]
        self.n_references_ = len(images)
        self.individual_banks_, self.fusion_scales_, self.object_counts_ = None, None, []
        if self.mutual is not None:
            if images:
                raise ValueError("mutual comparison is the reference-free mode: call fit() with no images, "
                                 "or drop mutual to use the references")
            self.banks_ = {}
            n_taps = len(self.backbone_.spec.taps)
            level = MUTUAL_THRESHOLD_PER_TAP * n_taps + (0.5 * n_taps if self.text_ is not None else 0.0)
            self.calibration_ = fixed_calibration(level, level, f"mutual-{self.mutual} (heuristic)")
            return self
        if not images:
            if self.text_ is None:
                raise ValueError(
                    "fit needs at least one normal image; zero-shot (no references) needs a CLIP backbone "
                    "and a class_name"
                )
            self.banks_ = {}
            n_taps = len(self.backbone_.spec.taps)
            # Zero-shot: a text probability of 0.5 is the natural boundary, per tap for the map.
            self.calibration_ = fixed_calibration(0.5, 0.5 * n_taps, "zero-shot")
            return self
        transforms = paper_transforms() if self.augment else [Transform()]
        per_reference = self._reference_tokens(images, transforms)
        self.banks_ = self._banks_from(per_reference)
        per_object = self._fit_individual(images, transforms)
        self.calibration_ = self._calibrate(images, per_reference, per_object)
        return self

    def _calibrate(self, images: list[np.ndarray], per_reference: list[dict[str, torch.Tensor]],
                   per_object: list[dict[str, torch.Tensor] | None] | None = None) -> Calibration:
        """Normal scores without test data: leave-one-out over references (k >= 2), or small
        perturbations of the single reference scored against the memory (k = 1). The individual
        bank, when on, is left out the same way."""
        sources: list[SourceMaps] = []
        if len(images) >= 2:
            method = "leave-one-out"
            for i in tqdm(range(min(len(images), MAX_LOO_REFERENCES)), desc="fit: calibrating (leave-one-out)",
                          disable=not self.progress):
                banks = self._banks_from(per_reference[:i] + per_reference[i + 1:])
                individual = None
                if self.individual_banks_ is not None:
                    rest = [t for j, t in enumerate(per_object) if j != i and t is not None]
                    individual = self._banks_from(rest) if rest else None
                sources.append(self._source_maps(images[i], banks, individual))
                if self.individual_banks_ is not None and sources[-1].objects is None:
                    sources[-1].objects = torch.zeros(sources[-1].height, sources[-1].width, device=self.device_)
        else:
            method = "perturbed-reference"
            for view in augment(images[0], calibration_transforms()):
                sources.append(self._source_maps(view, self.banks_, self.individual_banks_))
        self._set_fusion_scales(sources)
        fused = [self._fuse(src, True)[1:] for src in sources]
        return calibrate(np.array([f[0] for f in fused]), np.array([f[1] for f in fused]), method,
                         CALIBRATION_MARGIN[method])

    # ------------------------------------------------------------------ predict
    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError("this Detector is not fitted yet: call fit(normal_images) or Detector.load(dir)")

    def predict_image(self, image: np.ndarray, name: str | None = None) -> Prediction:
        """One decoded ``[H, W, 3]`` uint8 image -> its :class:`Prediction`."""
        self._check_fitted()
        if self.mutual == "batch":
            raise ValueError("mutual='batch' scores images against each other: use predict(images) on the whole batch")
        return self._prediction(self._source_maps(image, self.banks_, self.individual_banks_), name)

    def _prediction(self, src: SourceMaps, name: str | None) -> Prediction:
        raw, raw_score, _ = self._fuse(src, bool(self.banks_) or self.mutual is not None)
        text = src.text
        raw_map = raw.cpu().numpy().astype(np.float32)
        anomaly_map = self.calibration_.pixel(raw_map).astype(np.float32)
        pred_score = float(self.calibration_.image(raw_score))
        image_level = DECISION_LEVEL if self.image_threshold is None else self.image_threshold
        pixel_level = DECISION_LEVEL if self.pixel_threshold is None else self.pixel_threshold
        return Prediction(pred_score=pred_score, anomaly_map=anomaly_map, pred_label=pred_score > image_level,
                          pred_mask=anomaly_map > pixel_level, raw_score=raw_score, path=name,
                          text_score=float(text.mean()) if text is not None else None)

    def iter_predict(self, images: Iterable[ImageInput], skip_unreadable: bool = False,
                     total: int | None = None) -> Iterator[Prediction | UnreadableImageError]:
        """Predict lazily, one image at a time (memory stays flat for any number of images).

        With ``skip_unreadable``, an unreadable input yields its :class:`UnreadableImageError`
        instead of stopping the run.
        """
        self._check_fitted()
        if total is None and hasattr(images, "__len__"):
            total = len(images)  # type: ignore[arg-type]
        if self.mutual == "batch":
            yield from self._iter_predict_batch(images, skip_unreadable)
            return
        decoded = tqdm(decode_ahead(images), desc="predict", unit="img", total=total, disable=not self.progress)
        for index, (item, image) in enumerate(decoded):
            if isinstance(image, UnreadableImageError):
                if not skip_unreadable:
                    raise image
                yield image
                continue
            yield self.predict_image(image, describe(item, index))

    def _iter_predict_batch(self, images: Iterable[ImageInput], skip_unreadable: bool
                            ) -> Iterator[Prediction | UnreadableImageError]:
        """mutual="batch": every image is needed before any is scored (transductive)."""
        loaded, names, errors = [], [], []
        for index, item in enumerate(images):
            try:
                loaded.append(load_image(item))
                names.append(describe(item, index))
            except UnreadableImageError as error:
                if not skip_unreadable:
                    raise
                errors.append(error)
        yield from errors
        for src, name in zip(self._mutual_batch_sources(loaded) if loaded else [], names):
            yield self._prediction(src, name)

    def predict(self, images: Iterable[ImageInput] | ImageInput) -> list[Prediction]:
        """Images (paths, PIL images or arrays) -> one :class:`Prediction` each."""
        return [p for p in self.iter_predict(as_image_list(images)) if isinstance(p, Prediction)]

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str) -> None:
        """Write the fitted detector to ``directory`` (safetensors + JSON, no pickle)."""
        from .bundle import save_detector

        self._check_fitted()
        save_detector(self, directory)

    @classmethod
    def load(cls, directory: str, device: str = "auto", progress: bool = True) -> "Detector":
        """Rebuild a detector saved by :meth:`save`; refuses incompatible bundles."""
        from .bundle import load_detector

        return load_detector(cls, directory, device=device, progress=progress)

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "backbone", "image_size", "taps", "class_name", "adapters", "resize", "neighbourhood", "augment",
            "individual", "segmenter", "fusion", "mutual", "align_objects", "text_scales", "window_sizes", "smoothing_sigma", "image_threshold", "pixel_threshold", "batch_size")}
