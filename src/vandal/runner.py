"""One streaming runner behind every engine, and the :class:`Predictor` protocol its users know.

The torch :class:`~vandal.detector.Detector` and the ONNX
:class:`~vandal.export.onnx_detector.OnnxDetector` differ only in how a chunk of decoded images
becomes fused answers (:class:`~vandal.scoring.fusion.ScoredImage`): a backbone forward and the score
sources, or an onnxruntime graph run. Everything around that is here, once: runtime options and
``set_params``, decoding ahead in threads, chunked streaming in input order with unreadable inputs
passed through, per-call decision levels, and :func:`~vandal.prediction.decide`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from .data.images import ImageInput, UnreadableImageError, as_image_list, decode_ahead, describe
from .prediction import Levels, Prediction, decide, decision_levels, predictions_of

if TYPE_CHECKING:
    from .config import DetectorConfig
    from .scoring.fusion import ScoredImage
    from .scoring.levels import Calibration

# (input, decoded image or its error, prediction or None), in input order.
Streamed = tuple[ImageInput, "np.ndarray | UnreadableImageError", "Prediction | None"]
R = TypeVar("R", bound="Runner")


@runtime_checkable
class Predictor(Protocol):
    """What the CLI, the service and Ray workers use of a loaded model, whatever runs it (see
    :func:`vandal.load`). Thresholds given to a call apply to that call only."""

    config: DetectorConfig
    batch_size: int
    progress: bool
    max_pixels: int | None
    n_references_: int

    @property
    def backbone_name(self) -> str: ...

    @property
    def input_size(self) -> int: ...

    @property
    def fitted(self) -> bool: ...

    @property
    def transductive(self) -> bool: ...

    @property
    def source_names(self) -> list[str]: ...

    def set_params(self, **params: Any) -> Predictor: ...

    def predict_image(self, image: np.ndarray, name: str | None = None, grid: bool = False, *,
                      image_threshold: float | None = None, pixel_threshold: float | None = None) -> Prediction: ...

    def predict_stream(self, images: Iterable[ImageInput], total: int | None = None, *,
                       image_threshold: float | None = None, pixel_threshold: float | None = None
                       ) -> Iterator[Streamed]: ...

    def iter_predict(self, images: Iterable[ImageInput], skip_unreadable: bool = False, total: int | None = None, *,
                     image_threshold: float | None = None, pixel_threshold: float | None = None
                     ) -> Iterator[Prediction | UnreadableImageError]: ...

    def predict(self, images: Iterable[ImageInput] | ImageInput, *, image_threshold: float | None = None,
                pixel_threshold: float | None = None) -> list[Prediction]: ...


class Runner:
    """The streaming loop an engine inherits; it supplies :meth:`_prepare` (decoded image -> its inputs,
    run in the decoding threads) and :meth:`_score` (a chunk -> fused answers)."""

    RUNTIME: ClassVar[tuple[str, ...]] = ("batch_size", "progress", "max_pixels")
    progress_label: ClassVar[str] = "predict"
    config: DetectorConfig
    calibration_: Calibration
    batch_size: int
    progress: bool
    max_pixels: int | None

    # ------------------------------------------------------------------ what an engine supplies
    @property
    def transductive(self) -> bool:
        """Whether scores depend on the other images of a call (then a call is one chunk)."""
        return False

    def _check_ready(self) -> None:
        """Raise when the engine cannot predict yet (e.g. not fitted)."""

    def _prepare(self, image: np.ndarray) -> Any:
        """A decoded ``[H, W, 3]`` uint8 image -> what :meth:`_score` needs of it besides the image."""
        raise NotImplementedError

    def _score(self, chunk: list[tuple[np.ndarray, str | None, Any]]) -> Iterator[ScoredImage]:
        """``(image, name, prepared)`` of a chunk's readable images -> their fused answers, in order."""
        raise NotImplementedError

    def _decode_workers(self) -> int:
        return 1

    def _set_fixed(self, params: dict[str, Any]) -> None:
        """Apply the non-runtime ``params`` (config fields) as the engine allows."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def set_params(self: R, **params: Any) -> R:
        """Runtime options (:attr:`RUNTIME`) and config fields (see the engine); returns self."""
        for key in self.RUNTIME:
            if key in params:
                setattr(self, key, params.pop(key))
        if params:
            self._set_fixed(params)
        return self

    def levels(self, image_threshold: float | None = None, pixel_threshold: float | None = None) -> Levels:
        """This call's decision levels (:func:`~vandal.prediction.decision_levels`)."""
        return decision_levels(self.config.post, image_threshold, pixel_threshold)

    def predict_image(self, image: np.ndarray, name: str | None = None, grid: bool = False, *,
                      image_threshold: float | None = None, pixel_threshold: float | None = None) -> Prediction:
        """One decoded ``[H, W, 3]`` uint8 image -> its :class:`~vandal.prediction.Prediction`.

        grid: maps (and the image score) on the backbone's input grid ``[S, S]`` rather than at the
        image's size (``resize="squash"`` only): how the APRIL-GAN reference evaluates.
        """
        self._check_ready()
        if self.transductive:
            raise ValueError("mutual='batch' scores images against each other: use predict(images) on the whole batch")
        levels = self.levels(image_threshold, pixel_threshold)
        scored = next(self._score([(image, name, self._prepare(image))]))
        return decide(scored, self.calibration_, levels, name, grid)

    def predict_stream(self, images: Iterable[ImageInput], total: int | None = None, *,
                       image_threshold: float | None = None, pixel_threshold: float | None = None
                       ) -> Iterator[Streamed]:
        """``(input, decoded image or its error, prediction or None)`` in input order.

        Decoding (and :meth:`_prepare`) runs ahead in threads and ``batch_size`` images share each
        chunk; memory stays flat for any number of images. A transductive engine sees every image first.
        """
        self._check_ready()
        levels = self.levels(image_threshold, pixel_threshold)
        if total is None and hasattr(images, "__len__"):
            total = len(images)  # type: ignore[arg-type]
        size = None if self.transductive else self.batch_size
        decoded = tqdm(enumerate(decode_ahead(images, self.max_pixels, ahead=self.batch_size,
                                              workers=self._decode_workers(), prepare=self._prepare)),
                       desc=self.progress_label, unit="img", total=total, disable=not self.progress)
        chunk: list[tuple[ImageInput, int, Any]] = []
        for index, (entry, item) in decoded:
            chunk.append((entry, index, item))
            if size is not None and len(chunk) == size:
                yield from self._run_chunk(chunk, levels)
                chunk = []
        yield from self._run_chunk(chunk, levels)

    def _run_chunk(self, chunk: list[tuple[ImageInput, int, Any]], levels: Levels) -> Iterator[Streamed]:
        names = [describe(entry, index) for entry, index, _ in chunk]
        ready: list[tuple[np.ndarray, str | None, Any]] = [(item[0], name, item[1]) for (_, _, item), name in zip(chunk, names)
                 if not isinstance(item, UnreadableImageError)]
        answers = self._score(ready) if ready else iter(())
        for (entry, _, item), name in zip(chunk, names):
            if isinstance(item, UnreadableImageError):
                yield entry, item, None
            else:
                yield entry, item[0], decide(next(answers), self.calibration_, levels, name)

    def iter_predict(self, images: Iterable[ImageInput], skip_unreadable: bool = False, total: int | None = None, *,
                     image_threshold: float | None = None, pixel_threshold: float | None = None
                     ) -> Iterator[Prediction | UnreadableImageError]:
        """Predict lazily (see :meth:`predict_stream`). With ``skip_unreadable``, an unreadable input
        yields its :class:`~vandal.data.images.UnreadableImageError` instead of stopping the run."""
        stream = self.predict_stream(images, total, image_threshold=image_threshold, pixel_threshold=pixel_threshold)
        yield from predictions_of(stream, skip_unreadable)

    def predict(self, images: Iterable[ImageInput] | ImageInput, *, image_threshold: float | None = None,
                pixel_threshold: float | None = None) -> list[Prediction]:
        """Images (paths, PIL images or arrays) -> one :class:`~vandal.prediction.Prediction` each;
        ``image_threshold`` / ``pixel_threshold``: this call's decision levels (None: the config's)."""
        found = self.iter_predict(as_image_list(images), image_threshold=image_threshold,
                                  pixel_threshold=pixel_threshold)
        return [p for p in found if isinstance(p, Prediction)]
