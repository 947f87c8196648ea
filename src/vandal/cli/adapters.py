"""``vandal train-adapters`` and ``vandal convert-adapters``: APRIL-GAN's trained text adapters."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import DEFAULT_CLIP, coerce  # not vandal.backbones: that imports torch, even for --help
from .common import echo, fail, user_errors

# The authors' release: ViT-L/14@336 run at 518 with taps at blocks 6, 12, 18, 24.
AUTHORS_IMAGE_SIZE = 518
AUTHORS_TAPS = (6, 12, 18, 24)


def _taps(text: str | None) -> tuple[int, ...] | None:
    return coerce("backbone.taps", text) if text else None


@click.command(help="Train APRIL-GAN's per-tap adapters on a dataset's test split with its masks.")
@click.option("--dataset", required=True, help="Layout of the training data: mvtec, visa or folder.")
@click.option("--root", required=True, type=click.Path(path_type=Path),
              help="Dataset root (its test split and masks are the training data).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Adapters file to write (e.g. adapters.safetensors), rewritten each epoch.")
@click.option("--backbone", default=DEFAULT_CLIP, show_default=True, help="Hugging Face CLIP id or local CLIP directory.")
@click.option("--image-size", type=int, default=None, help="Input size (default: the backbone's; 518 for ViT-L/14@336).")
@click.option("--taps", default=None, help="CLIP blocks to tap, e.g. '6,12,18,24' (default: quarters of the depth).")
@click.option("--categories", default=None, help="Only these categories, e.g. 'bottle,cable' (default: all).")
@click.option("--epochs", default=3, show_default=True, help="Epochs (APRIL-GAN: 3 on MVTec AD, 15 on VisA).")
@click.option("--batch-size", default=8, show_default=True)
@click.option("--lr", default=1e-3, show_default=True, help="Adam learning rate (betas 0.5, 0.999).")
@click.option("--mosaic", default=0.0, show_default=True,
              help="Probability of a 2x2 same-class mosaic (APRIL-GAN: 0.2 on MVTec AD).")
@click.option("--seed", default=111, show_default=True)
@click.option("--workers", default=0, show_default=True, help="Image-decoding worker processes.")
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision for the frozen backbone on CUDA.")
@click.option("--resume", is_flag=True, help="Continue from the state saved next to --out after the last epoch.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@user_errors
def train_adapters(dataset: str, root: Path, out: Path, backbone: str, image_size: int | None, taps: str | None,
                   categories: str | None, epochs: int, batch_size: int, lr: float, mosaic: float, seed: int,
                   workers: int, amp: bool, resume: bool, device: str) -> None:
    from ..training.adapters import TrainConfig, state_path, train_from_dataset

    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, mosaic=mosaic, seed=seed, amp=amp,
                         workers=workers)
    names = categories.replace(",", " ").split() if categories else None
    result = train_from_dataset(dataset, root, out, backbone, image_size, _taps(taps), names, config, resume=resume,
                                device=device)
    losses = ", ".join(f"{x:.4f}" for x in result.losses)
    echo(f"trained {len(result.losses)} epoch(s); loss per epoch: {losses}")
    echo(f"saved adapters to {out} (resumable state: {state_path(out)})")


@click.command(help="Convert the authors' released adapters (or relabel ours) into vandal's adapters file.")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--backbone", default=None, help=f"Backbone the adapters belong to (authors': {DEFAULT_CLIP}).")
@click.option("--image-size", type=int, default=None, help=f"Input size they were trained at (authors': {AUTHORS_IMAGE_SIZE}).")
@click.option("--taps", default=None, help="Their tap set (authors': 6,12,18,24).")
@user_errors
def convert_adapters(source: Path, out: Path, backbone: str | None, image_size: int | None, taps: str | None) -> None:
    from ..backbones import resolve_kind
    from ..scoring.adapters import adapter_widths, adapters_metadata, read_adapters_file, save_adapters

    state, metadata = read_adapters_file(source)
    dims, embed = adapter_widths(state, str(source))
    old = (metadata or {}).get("backbone") or {}
    name = backbone or old.get("name") or DEFAULT_CLIP
    tap_set = _taps(taps) or tuple(old.get("taps") or AUTHORS_TAPS)
    if len(tap_set) != len(dims):
        fail(f"{source} holds {len(dims)} adapters but --taps lists {len(tap_set)} blocks ({tap_set}); "
             "pass one tap per adapter")
    record = {"name": name, "kind": resolve_kind(name), "image_size": image_size or old.get("image_size")
              or AUTHORS_IMAGE_SIZE, "taps": list(tap_set), "tap_dims": dims, "embed_dim": embed}
    source_note = (metadata or {}).get("source") or f"converted from {source.name} (APRIL-GAN checkpoint)"
    new = adapters_metadata(record, (metadata or {}).get("class_names", []), source=source_note,
                            training=(metadata or {}).get("training"))
    save_adapters(out, state, new)
    echo(f"wrote {out}: {len(dims)} adapters {dims[0]} -> {embed} for {name!r}, taps {tuple(tap_set)}, "
         f"image size {record['image_size']}")
