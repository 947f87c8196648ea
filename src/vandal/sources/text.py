"""Zero-shot text scoring (docs/method.md §3 and §4): APRIL-GAN's patch-text map and image score.

Needs a CLIP backbone and a class name. The map is, per tap, the abnormal probability of the
projected tokens (trained adapters, or the training-free projection) against the prompt ensemble,
at one scale, pooled scales, or exact WinCLIP windows; the image score is the abnormal probability
of the global embedding. Text features (and adapters) are computed at fit and saved with the
detector, so a loaded detector scores with exactly the features it was fitted with.
"""

from __future__ import annotations

import functools
import operator

import torch
import torch.nn.functional as F

from ..scoring.text import pooled_text_maps, text_anomaly_maps, text_image_score
from .base import FixedLevels, HoldOut, ScoreSource, SourceScore

ZERO_SHOT_LEVEL = 0.5  # a text probability of 0.5 is the natural boundary (per tap for the map)
ADAPTER_PREFIX = "adapters."


class TextSource(ScoreSource):
    name = "text"
    option = "text.class_name (--class-name)"
    space = "views"
    map_in_image_score = False  # the image score is the global text probability

    def __init__(self, config, embedder):
        super().__init__(config, embedder)
        backbone = embedder.backbone
        if not backbone.has_text:
            raise ValueError(f"class_name={config.text.class_name!r} asks for text scoring, but backbone "
                             f"{backbone.spec.name!r} has no text encoder; use a CLIP backbone or drop class_name")
        self.text: torch.Tensor | None = None
        self.adapters = None

    @classmethod
    def wanted(cls, config, has_references: bool) -> bool:
        return bool(config.text.class_name)

    @property
    def features(self) -> torch.Tensor:
        """The prompt features ``[2, D]`` (normal, abnormal); set by :meth:`finish` or a loaded state."""
        if self.text is None:
            raise RuntimeError("the text source has no prompt features yet: fit or load the detector first")
        return self.text

    def carries_over(self, config) -> bool:
        return config.text == self.config.text and config.backbone == self.config.backbone

    def finish(self) -> bool:
        """Text features from the prompt ensemble, adapters from their file (once, at fit)."""
        from ..prompts import text_features

        if self.text is None:
            with torch.inference_mode():
                class_name = self.config.text.class_name
                if class_name is None:
                    raise ValueError("the text source needs text.class_name (--class-name)")
                self.text = text_features(self.embedder.backbone, class_name).float()
        if self.adapters is None and self.config.text.adapters:
            from ..scoring.adapters import load_adapters

            spec = self.embedder.backbone.spec
            self.adapters = load_adapters(self.config.text.adapters, spec).to(self.embedder.device).eval()
        return True

    def hold_out_alone(self, item) -> HoldOut:
        return "neutral"  # it learns nothing from the references

    def score(self, item) -> SourceScore:
        out = item.output
        with torch.inference_mode():
            projected = self.adapters(out.taps) if self.adapters is not None else self.embedder.backbone.project_taps(out.taps)
        maps = self._maps([p.float() for p in projected], item.inputs)
        return SourceScore(maps, float(text_image_score(out.global_embedding, self.features).mean()))

    def _maps(self, projected: list[torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """Projected taps ``[V, h, w, D]`` -> text map ``[V, S, S]`` in ``[0, n_taps]`` at the chosen scales."""
        size, scales, text = self.embedder.size, self.config.text.scales, self.features
        if scales == "pooled":
            return pooled_text_maps(projected, text, size)
        if scales != "windows":
            return text_anomaly_maps(projected, text, size)
        backbone = self.embedder.backbone
        if not hasattr(backbone, "grid_size"):
            raise ValueError("text_scales='windows' needs a CLIP backbone")
        from ..scoring.windows import window_text_map

        sizes = tuple(self.config.text.window_sizes)
        with torch.inference_mode():
            windows = window_text_map(backbone, inputs.to(self.embedder.device), text, sizes)
        windows = F.interpolate(windows[:, None], size=(size, size), mode="bilinear", align_corners=True)[:, 0]
        # Per tap: the harmonic mean of its full-image patch probability and every window scale, each
        # weighted alike (docs/method.md §4). `windows` is already the harmonic mean of n scales, so
        # 1/w_2 + ... + 1/w_n = n / windows.
        n = len(sizes)
        return functools.reduce(operator.add, ((n + 1) / (text_anomaly_maps([p], text, size).reciprocal() + n / windows)
                                               for p in projected))

    def fixed_levels(self) -> FixedLevels:
        taps = len(self.embedder.backbone.spec.taps)
        return FixedLevels(image=ZERO_SHOT_LEVEL, pixel=ZERO_SHOT_LEVEL * taps, method="zero-shot")

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"text_features": self.features.contiguous().cpu()}
        if self.adapters is not None:
            state.update({ADAPTER_PREFIX + k: v.contiguous().cpu() for k, v in self.adapters.state_dict().items()})
        return state

    def meta(self) -> dict:
        return {"class_name": self.config.text.class_name, "adapters": self.adapters is not None}

    def load_state_dict(self, state: dict[str, torch.Tensor], meta: dict) -> None:
        self.text = state["text_features"].float().to(self.embedder.device)
        adapters = {k[len(ADAPTER_PREFIX):]: v for k, v in state.items() if k.startswith(ADAPTER_PREFIX)}
        if adapters:
            from ..scoring.adapters import adapters_from_state

            spec = self.embedder.backbone.spec
            self.adapters = adapters_from_state(adapters, spec).to(self.embedder.device).eval()

    def expected_state(self, meta: dict) -> dict[str, tuple[int | None, ...]] | None:
        spec = self.embedder.backbone.spec
        shapes: dict[str, tuple[int | None, ...]] = {"text_features": (2, spec.embed_dim)}
        if meta.get("adapters"):
            for i, width in enumerate(spec.tap_dims):
                shapes[f"{ADAPTER_PREFIX}fc.{i}.weight"] = (spec.embed_dim, width)
                shapes[f"{ADAPTER_PREFIX}fc.{i}.bias"] = (spec.embed_dim,)
        return shapes
