"""Training APRIL-GAN's per-tap adapters (docs/method.md §3), resumable epoch by epoch.

Only the linear layers learn: the backbone is frozen and ``T`` is computed once per class. The
backbone forward runs under autocast on CUDA (mixed precision); the adapters, their gradients and
the losses stay in float32, so no gradient scaler is needed.

Checkpoints, written after every epoch:
- ``OUT`` (e.g. ``adapters.safetensors``): the adapters + JSON metadata (backbone, taps, image
  size, class names, settings, loss per epoch); what ``--adapters`` reads.
- ``OUT`` with suffix ``.train-state.safetensors``: the same weights plus Adam's moments, for
  ``--resume``. Together with the per-epoch plan drawn from ``(seed, epoch)``, a resumed run ends
  with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..atomic import atomic_write_bytes
from ..backbones.base import Backbone
from ..scoring.adapters import TapAdapters, adapters_metadata, backbone_record, save_adapters
from ..scoring.text import TEMPERATURE, text_logits, text_probabilities
from .data import PlannedItems, TrainingSamples, epoch_plan, training_samples
from .losses import adapter_loss

STATE_SUFFIX = ".train-state.safetensors"
STATE_KEY = "vandal_adapter_training"
# Settings that define a run: a resume with any of them changed would not continue the same run.
RUN_FIELDS = ("batch_size", "lr", "betas", "mosaic", "seed")


@dataclass
class TrainConfig:
    """APRIL-GAN's settings by default (MVTec -> VisA uses ``epochs=3, mosaic=0.2``)."""

    epochs: int = 3
    batch_size: int = 8
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    mosaic: float = 0.0  # probability that an item is replaced by a 2x2 same-class mosaic
    seed: int = 111
    amp: bool = True  # autocast the backbone on CUDA; ignored on CPU
    workers: int = 0  # DataLoader processes decoding images

    def run_settings(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if k in RUN_FIELDS}


@dataclass
class TrainResult:
    adapters: TapAdapters
    losses: list[float] = field(default_factory=list)  # mean loss of every epoch done so far
    path: Path | None = None


def state_path(out: str | os.PathLike) -> Path:
    """Where the resumable state of ``out`` lives."""
    out = Path(out)
    stem = out.name[: -len(".safetensors")] if out.name.endswith(".safetensors") else out.name
    return out.with_name(stem + STATE_SUFFIX)


def tap_probabilities(projected: Sequence[torch.Tensor], text: torch.Tensor,
                      size: int | tuple[int, int], temperature: float = TEMPERATURE) -> list[torch.Tensor]:
    """Per-image text: projected taps ``[B, h, w, D]``, text ``[B, 2, D]`` -> ``[B, 2, H, W]`` per tap.

    The text map's own functions, keeping both channels for the focal loss and letting each image
    of a mixed-class batch use its own class's ``T``.
    """
    return [text_probabilities(text_logits(tap, text, temperature), size) for tap in projected]


def init_adapters(backbone: Backbone, seed: int) -> TapAdapters:
    """Freshly initialised adapters, drawn from ``seed`` without touching the global RNG."""
    spec = backbone.spec
    if spec.embed_dim is None or not backbone.has_text:
        raise ValueError(f"backbone {spec.name!r} has no text space: adapters need a CLIP backbone")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TapAdapters(spec.tap_dims, spec.embed_dim)


def class_text(backbone: Backbone, class_names: Sequence[str]) -> torch.Tensor:
    """``[K, 2, D]``: APRIL-GAN's prompt ensemble per class, computed once (raw folder names)."""
    from ..prompts import text_features

    with torch.no_grad():
        return torch.stack([text_features(backbone, name).float() for name in class_names])


# ---------------------------------------------------------------------------- checkpoints


def _save_state(path: Path, adapters: TapAdapters, optimizer: torch.optim.Optimizer, record: dict) -> None:
    from safetensors.torch import save

    tensors = {f"adapters.{k}": v.detach().cpu().contiguous() for k, v in adapters.state_dict().items()}
    for index, slots in optimizer.state_dict()["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    atomic_write_bytes(path, save(tensors, metadata={STATE_KEY: json.dumps(record)}))


def _load_state(path: Path, adapters: TapAdapters, optimizer: torch.optim.Optimizer,
                expected: dict) -> dict:
    """Restore weights and Adam's moments from ``path``; refuse a state from another run."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        record = json.loads((f.metadata() or {}).get(STATE_KEY, "null") or "null")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if not isinstance(record, dict):
        raise ValueError(f"{path}: not a vandal adapter training state; delete it or drop --resume")
    for key, value in expected.items():
        if record.get(key) != value:
            raise ValueError(
                f"cannot resume from {path}: it was trained with {key}={record.get(key)}, this run has "
                f"{key}={value}. Use the same settings, or start afresh without --resume (another --out)."
            )
    device = next(adapters.parameters()).device
    adapters.load_state_dict({k[len("adapters."):]: v for k, v in tensors.items() if k.startswith("adapters.")})
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            # Adam keeps ``step`` on the CPU unless capturable; moments live with the parameters.
            slots.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
    optimizer.load_state_dict({"state": slots, "param_groups": optimizer.state_dict()["param_groups"]})
    return record


# ---------------------------------------------------------------------------- loop


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype for the backbone on ``device``: bf16 or fp16 on CUDA, none on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def train_step(backbone: Backbone, adapters: TapAdapters, optimizer: torch.optim.Optimizer,
               pixels: torch.Tensor, masks: torch.Tensor, text: torch.Tensor,
               amp_dtype: torch.dtype | None = None) -> float:
    """One Adam step: pixels ``[B, 3, S, S]``, masks ``[B, S, S]``, per-image text ``[B, 2, D]`` -> loss."""
    autocast = torch.autocast(pixels.device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
    with torch.no_grad(), autocast:  # the backbone is frozen: no graph through it
        taps = [t.float() for t in backbone(pixels).taps]
    loss = adapter_loss(tap_probabilities(adapters(taps), text, pixels.shape[-1]), masks)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def train_adapters(backbone: Backbone, data: TrainingSamples, config: TrainConfig, out: str | os.PathLike,
                   resume: bool = False, progress: bool = True, info: dict[str, Any] | None = None) -> TrainResult:
    """Train adapters on ``data`` (images + masks), checkpointing to ``out`` after every epoch.

    info: extra facts for the metadata (dataset kind, root). With ``resume``, continue from the
    state next to ``out`` (it must come from a run with the same settings, backbone and classes).
    """
    if config.epochs < 1 or config.batch_size < 1:
        raise ValueError("epochs and batch_size must be >= 1")
    out = Path(out)
    device = backbone.device
    adapters = init_adapters(backbone, config.seed).to(device).train()
    optimizer = torch.optim.Adam(adapters.parameters(), lr=config.lr, betas=(config.betas[0], config.betas[1]))
    identity = {"backbone": backbone_record(backbone.spec), "class_names": list(data.class_names),
                "n_samples": len(data.samples), **config.run_settings()}
    record: dict[str, Any] = {**identity, "epochs_done": 0, "losses": []}
    if resume:
        path = state_path(out)
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no training state {path} (written after each epoch); drop --resume")
        record = _load_state(path, adapters, optimizer, identity)
    text = class_text(backbone, data.class_names).to(device)
    size = backbone.image_size
    amp_dtype = autocast_dtype(device) if config.amp else None
    losses: list[float] = list(record["losses"])

    for epoch in range(int(record["epochs_done"]), config.epochs):
        plan = epoch_plan(data, config.seed, epoch, config.mosaic)
        loader = torch.utils.data.DataLoader(
            PlannedItems(data, plan, size, backbone.preprocessing), batch_size=config.batch_size,
            shuffle=False, num_workers=config.workers, pin_memory=device.type == "cuda")
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress)
        total, seen = 0.0, 0
        for pixels, masks, classes in bar:
            pixels, masks = pixels.to(device, non_blocking=True), masks.to(device, non_blocking=True)
            loss = train_step(backbone, adapters, optimizer, pixels, masks, text[classes.to(device)], amp_dtype)
            total += loss * len(pixels)
            seen += len(pixels)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        losses.append(total / max(seen, 1))
        record.update(epochs_done=epoch + 1, losses=losses)
        _save_state(state_path(out), adapters, optimizer, record)
        training = {**config.run_settings(), "epochs": epoch + 1, "losses": losses, **(info or {})}
        metadata = adapters_metadata(backbone_record(backbone.spec), data.class_names,
                                     source="vandal train-adapters", training=training)
        save_adapters(out, adapters.state_dict(), metadata)
    return TrainResult(adapters.eval().requires_grad_(False), losses, out)


def train_from_dataset(dataset: str, root: str | os.PathLike, out: str | os.PathLike,
                       backbone: str, image_size: int | None = None, taps: Sequence[int] | None = None,
                       categories: Sequence[str] | None = None, config: TrainConfig | None = None,
                       resume: bool = False, device: str = "auto", progress: bool = True) -> TrainResult:
    """The ``vandal train-adapters`` command as a function: load the data and the backbone, train."""
    from ..backbones import create_backbone
    from ..data.datasets import load_dataset
    from ..detector import resolve_device

    config = config or TrainConfig()
    splits = load_dataset(dataset, root, list(categories) if categories else None)
    data = training_samples(splits, f"the {dataset} dataset at {root}")
    model = create_backbone(backbone, image_size, tuple(taps) if taps else None, device=resolve_device(device))
    info = {"dataset": dataset, "root": str(root), "n_images": len(data.samples)}
    return train_adapters(model, data, config, out, resume=resume, progress=progress, info=info)

