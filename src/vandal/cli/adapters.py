"""``vandal train-adapters`` and ``vandal convert-adapters``: APRIL-GAN's trained text adapters.

Hooked into the main app by :func:`register`; the helpers of :mod:`vandal.cli.main` are imported
inside the commands, so this module imports cleanly on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..backbones import DEFAULT_CLIP

# The authors' release: ViT-L/14@336 run at 518 with taps at blocks 6, 12, 18, 24.
AUTHORS_IMAGE_SIZE = 518
AUTHORS_TAPS = (6, 12, 18, 24)


def train_adapters_command(
    dataset: str = typer.Option(..., "--dataset", help="Layout of the training data: mvtec, visa or folder."),
    root: Path = typer.Option(..., "--root", help="Dataset root (its test split and masks are the training data)."),
    out: Path = typer.Option(..., "--out", help="Adapters file to write (e.g. adapters.safetensors), rewritten each epoch."),
    backbone: str = typer.Option(DEFAULT_CLIP, "--backbone", help="Hugging Face CLIP id or local CLIP directory."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Input size (default: the backbone's; 518 for ViT-L/14@336)."),
    taps: Optional[str] = typer.Option(None, "--taps", help="CLIP blocks to tap, e.g. '6,12,18,24' (default: quarters of the depth)."),
    categories: Optional[str] = typer.Option(None, "--categories", help="Only these categories, e.g. 'bottle,cable' (default: all)."),
    epochs: int = typer.Option(3, "--epochs", help="Epochs (APRIL-GAN: 3 on MVTec AD, 15 on VisA)."),
    batch_size: int = typer.Option(8, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate (betas 0.5, 0.999)."),
    mosaic: float = typer.Option(0.0, "--mosaic", help="Probability of a 2x2 same-class mosaic (APRIL-GAN: 0.2 on MVTec AD)."),
    seed: int = typer.Option(111, "--seed"),
    workers: int = typer.Option(0, "--workers", help="Image-decoding worker processes."),
    amp: bool = typer.Option(True, "--amp/--no-amp", help="Mixed precision for the frozen backbone on CUDA."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the state saved next to --out after the last epoch."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
) -> None:
    """Train APRIL-GAN's per-tap adapters on a dataset's test split with its masks."""
    from ..scoring.adapters import IncompatibleAdaptersError
    from ..training.adapters import TrainConfig, state_path, train_from_dataset
    from .main import echo, fail, parse_ints

    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, mosaic=mosaic, seed=seed, amp=amp,
                         workers=workers)
    names = categories.replace(",", " ").split() if categories else None
    try:
        result = train_from_dataset(dataset, root, out, backbone, image_size, parse_ints(taps, "--taps"), names,
                                    config, resume=resume, device=device)
    except (IncompatibleAdaptersError, ValueError, FileNotFoundError, TypeError, OSError) as error:
        fail(str(error))
    losses = ", ".join(f"{x:.4f}" for x in result.losses)
    echo(f"trained {len(result.losses)} epoch(s); loss per epoch: {losses}")
    echo(f"saved adapters to {out} (resumable state: {state_path(out)})")


def convert_adapters_command(
    source: Path = typer.Argument(..., help="The authors' checkpoint (torch file with 'trainable_linearlayer') or a vandal adapters file."),
    out: Path = typer.Argument(..., help="Adapters file to write (safetensors + metadata)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help=f"Backbone the adapters belong to (authors': {DEFAULT_CLIP})."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help=f"Input size they were trained at (authors': {AUTHORS_IMAGE_SIZE})."),
    taps: Optional[str] = typer.Option(None, "--taps", help="Their tap set (authors': 6,12,18,24)."),
) -> None:
    """Convert the authors' released adapters (or relabel ours) into vandal's adapters file."""
    from ..backbones import resolve_kind
    from ..scoring.adapters import (IncompatibleAdaptersError, adapter_widths, adapters_metadata, read_adapters_file,
                                    save_adapters)
    from .main import echo, fail, parse_ints

    try:
        state, metadata = read_adapters_file(source)
        dims, embed = adapter_widths(state, str(source))
        old = (metadata or {}).get("backbone") or {}
        name = backbone or old.get("name") or DEFAULT_CLIP
        tap_set = parse_ints(taps, "--taps") or tuple(old.get("taps") or AUTHORS_TAPS)
        if len(tap_set) != len(dims):
            fail(f"{source} holds {len(dims)} adapters but --taps lists {len(tap_set)} blocks ({tap_set}); "
                 "pass one tap per adapter")
        record = {"name": name, "kind": resolve_kind(name), "image_size": image_size or old.get("image_size")
                  or AUTHORS_IMAGE_SIZE, "taps": list(tap_set), "tap_dims": dims, "embed_dim": embed}
        source_note = (metadata or {}).get("source") or f"converted from {source.name} (APRIL-GAN checkpoint)"
        new = adapters_metadata(record, (metadata or {}).get("class_names", []), source=source_note,
                                training=(metadata or {}).get("training"))
        save_adapters(out, state, new)
    except (IncompatibleAdaptersError, ValueError, FileNotFoundError, OSError) as error:
        fail(str(error))
    echo(f"wrote {out}: {len(dims)} adapters {dims[0]} -> {embed} for {name!r}, taps {tuple(tap_set)}, "
         f"image size {record['image_size']}")


def register(app: typer.Typer) -> None:
    """Add the adapter commands to ``app``."""
    app.command("train-adapters")(train_adapters_command)
    app.command("convert-adapters")(convert_adapters_command)
