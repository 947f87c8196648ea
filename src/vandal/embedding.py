"""Embed once, score many (segment-anything's ``set_image``): each image goes through the backbone once.

An :class:`EmbeddedImage` computes, on first use only, what score sources ask of it: its square
views and their inputs, the backbone output of those views, its segmented objects and their crops'
output. An :class:`EmbeddedReference` embeds a reference with all its augmented views in one go;
its identity views become the reference's :class:`EmbeddedImage`, so calibration (which scores the
references as test images) reuses them instead of embedding them again.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from .backbones import Backbone, BackboneOutput
from .data.layout import View, image_views, to_input
from .memory.align import turn_half
from .memory.augment import Transform, augment
from .memory.individual import ObjectCrop, crop_inputs, crop_object, find_objects

PRECISIONS = ("float32", "bfloat16", "float16")


def take(out: BackboneOutput, rows: torch.Tensor | slice) -> BackboneOutput:
    """The rows ``rows`` of every tap (and of the global embedding)."""
    glob = out.global_embedding
    return BackboneOutput(taps=[t[rows] for t in out.taps], global_embedding=None if glob is None else glob[rows])


class Embedder:
    """The frozen backbone (and segmenter) behind every source: batching, device, views, object crops.

    resize: the view policy (``squash``, ``pad``, ``tile``). segmenter: object segmenter (None when no
    source needs objects). align: orientation-normalised object crops. precision: ``float32``, or
    ``bfloat16`` / ``float16`` autocast for the frozen backbone (outputs are float32 either way).
    """

    def __init__(self, backbone: Backbone, resize: str, batch_size: int, device: str,
                 segmenter=None, align: bool = True, precision: str = "float32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.backbone = backbone
        self.resize = resize
        self.batch_size = batch_size
        self.device = device
        self.segmenter = segmenter
        self.align = align
        self.precision = precision
        self.lighting: tuple[float, float] | None = None  # the product's grey-level (mean, std), when normalised

    def _autocast(self):
        if self.precision == "float32":
            return nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=getattr(torch, self.precision))

    @property
    def size(self) -> int:
        return self.backbone.image_size

    def embed(self, inputs: torch.Tensor) -> BackboneOutput:
        """``[N, 3, S, S]`` -> taps and global embeddings (float32) on the device, ``batch_size`` at a time."""
        taps: list[list[torch.Tensor]] = []
        globals_: list[torch.Tensor] = []
        with torch.inference_mode(), self._autocast():
            for start in range(0, inputs.shape[0], self.batch_size):
                out = self.backbone(inputs[start: start + self.batch_size].to(self.device))
                taps.append([t.float() for t in out.taps])
                if out.global_embedding is not None:
                    globals_.append(out.global_embedding.float())
        joined = [torch.cat([batch[i] for batch in taps]) for i in range(len(taps[0]))]
        return BackboneOutput(taps=joined, global_embedding=torch.cat(globals_) if globals_ else None)

    def views(self, image: np.ndarray) -> tuple[list[View], torch.Tensor]:
        """``[H, W, 3]`` uint8 -> (views, ``[V, 3, S, S]`` inputs) under the resize policy (after the
        product's lighting normalisation, when it has one)."""
        return image_views(image, self.size, self.backbone.preprocessing, self.resize, self.lighting)

    def image(self, image: np.ndarray, name: str | None = None,
              views: tuple[list[View], torch.Tensor] | None = None) -> EmbeddedImage:
        """``views``: the image's views and inputs when already made (e.g. in a decoding thread)."""
        return EmbeddedImage(self, image, name, views=views)

    def embed_items(self, items: list[EmbeddedImage]) -> None:
        """Embed the views of several images in shared forwards (``batch_size`` views each): one
        batched forward serves many images, which a GPU needs to be busy."""
        todo = [item for item in items if "output" not in item.__dict__]
        if len(todo) < 2:
            return
        counts = [item.inputs.shape[0] for item in todo]
        out = self.embed(torch.cat([item.inputs for item in todo]))
        start = 0
        for item, count in zip(todo, counts):
            item.prime(output=take(out, slice(start, start + count)))
            start += count

    def reference(self, image: np.ndarray, transforms: list[Transform]) -> EmbeddedReference:
        return EmbeddedReference(self, image, transforms)

    def find_objects(self, image: np.ndarray) -> list[ObjectCrop]:
        if self.segmenter is None:
            raise RuntimeError("no segmenter: this detector has no object-level source")
        return find_objects(image, self.segmenter, align=self.align)


@dataclass
class ObjectSet:
    """One image's objects and their crops as backbone inputs ``[N, 3, S, S]`` (N may be 0)."""

    crops: list[ObjectCrop]
    inputs: torch.Tensor


class EmbeddedImage:
    """One decoded image and, computed on first use and kept, everything sources ask of it."""

    def __init__(self, embedder: Embedder, image: np.ndarray, name: str | None = None,
                 views: tuple[list[View], torch.Tensor] | None = None, output: BackboneOutput | None = None):
        self.embedder = embedder
        self.image = image
        self.name = name
        self.height, self.width = image.shape[:2]
        # A reference's identity views arrive already planned and embedded.
        self.prime(_views=views, output=output)

    def prime(self, **cached: object) -> None:
        """Fill cached values computed elsewhere (None values are skipped; existing ones are kept)."""
        for key, value in cached.items():
            if value is not None:
                self.__dict__.setdefault(key, value)  # the cached_property slot of that name

    @cached_property
    def _views(self) -> tuple[list[View], torch.Tensor]:
        return self.embedder.views(self.image)

    @property
    def views(self) -> list[View]:
        return self._views[0]

    @property
    def inputs(self) -> torch.Tensor:
        """``[V, 3, S, S]`` normalised views."""
        return self._views[1]

    @cached_property
    def output(self) -> BackboneOutput:
        """The backbone output of the views: taps ``[V, h, w, C]``, global ``[V, D]`` or None."""
        return self.embedder.embed(self.inputs)

    @cached_property
    def objects(self) -> ObjectSet:
        """Segmented objects (largest first) and their crops as inputs."""
        crops = self.embedder.find_objects(self.image)
        backbone = self.embedder.backbone
        return ObjectSet(crops, crop_inputs(self.image, crops, backbone.image_size, backbone.preprocessing))

    @cached_property
    def object_output(self) -> BackboneOutput:
        """The backbone output of the object crops (needs at least one object)."""
        return self.embedder.embed(self.objects.inputs)

    @cached_property
    def turned_object_output(self) -> BackboneOutput:
        """The object crops turned by 180 degrees (aligned crops: the axis has no direction)."""
        return self.embedder.embed(turn_half(self.objects.inputs))


class EmbeddedReference:
    """A reference image embedded with all its augmented views (``transforms``, identity first)."""

    def __init__(self, embedder: Embedder, image: np.ndarray, transforms: list[Transform]):
        if not transforms or transforms[0] != Transform():
            raise ValueError("reference transforms must start with the identity")
        self.embedder = embedder
        self.transforms = transforms
        planned = [embedder.views(view) for view in augment(image, transforms)]
        inputs = torch.cat([p[1] for p in planned])
        self.output = embedder.embed(inputs)
        identity = planned[0]
        # Rows picked by an index tensor are a copy: a slice would keep every augmented view's taps
        # alive as long as the item (kept for calibration), 11x the memory per reference.
        self.item = EmbeddedImage(embedder, image, views=identity,
                                  output=take(self.output, torch.arange(identity[1].shape[0])))
        self.view_count = inputs.shape[0]

    @cached_property
    def object_output(self) -> tuple[BackboneOutput | None, int]:
        """(the crops of every object, each in every transform, embedded; the object count).

        Each crop is augmented, not the scene: an object turns about its own centre, as a part
        does. Aligned crops are also banked turned by 180 degrees (their axis has no direction).
        """
        item = self.item
        objects = item.objects.crops
        if not objects:
            return None, 0
        crops = [crop_object(item.image, o) for o in objects]
        if self.embedder.align:
            crops += [np.ascontiguousarray(crop[::-1, ::-1]) for crop in crops]
        size, prep = self.embedder.size, self.embedder.backbone.preprocessing
        inputs = torch.stack([to_input(view, size, prep) for crop in crops for view in augment(crop, self.transforms)])
        out = self.embedder.embed(inputs)
        # The identity view of each (unturned) crop is what scoring this reference as a test image
        # embeds: keep it, so calibration does not embed the crops again.
        identity = torch.arange(len(objects)) * len(self.transforms)
        item.prime(object_output=take(out, identity.to(out.taps[0].device)))
        return out, len(objects)
