"""``vandal predict``: score images with a saved detector, or zero-shot with no references."""

from __future__ import annotations

from pathlib import Path

import click

from .common import (
    device_option,
    echo,
    fail,
    gather_images,
    max_pixels_option,
    pixel_limit,
    recursive_option,
    skip_option,
    user_errors,
)
from .options import compose_options, config_options, fit_stage_given, given_flags, pop_config


def _zero_shot_detector(options: dict, runtime: dict):
    from ..backbones import DEFAULT_CLIP
    from ..detector import Detector

    composed = compose_options(options)
    if not composed.config.text.class_name and not composed.config.mutual.mode:
        fail("--zero-shot needs --class-name (the object's name for the prompts) or --mutual")
    if composed.config.text.class_name:  # text needs CLIP: the default backbone, unless one was chosen
        composed = compose_options(options, base={"backbone": DEFAULT_CLIP})
    return Detector(composed.config, **runtime).fit()


def _saved_detector(model: Path, options: dict, runtime: dict):
    from ..detector import Detector

    fixed = fit_stage_given(options)
    if fixed:
        fail(f"{', '.join(fixed)} only apply with --zero-shot; a saved detector fixes them at fit time "
             f"(refit with `vandal fit ... {fixed[0]} ...`)")
    detector = Detector.load(str(model), **runtime)
    thresholds = given_flags(options)
    return detector.set_params(**thresholds) if thresholds else detector


@click.command(help="Score images: predictions.csv, heat-map overlays and masks as PNG (and maps as .npy). "
                    "Give MODEL_DIR then images/folders, or --zero-shot and images/folders.")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--save-maps", is_flag=True, help="Also save float16 .npy anomaly maps.")
@click.option("--zero-shot", is_flag=True, help="No references: text prompts (CLIP) or --mutual comparison.")
@recursive_option
@skip_option
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier vandal run's results in --out (other files there are kept).")
@click.option("--allow-download", is_flag=True,
              help="Let a saved detector download its Hugging Face backbone when it is not cached.")
@device_option
@max_pixels_option
@config_options
@user_errors
def predict(inputs: tuple[Path, ...], out: Path, save_maps: bool, zero_shot: bool, recursive: bool,
            skip_unreadable: bool, overwrite: bool, allow_download: bool, device: str, max_pixels: int,
            **kwargs) -> None:
    options = pop_config(kwargs)
    runtime = {"device": device, "max_pixels": pixel_limit(max_pixels)}
    if zero_shot:
        detector, images = _zero_shot_detector(options, runtime), list(inputs)
    else:
        if len(inputs) < 2:
            fail("usage: vandal predict MODEL_DIR IMAGES... --out DIR (or --zero-shot --class-name NAME IMAGES...)")
        runtime["allow_download"] = allow_download
        detector, images = _saved_detector(inputs[0], options, runtime), list(inputs[1:])
    paths = gather_images(images, recursive, exclude=[out])
    from ..report import write_outputs

    report = write_outputs(detector, paths, out, save_maps=save_maps, skip_unreadable=skip_unreadable,
                           overwrite=overwrite)
    echo(report.summary)
