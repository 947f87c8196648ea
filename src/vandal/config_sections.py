"""The configuration's sections: one frozen dataclass per concern, each validating itself.

Every field is declared with :func:`option`, whose metadata (help, alias, flag, stage, choices) the
command line, the evaluation harness, the service and the docs derive their options from
(:mod:`vandal.config` builds the field table and the whole :class:`~vandal.config.DetectorConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RESIZE_POLICIES = ("auto", "squash", "pad", "tile")
LIGHTING_MODES = ("auto", "on", "off")
INDIVIDUAL_MODES = ("auto", "on", "off")
FUSIONS = ("sum", "mean")
TEXT_SCALES = ("pooled", "windows")
MUTUAL_MODES = ("objects", "batch")
MUTUAL_SCORINGS = ("nearest", "musc")
TEXTURE_MODES = ("auto", "on", "off")
DISTRIBUTION_MODES = ("auto", "on", "off", "only")
HIDDEN_ACTS = ("gelu", "quick_gelu")
MAX_IMAGE_SIZE = 4096  # backbone input side; the papers use 518
# The CLIP backbone that text defaults to; defined here, not in vandal.backbones, so that the command
# line can name it without importing torch.
DEFAULT_CLIP = "openai/clip-vit-large-patch14-336"


class ConfigError(ValueError):
    """A setting that does not exist, has the wrong type, or contradicts another; names the key."""


def option(default: Any, help: str, *, alias: str | None = None, stage: str = "fit",
           choices: tuple | None = None, flag: str | None = None) -> Any:
    """A config field with what the surfaces need to expose it.

    alias: the short name (kwargs, ``--set``; default: the field name). flag: the CLI flag (default
    ``--`` + alias with dashes). stage: ``fit`` or ``predict``. choices: allowed values (None allowed
    too when the default is None).
    """
    meta = {"help": help, "alias": alias, "stage": stage, "choices": choices, "flag": flag}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults: use a tuple")
    return field(default=default, metadata=meta)


def check_choice(key: str, value: Any, choices: tuple, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}"
                          f"{' (or unset)' if allow_none else ''}, got {value!r}")


def _odd_sizes(key: str, values: tuple[int, ...] | None) -> None:
    if not values or any(r < 1 or r % 2 == 0 for r in values):
        raise ConfigError(f"{key} takes odd sizes >= 1 (e.g. 1,3,5), got {values}")


@dataclass(frozen=True)
class BackboneConfig:
    """What extracts the features (docs/method.md §1); preprocessing travels with the weights."""

    name: str = option("efficientnet-lite2", "Registry name, Hugging Face id (openai/clip-vit-*, facebook/dinov2-*) or local model directory "
                                              "(CLIP or DINOv2, as written by save_pretrained).",
                       alias="backbone")
    image_size: int | None = option(None, "Backbone input side in pixels (default: the backbone's).")
    taps: tuple[int, ...] | None = option(None, "Tap set: strides (EfficientNet: 8,16) or 1-based ViT blocks "
                                                "(CLIP: 6,12,18,24; DINOv2 also -1 for the last); default: the "
                                                "backbone's.")
    hidden_act: str | None = option(None, "CLIP activation override: gelu reproduces the APRIL-GAN reference at "
                                          "518 px (default: the checkpoint's own).", choices=HIDDEN_ACTS)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("backbone.name must name a backbone")
        if self.image_size is not None and not 0 < self.image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(f"backbone.image_size must be in [1, {MAX_IMAGE_SIZE}] pixels, got {self.image_size}")
        if self.taps is not None and (not self.taps or len(set(self.taps)) != len(self.taps)):
            raise ConfigError(f"backbone.taps must list distinct taps, got {self.taps}")


@dataclass(frozen=True)
class ViewsConfig:
    """How an image of any size and aspect becomes square backbone inputs (data/layout.py)."""

    resize: str = option("auto", "auto (decided once from the references: tile when their long side is >= 1.5 x the "
                                 "short one, else squash), "
                                 "squash (the papers), pad, or tile (long images).", choices=RESIZE_POLICIES)
    lighting: str = option("off", "Bring every image's brightness and contrast to the references'. auto: when the "
                                  "references' brightness varies between parts (data/lighting.py); on: always; "
                                  "off (default: it helped one relit draw and hurt another, README).",
                           choices=LIGHTING_MODES)


@dataclass(frozen=True)
class MemoryConfig:
    """The global memory bank of reference patches (docs/method.md §5)."""

    neighbourhood: tuple[int, ...] = option((3,), "Memory comparison scales: r x r token averaging, e.g. 1,3,5.")
    augment: bool = option(False, "Add 11 augmented views of each reference (rotations, shifts, flips).")
    texture: str = option("auto", "Texture handling. auto: when the references are a texture (their token "
                                  "statistics do not depend on the place), compare token by token (neighbourhood "
                                  "1) and bank the augmented views the texture is invariant to; on: always; off: "
                                  "never (neighbourhood and augment as set).", choices=TEXTURE_MODES)
    rotations: bool = option(False, "Also bank each reference turned by 45, 90, ..., 315 degrees (AnomalyDINO's "
                                    "rotation augmentation, reflection padding).")
    mask_background: bool = option(False, "Zero-shot background masking of test patches (AnomalyDINO, for objects on "
                                          "a plain background; DINOv2 taps): patches off the first principal "
                                          "component's object side score 0.")
    top_fraction: float | None = option(None, "Image score: the mean of this highest fraction of the patch "
                                              "distances, summed over taps (AnomalyDINO: 0.01), instead of the map "
                                              "maximum; default: the maximum.")
    coreset: int | None = option(None, "Memory rows kept per bank, in reference views (e.g. 8: as many as 8 "
                                       "references without augment; a greedy k-centre coreset of the rest); "
                                       "default: keep every row.")

    def __post_init__(self) -> None:
        _odd_sizes("memory.neighbourhood", self.neighbourhood)
        if self.top_fraction is not None and not 0 < self.top_fraction <= 1:
            raise ConfigError(f"memory.top_fraction must be a fraction in (0, 1] (or unset: the map maximum), "
                              f"got {self.top_fraction}")
        if self.coreset is not None and self.coreset < 1:
            raise ConfigError(f"memory.coreset must be >= 1 reference views (or unset: keep every row), got {self.coreset}")


@dataclass(frozen=True)
class ObjectsConfig:
    """The individual (per-object) memory bank of Multi-Scale Memory Comparison."""

    individual: str = option("off", "Per-object memory bank: on, off, or auto (on when every reference holds "
                                    ">= 2 objects).", choices=INDIVIDUAL_MODES)
    segmenter: str = option("classical", "Object segmenter: classical (no weights), sam, an HF SAM id or a "
                                         "local SAM directory.")
    fusion: str = option("sum", "Global + object maps: sum, or mean of reference-normalised maps.", choices=FUSIONS)
    align: bool = option(True, "Turn each object crop to its main axis before comparing (orientation-robust).",
                         alias="align_objects")


@dataclass(frozen=True)
class DistributionConfig:
    """The image-level distribution score: the image's mean token against the references' Gaussian."""

    mode: str = option("auto", "Image-level distribution score (sees global changes: a texture finer, coarser or "
                               "turned). on: joins the image score by maximum; auto: as on, unless the references "
                               "(k >= 2; one tiled long part: its tiles) differ from each other more than one "
                               "reference's halves do (parts that vary globally: lighting, placement); only: it "
                               "alone is the image score (maps still from the memory); off. Needs a deepest token grid of >= 8 x 8 (128 px at "
                               "stride 16): below, on and auto switch it off with a warning and only is refused.",
                       alias="distribution",
                       choices=DISTRIBUTION_MODES)


@dataclass(frozen=True)
class TextConfig:
    """Zero-shot text prompts (docs/method.md §2-4): CLIP backbones only."""

    class_name: str | None = option(None, "Object name for the text prompts (CLIP backbones): turns the text "
                                          "map on.")
    adapters: str | None = option(None, "Trained APRIL-GAN adapters (safetensors or the authors' checkpoint).")
    scales: str | None = option(None, "Multi-scale text map: pooled (1,3,5 token pooling) or windows (exact "
                                      "WinCLIP windows).", alias="text_scales", choices=TEXT_SCALES)
    window_sizes: tuple[int, ...] = option((2, 3), "Window sizes in patches for text_scales=windows.")

    def __post_init__(self) -> None:
        if (self.adapters or self.scales) and not self.class_name:
            raise ConfigError("text.adapters and text.scales shape the text map, which needs text.class_name "
                              "(and a CLIP backbone): give --class-name or drop them")
        if not self.window_sizes or any(r < 1 for r in self.window_sizes):
            raise ConfigError(f"text.window_sizes must be sizes >= 1, got {self.window_sizes}")


@dataclass(frozen=True)
class MutualConfig:
    """Zero-shot, text-free, reference-free comparison (Multi-Scale Memory Comparison)."""

    mode: str | None = option(None, "objects: each object against the other objects of its image; batch: each "
                                    "image against the OTHER TEST IMAGES of the call (transductive).",
                              alias="mutual", choices=MUTUAL_MODES)
    scoring: str = option("nearest", "batch: nearest (each token's nearest cosine distance over the other images) "
                                     "or musc (MuSc: LayerNorm, zero-padded neighbourhoods, the mean of the lowest "
                                     "fraction of per-image Euclidean distances).", alias="mutual_scoring",
                          choices=MUTUAL_SCORINGS)
    lowest: float = option(0.3, "musc: fraction of the other images whose nearest distances are averaged (MSM).",
                           alias="mutual_lowest")
    rescore: tuple[int, ...] | None = option(None, "batch: re-score image scores over the k-nearest graph of the "
                                                   "images' global features, averaged over these k (RsCIN: 1,2,3); "
                                                   "default: the map maximum.", alias="rescore")
    batch_cap: int | None = option(None, "batch: compare at most this many images at once; a larger call is split "
                                         "into random, near-equal parts (the all-pairs cost grows with the square); "
                                         "default: the whole call.", alias="mutual_batch_cap")

    @property
    def transductive(self) -> bool:
        """Whether a score depends on the other test images of the call (batch mode)."""
        return self.mode == "batch"

    def __post_init__(self) -> None:
        if self.mode != "batch" and (self.scoring != "nearest" or self.rescore or self.batch_cap is not None):
            raise ConfigError("mutual.scoring, mutual.rescore and mutual.batch_cap shape the batch comparison: "
                              "set mutual.mode = batch (--mutual batch)")
        if not 0 < self.lowest <= 1:
            raise ConfigError(f"mutual.lowest must be a fraction in (0, 1], got {self.lowest}")
        if self.rescore is not None and (not self.rescore or any(k < 1 for k in self.rescore)):
            raise ConfigError(f"mutual.rescore takes neighbour counts >= 1 (e.g. 1,2,3), got {self.rescore}")
        if self.batch_cap is not None and self.batch_cap < 4:
            raise ConfigError(f"mutual.batch_cap must be >= 4 images (or unset), got {self.batch_cap}")


@dataclass(frozen=True)
class PostConfig:
    """Post-processing and decisions."""

    smoothing_sigma: float = option(4.0, "Gaussian smoothing of maps in input pixels (0: off, as the APRIL-GAN "
                                         "reference).")
    image_threshold: float | None = option(None, "Decision level on pred_score (default 0.5, the level learned "
                                                 "from the references).", stage="predict")
    pixel_threshold: float | None = option(None, "Mask level on the calibrated map (default 0.5).", stage="predict")

    def __post_init__(self) -> None:
        if not 0 <= self.smoothing_sigma <= 100:
            raise ConfigError(f"post.smoothing_sigma must be in [0, 100] pixels (0: off), got {self.smoothing_sigma}")
        for key in ("image_threshold", "pixel_threshold"):
            value = getattr(self, key)
            if value is not None and not (value > 0 and value < float("inf")):
                raise ConfigError(f"post.{key} must be a positive finite number, got {value!r}")
