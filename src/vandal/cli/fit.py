"""``vandal fit``: fit a detector on normal images and save it as a bundle."""

from __future__ import annotations

from pathlib import Path

import click

from .common import (
    device_option,
    echo,
    fail,
    gather_images,
    load_readable,
    max_pixels_option,
    pixel_limit,
    recursive_option,
    skip_option,
    user_errors,
)
from .options import compose_options, config_options, pop_config


@click.command(help="Fit a detector on a few normal images and save it (the options set the configuration).")
@click.option("--normal", "normal", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Normal reference images or folders (repeatable; more may follow as arguments).")
@click.argument("more", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to save the fitted detector to.")
@recursive_option
@skip_option
@device_option
@max_pixels_option
@config_options
@user_errors
def fit(normal: tuple[Path, ...], more: tuple[Path, ...], out: Path, recursive: bool, skip_unreadable: bool,
        device: str, max_pixels: int, **kwargs) -> None:
    from ..bundle import check_destination
    from ..detector import Detector

    composed = compose_options(pop_config(kwargs))
    target = check_destination(out)  # before the work: never fit for an hour and then fail to save
    paths = gather_images(list(normal) + list(more), recursive, exclude=[target])
    images, _ = load_readable(paths, skip_unreadable, pixel_limit(max_pixels))
    if not images:
        fail("no readable normal image left to fit on")
    detector = Detector(composed.config, device=device, max_pixels=max_pixels).fit(images)
    detector.save(str(target))
    cal = detector.calibration_
    echo(f"fitted on {len(images)} image(s) with {detector.backbone_.spec.name} ({', '.join(detector.source_names)}); "
         f"calibration: {cal.method}, image threshold {cal.image_threshold:.4g}, pixel threshold "
         f"{cal.pixel_threshold:.4g}")
    echo(f"saved to {target}")
