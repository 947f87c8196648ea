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
    from ..loading import load

    fixed = fit_stage_given(options)
    if fixed:
        fail(f"{', '.join(fixed)} only apply with --zero-shot; a saved detector fixes them at fit time "
             f"(refit with `vandal fit ... {fixed[0]} ...`; a reference-free one, such as --preset musc, is rebuilt "
             f"with `vandal predict --zero-shot ... {fixed[0]} ...`)")
    detector = load(model, **runtime)
    thresholds = given_flags(options)
    return detector.set_params(**thresholds) if thresholds else detector


@click.command(help="Score images: predictions.csv, heat-map overlays and masks as PNG (and maps as .npy). "
                    "Give MODEL_DIR then images/folders, or --zero-shot and images/folders.")
@click.argument("inputs", nargs=-1, required=True, type=str)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--save-maps", is_flag=True, help="Also save float16 .npy anomaly maps.")
@click.option("--zero-shot", is_flag=True, help="No references: text prompts (CLIP) or --mutual comparison.")
@click.option("--report", "html_report", is_flag=True,
              help="Also write report.html: summary, flagged images first, thumbnails.")
@recursive_option
@skip_option
@click.option("--overwrite", is_flag=True,
              help="Replace an earlier vandal run's results in --out (other files there are kept).")
@click.option("--allow-download", is_flag=True,
              help="Let a saved detector download its Hugging Face backbone when it is not cached.")
@device_option
# --- engine (vandal.engines.ray_engine): where the images are scored
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: a Ray cluster (inputs may then be URIs such as s3://bucket/folder).")
@click.option("--num-workers", type=click.IntRange(min=1), default=None,
              help="--engine ray: scoring workers, each with an equal share of the cores [default: one per GPU, "
                   "else one per 4 cores].")
@click.option("--ray-address", default=None, help="--engine ray: join this cluster (default: start one here).")
# --- end engine
@max_pixels_option
@config_options
@user_errors
def predict(inputs: tuple[str, ...], out: Path, save_maps: bool, zero_shot: bool, html_report: bool, recursive: bool,
            skip_unreadable: bool, overwrite: bool, allow_download: bool, device: str, engine: str,
            num_workers: int | None, ray_address: str | None, max_pixels: int, **kwargs) -> None:
    from ..outputs.folder import refuse_unsafe_out

    refuse_unsafe_out(out, inputs if zero_shot else inputs[1:])
    options = pop_config(kwargs)
    runtime = {"device": device, "max_pixels": pixel_limit(max_pixels)}
    if engine == "ray":
        _ray_predict(inputs, out, options, zero_shot, recursive, num_workers, ray_address,
                     dict(runtime, allow_download=allow_download, save_maps=save_maps,
                          skip_unreadable=skip_unreadable, overwrite=overwrite))
        return _write_report(out, None, inputs[0]) if html_report else None
    if num_workers is not None or ray_address is not None:
        fail("--num-workers and --ray-address apply with --engine ray")
    given = [Path(p) for p in inputs]
    if zero_shot:
        detector, images = _zero_shot_detector(options, runtime), given
    else:
        if len(given) < 2:
            fail("usage: vandal predict MODEL_DIR IMAGES... --out DIR (or --zero-shot --class-name NAME IMAGES...)")
        runtime["allow_download"] = allow_download
        detector, images = _saved_detector(given[0], options, runtime), given[1:]
    paths = gather_images(images, recursive, exclude=[out])
    from ..outputs.run import write_outputs

    report = write_outputs(detector, paths, out, save_maps=save_maps, skip_unreadable=skip_unreadable,
                           overwrite=overwrite)
    echo(report.summary)
    if html_report:
        _write_report(out, detector, None if zero_shot else str(inputs[0]))


def _write_report(out: Path, detector, model: str | None) -> None:
    """--report: report.html from the files the run wrote."""
    from ..outputs.html import write_prediction_report

    echo(f"report: {write_prediction_report(out, detector, model)}")


def _ray_predict(inputs: tuple[str, ...], out: Path, options: dict, zero_shot: bool, recursive: bool,
                 num_workers: int | None, ray_address: str | None, settings: dict) -> None:
    """--engine ray: the same outputs as the local engine, scored on a Ray cluster."""
    from ..engines.ray_engine import is_uri, ray_predict

    if zero_shot:
        fail("--engine ray scores a saved detector (MODEL_DIR or model.onnx): fit or export one first "
             "(transductive detectors, --mutual batch or --preset musc, run with --engine local only)")
    if len(inputs) < 2:
        fail("usage: vandal predict MODEL IMAGES... --out DIR --engine ray")
    fixed = fit_stage_given(options)
    if fixed:
        fail(f"{', '.join(fixed)} only apply with --zero-shot; a saved detector fixes them at fit time")
    model, images = Path(inputs[0]), list(inputs[1:])
    if not any(is_uri(item) for item in images):  # the local engine's list, in its order
        ordered = [str(p) for p in gather_images([Path(p) for p in images], recursive, exclude=[out])]
    else:  # URIs are listed by the engine; local items are gathered one by one to keep the order given
        ordered = [p for item in images
                   for p in ([item] if is_uri(item) else map(str, gather_images([Path(item)], recursive, [out])))]
    report = ray_predict(model, list(dict.fromkeys(ordered)), out, num_workers=num_workers, address=ray_address,
                         thresholds=given_flags(options), recursive=recursive, **settings)
    echo(report.summary)
