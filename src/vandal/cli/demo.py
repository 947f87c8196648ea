"""``vandal demo`` and ``vandal version``."""

from __future__ import annotations

from pathlib import Path

import click

from .. import __version__
from .common import device_option, user_errors


@click.command(help="Fit on a few nominal textiles, predict a mix of nominal and defective ones, print image AUROC.")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Folder with nominal/ and defect subfolders (default: the textile set of conformal-clip-data).")
@click.option("--shots", default=4, show_default=True, help="Nominal images to fit on.")
@click.option("--per-class", default=20, show_default=True, help="Test images per class (nominal and each defect kind).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo_out"), show_default=True,
              help="Where overlays and predictions go.")
@click.option("--backbone", default="efficientnet-lite2", show_default=True)
@click.option("--seed", default=0, show_default=True)
@device_option
@user_errors
def demo(data: Path | None, shots: int, per_class: int, out: Path, backbone: str, seed: int, device: str) -> None:
    from ..demo import run_demo

    run_demo(data, shots, per_class, out, backbone, seed, device)


@click.command(help="Print the version.")
def version() -> None:
    click.echo(__version__)
