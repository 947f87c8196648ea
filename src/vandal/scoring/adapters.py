"""APRIL-GAN's per-tap linear adapters: the trainable slot that replaces ``project_taps``.

State-dict keys are ``fc.<i>.weight`` / ``fc.<i>.bias``, the layout of the authors' released
checkpoints (stored under ``trainable_linearlayer``), so those load with ``load_state_dict``.

On disk, our adapters are one safetensors file whose header metadata holds a JSON record (key
``vandal_adapters``): the backbone they were trained for (name, kind, taps, widths, image size),
the class names and the training settings. :func:`load_adapters` also reads the authors' torch
checkpoints (``torch.load(..., weights_only=True)`` only: never arbitrary pickles), which carry no
metadata, so only their shapes can be checked; ``vandal convert-adapters`` records the rest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from ..backbones.base import BackboneSpec

FORMAT = "vandal-adapters"
FORMAT_VERSION = 1
METADATA_KEY = "vandal_adapters"  # safetensors header key holding our JSON record
AUTHORS_KEY = "trainable_linearlayer"  # where APRIL-GAN's train.py stores the state dict


class IncompatibleAdaptersError(ValueError):
    """Adapters that do not fit the backbone in use (other backbone, widths or tap set)."""


class TapAdapters(nn.Module):
    """One ``nn.Linear(C_n, D)`` (with bias) per tap, applied token-wise."""

    def __init__(self, tap_dims: Sequence[int], embed_dim: int):
        super().__init__()
        self.fc = nn.ModuleList([nn.Linear(int(c), int(embed_dim)) for c in tap_dims])

    @classmethod
    def from_widths(cls, tap_dims: Sequence[int], embed_dim: int) -> TapAdapters:
        """Adapters for taps of widths ``tap_dims`` into the ``embed_dim`` joint space."""
        return cls(tap_dims, embed_dim)

    def forward(self, taps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """taps ``[B, h, w, C_n]`` (CLS already dropped) -> ``[B, h, w, D]`` each (not normalised)."""
        if len(taps) != len(self.fc):
            raise ValueError(f"{len(self.fc)} adapters for {len(taps)} taps")
        # Cast to the layer's dtype: taps may come from a half-precision backbone.
        return [fc(tap.to(fc.weight.dtype)) for fc, tap in zip(self.fc, taps)]  # type: ignore[arg-type]


def zero_shot_maps(adapters: TapAdapters, taps: Sequence[torch.Tensor], text: torch.Tensor,
                   size: int | tuple[int, int], smoothing_sigma: float = 0.0) -> torch.Tensor:
    """APRIL-GAN's zero-shot map with trained adapters (docs/method.md §3) -> ``[B, H, W]`` in ``[0, n]``.

    taps ``[B, h, w, C_n]``; text ``[2, D]``. Per tap: linear layer, normalise, ``100 * F @ T.T``,
    upsample the logits, softmax, abnormal channel; summed over taps. ``smoothing_sigma > 0``
    adds a Gaussian blur (not in the reference; off by default).
    """
    from .smoothing import gaussian_smooth
    from .text import text_anomaly_maps

    maps = text_anomaly_maps([p.float() for p in adapters(taps)], text, size)
    return gaussian_smooth(maps, smoothing_sigma) if smoothing_sigma > 0 else maps


# ---------------------------------------------------------------------------- metadata


def backbone_record(spec: BackboneSpec) -> dict[str, Any]:
    """What adapters record about their backbone: enough to refuse a different one."""
    return {"name": spec.name, "kind": spec.kind, "image_size": spec.image_size, "taps": list(spec.taps),
            "tap_dims": list(spec.tap_dims), "embed_dim": spec.embed_dim}


def adapters_metadata(backbone: dict[str, Any], class_names: Sequence[str] = (), source: str = "",
                      training: dict[str, Any] | None = None) -> dict[str, Any]:
    from .. import __version__

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "vandal_version": __version__,
            "backbone": dict(backbone), "class_names": list(class_names), "source": source,
            "training": training}


def adapter_widths(state: dict[str, torch.Tensor], where: str) -> tuple[list[int], int]:
    """Check the ``fc.<i>.weight/bias`` layout -> (tap widths, joint width)."""
    count = len(state) // 2
    expected = {f"fc.{i}.{p}" for i in range(count) for p in ("weight", "bias")}
    if not state or set(state) != expected:
        raise IncompatibleAdaptersError(
            f"{where}: expected adapter keys fc.<i>.weight / fc.<i>.bias for i = 0..n-1, got "
            f"{sorted(state)[:6]}{' ...' if len(state) > 6 else ''}"
        )
    dims, embeds = [], set()
    for i in range(count):
        weight, bias = state[f"fc.{i}.weight"], state[f"fc.{i}.bias"]
        if weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise IncompatibleAdaptersError(
                f"{where}: fc.{i} has weight {tuple(weight.shape)} and bias {tuple(bias.shape)}; "
                "expected [D, C] and [D]")
        dims.append(int(weight.shape[1]))
        embeds.add(int(weight.shape[0]))
    if len(embeds) != 1:
        raise IncompatibleAdaptersError(f"{where}: adapters map into different widths {sorted(embeds)}")
    return dims, embeds.pop()


def _describe(name: Any, taps: Any, dims: Sequence[int], embed: Any) -> str:
    return f"{name!r} (taps {tuple(taps) if taps is not None else '?'}, width {tuple(dims)} -> {embed})"


def _same_backbone_name(a: str, b: str) -> bool:
    """Names match as written, or as the same local directory written two ways."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def check_compatible(state: dict[str, torch.Tensor], metadata: dict[str, Any] | None,
                     spec: BackboneSpec, where: str) -> None:
    """Refuse adapters made for another backbone id/kind, tap set, tap widths or joint width."""
    dims, embed = adapter_widths(state, where)
    if spec.embed_dim is None:
        raise IncompatibleAdaptersError(
            f"{where}: adapters map into a text space, but backbone {spec.name!r} has none; use a CLIP backbone")
    saved = (metadata or {}).get("backbone") or {}
    here = _describe(spec.name, spec.taps, spec.tap_dims, spec.embed_dim)
    there = _describe(saved.get("name", "unknown (no metadata)"), saved.get("taps"), dims, embed)
    problems = []
    if dims != list(spec.tap_dims) or embed != spec.embed_dim:
        problems.append("tap count or widths differ")
    if saved:
        if saved.get("kind") != spec.kind:
            problems.append(f"backbone kind {saved.get('kind')!r} is not {spec.kind!r}")
        elif not _same_backbone_name(str(saved.get("name")), spec.name):
            problems.append("backbone id differs")
        if list(saved.get("taps") or []) != list(spec.taps):
            problems.append("tap set differs")
    if problems:
        raise IncompatibleAdaptersError(
            f"{where} holds adapters trained for backbone {there}, but the backbone in use is {here}: "
            f"{'; '.join(problems)}. Use the backbone and --taps they were trained with, or train adapters "
            "for this one (vandal train-adapters). If the weights are the same model under another name, "
            "relabel the file: vandal convert-adapters IN OUT --backbone NAME --taps ..."
        )


# ---------------------------------------------------------------------------- files


def _is_safetensors(path: Path) -> bool:
    # 8-byte little-endian header length, then a JSON object.
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def read_adapters_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Our safetensors file or the authors' torch checkpoint -> (``fc.*`` state on CPU, metadata or None)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"adapters file {path} not found: pass the file written by "
                                "vandal train-adapters or vandal convert-adapters")
    if _is_safetensors(path):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        if METADATA_KEY not in header:
            raise IncompatibleAdaptersError(
                f"{path}: a safetensors file without vandal adapter metadata; convert it first "
                "(vandal convert-adapters IN OUT --backbone ID --taps ...)")
        try:
            metadata = json.loads(header[METADATA_KEY])
        except json.JSONDecodeError as error:
            raise IncompatibleAdaptersError(f"{path}: damaged adapter metadata ({error})") from error
        if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
            raise IncompatibleAdaptersError(
                f"{path}: adapter format {metadata.get('format')!r} v{metadata.get('format_version')}; this "
                f"vandal reads {FORMAT!r} v{FORMAT_VERSION}. Retrain or reconvert the adapters.")
        return state, metadata
    try:  # the authors' release: a torch file; weights_only refuses anything but tensors and containers
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types (UnpicklingError, RuntimeError, EOFError)
        raise IncompatibleAdaptersError(
            f"{path}: neither a vandal adapters file (safetensors) nor a torch checkpoint of tensors that "
            f"loads with weights_only=True ({type(error).__name__}: {str(error)[:200]})") from error
    state = loaded.get(AUTHORS_KEY, loaded) if isinstance(loaded, dict) else None  # type: ignore[assignment]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise IncompatibleAdaptersError(
            f"{path}: expected APRIL-GAN's checkpoint layout {{'{AUTHORS_KEY}': {{'fc.0.weight': ..., "
            "'fc.0.bias': ..., ...}}}}")
    return {k: v.detach().clone().float() for k, v in state.items()}, None


def save_adapters(path: str | os.PathLike, state: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write ``fc.*`` tensors + the JSON record atomically (a crash never leaves half a file)."""
    from safetensors.torch import save

    from ..atomic import atomic_write_bytes

    adapter_widths(state, str(path))
    tensors = {k: v.detach().contiguous().cpu().float() for k, v in state.items()}
    atomic_write_bytes(path, save(tensors, metadata={METADATA_KEY: json.dumps(metadata)}))


def adapters_from_state(state: dict[str, torch.Tensor], spec: BackboneSpec,
                        metadata: dict[str, Any] | None = None, where: str = "adapters") -> TapAdapters:
    """``fc.*`` state (ours, the authors', or a bundle's) -> :class:`TapAdapters` for ``spec``, checked."""
    check_compatible(state, metadata, spec, where)
    dims, embed = adapter_widths(state, where)
    adapters = TapAdapters(dims, embed)
    adapters.load_state_dict({k: v.float() for k, v in state.items()})
    return adapters.eval().requires_grad_(False)


def load_adapters(path: str | os.PathLike, spec: BackboneSpec) -> TapAdapters:
    """Adapters from ``path`` (ours or the authors' release) for the backbone ``spec``.

    Raises :class:`IncompatibleAdaptersError` for adapters trained for another backbone, widths or
    tap set, naming both.
    """
    state, metadata = read_adapters_file(path)
    return adapters_from_state(state, spec, metadata, where=str(path))
