"""The ``vandal`` command line: fit, predict, demo (evaluation and adapter training live beside it)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .. import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, help=(
    "vandal: zero-/few-shot visual anomaly detection and localisation (APRIL-GAN, Multi-Scale Memory Comparison)."
))

BackboneOpt = typer.Option("efficientnet-lite2", "--backbone", help="Registry name, Hugging Face CLIP id or local CLIP dir.")
ImageSizeOpt = typer.Option(None, "--image-size", help="Backbone input size (default: the backbone's).")
DeviceOpt = typer.Option("auto", "--device", help="cpu, cuda or auto.")
ResizeOpt = typer.Option("squash", "--resize", help="squash (papers), pad, or tile (long images).")
SkipOpt = typer.Option(False, "--skip-unreadable", help="Skip unreadable images (listed in skipped.csv) instead of stopping.")


def fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def echo(message: str) -> None:
    typer.echo(message, err=True)


def parse_ints(text: Optional[str], what: str) -> Optional[tuple[int, ...]]:
    if not text:
        return None
    try:
        return tuple(int(x) for x in text.replace(",", " ").split())
    except ValueError:
        fail(f"{what} must be integers separated by commas, got {text!r}")


def gather_images(paths: List[Path], recursive: bool = False) -> list[Path]:
    from ..data.datasets import list_images

    try:
        images, ignored = list_images(paths, recursive=recursive)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    if ignored:
        echo(f"ignored {ignored} non-image file(s)")
    return images


def load_readable(paths: list[Path], skip_unreadable: bool) -> tuple[list, list[tuple[str, str]]]:
    """Decode every path; unreadable ones stop the run, or are collected when skipping."""
    from ..data.images import UnreadableImageError, load_image

    images, skipped = [], []
    for path in paths:
        try:
            images.append(load_image(path))
        except UnreadableImageError as error:
            if not skip_unreadable:
                fail(str(error))
            skipped.append((str(path), str(error)))
    if skipped:
        echo(f"skipped {len(skipped)} unreadable image(s)")
    return images, skipped


@app.command()
def fit(
    normal: List[Path] = typer.Option(..., "--normal", help="Normal reference images or folders (more may follow as arguments)."),
    more: Optional[List[Path]] = typer.Argument(None, help="More normal images or folders."),
    out: Path = typer.Option(..., "--out", help="Directory to save the fitted detector to."),
    backbone: str = BackboneOpt,
    image_size: Optional[int] = ImageSizeOpt,
    taps: Optional[str] = typer.Option(None, "--taps", help="Tap set, e.g. '8,16' (strides) or '6,12,18,24' (CLIP blocks)."),
    class_name: Optional[str] = typer.Option(None, "--class-name", help="Object name for text prompts (CLIP backbones)."),
    adapters: Optional[Path] = typer.Option(None, "--adapters", help="Trained APRIL-GAN adapters (safetensors)."),
    resize: str = ResizeOpt,
    neighbourhood: str = typer.Option("3", "--neighbourhood", help="Memory comparison scales, e.g. '1,3,5'."),
    augment: bool = typer.Option(False, "--augment/--no-augment", help="Add 11 augmented views of each reference."),
    individual: str = typer.Option("off", "--individual", help="Per-object memory bank: on, off or auto (on when every reference holds >= 2 objects)."),
    segmenter: str = typer.Option("classical", "--segmenter", help="Object segmenter for --individual: classical, sam, an HF id or a directory."),
    fusion: str = typer.Option("sum", "--fusion", help="Global + individual maps: sum, or mean of reference-normalised maps."),
    align_objects: bool = typer.Option(True, "--align-objects/--no-align-objects", help="Turn each object crop to its main axis before comparing (orientation-robust)."),
    text_scales: Optional[str] = typer.Option(None, "--text-scales", help="Multi-scale text map (CLIP): pooled or windows."),
    smoothing_sigma: float = typer.Option(4.0, "--smoothing-sigma", help="Gaussian smoothing of maps in input pixels (0: off)."),
    skip_unreadable: bool = SkipOpt,
    device: str = DeviceOpt,
) -> None:
    """Fit a detector on a few normal images and save it."""
    from ..detector import Detector

    paths = gather_images(list(normal) + list(more or []))
    images, _ = load_readable(paths, skip_unreadable)
    if not images:
        fail("no readable normal image left to fit on")
    detector = Detector(backbone, image_size, parse_ints(taps, "--taps"), class_name=class_name,
                        adapters=str(adapters) if adapters else None, resize=resize,
                        neighbourhood=parse_ints(neighbourhood, "--neighbourhood"), augment=augment,
                        individual=individual, segmenter=segmenter, fusion=fusion, align_objects=align_objects, text_scales=text_scales,
                        smoothing_sigma=smoothing_sigma, device=device)
    try:
        detector.fit(images)
        detector.save(str(out))
    except (ValueError, TypeError, RuntimeError, OSError) as error:
        fail(str(error))
    cal = detector.calibration_
    echo(f"fitted on {len(images)} image(s) with {detector.backbone_.spec.name}; calibration: {cal.method}, "
         f"image threshold {cal.image_threshold:.4g}, pixel threshold {cal.pixel_threshold:.4g}")
    echo(f"saved to {out}")


@app.command()
def predict(
    inputs: List[Path] = typer.Argument(..., help="MODEL_DIR then images/folders; with --zero-shot only images/folders."),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    save_maps: bool = typer.Option(False, "--save-maps", help="Also save float16 .npy anomaly maps."),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="No references: text prompts only (CLIP backbones)."),
    class_name: Optional[str] = typer.Option(None, "--class-name", help="Object name for --zero-shot."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Backbone for --zero-shot (default: "
                                           "openai/clip-vit-large-patch14-336 with --class-name, else efficientnet-lite2)."),
    image_size: Optional[int] = ImageSizeOpt,
    adapters: Optional[Path] = typer.Option(None, "--adapters", help="Trained adapters for --zero-shot."),
    mutual: Optional[str] = typer.Option(None, "--mutual", help="Zero-shot without text (any backbone, no --class-name): "
                                         "'objects' compares each object with the other objects of its image; 'batch' "
                                         "compares each image with the OTHER TEST IMAGES of this run (transductive: "
                                         "a score depends on the rest of the batch)."),
    text_scales: Optional[str] = typer.Option(None, "--text-scales", help="Multi-scale text map for --zero-shot: pooled or windows."),
    align_objects: bool = typer.Option(True, "--align-objects/--no-align-objects", help="--mutual objects: turn each object crop to its main axis first."),
    resize: str = ResizeOpt,
    image_threshold: Optional[float] = typer.Option(None, "--image-threshold", help="Override the decision level (default 0.5)."),
    pixel_threshold: Optional[float] = typer.Option(None, "--pixel-threshold", help="Override the mask level (default 0.5)."),
    recursive: bool = typer.Option(False, "--recursive", help="Look for images in subfolders too."),
    skip_unreadable: bool = SkipOpt,
    device: str = DeviceOpt,
) -> None:
    """Score images: predictions.csv, heat-map overlays and masks as PNG (and maps as .npy)."""
    from ..bundle import IncompatibleBundleError
    from ..detector import Detector

    try:
        if zero_shot:
            if not class_name and not mutual:
                fail("--zero-shot needs --class-name (the object's name for the prompts) or --mutual")
            if backbone is None:
                backbone = "openai/clip-vit-large-patch14-336" if class_name else "efficientnet-lite2"
            detector = Detector(backbone, image_size, class_name=class_name, resize=resize,
                                adapters=str(adapters) if adapters else None, mutual=mutual, align_objects=align_objects,
                                text_scales=text_scales, device=device).fit()
            paths = gather_images(inputs, recursive)
        else:
            if len(inputs) < 2:
                fail("usage: vandal predict MODEL_DIR IMAGES... --out DIR (or --zero-shot --class-name NAME IMAGES...)")
            fixed = {"--class-name": class_name, "--backbone": backbone, "--image-size": image_size,
                     "--adapters": adapters, "--mutual": mutual, "--text-scales": text_scales,
                     "--resize": resize if resize != "squash" else None}
            given = [flag for flag, value in fixed.items() if value is not None]
            if given:
                fail(f"{', '.join(given)} only apply with --zero-shot; a saved detector fixes them at fit time "
                     f"(refit with `vandal fit ... {given[0]} ...`)")
            detector = Detector.load(str(inputs[0]), device=device)
            paths = gather_images(inputs[1:], recursive)
    except (IncompatibleBundleError, ValueError, TypeError, RuntimeError, OSError) as error:
        fail(str(error))
    detector.image_threshold = image_threshold
    detector.pixel_threshold = pixel_threshold
    from ..report import write_outputs

    from ..data.images import UnreadableImageError

    try:
        summary = write_outputs(detector, paths, out, save_maps=save_maps, skip_unreadable=skip_unreadable).summary
    except (UnreadableImageError, ValueError) as error:
        fail(str(error))
    echo(summary)


@app.command()
def demo(
    data: Optional[Path] = typer.Option(None, "--data", help="Folder with nominal/ and defect subfolders (default: the textile set of conformal-clip-data)."),
    shots: int = typer.Option(4, "--shots", help="Nominal images to fit on."),
    per_class: int = typer.Option(20, "--per-class", help="Test images per class (nominal and each defect kind)."),
    out: Path = typer.Option(Path("demo_out"), "--out", help="Where overlays and predictions go."),
    backbone: str = typer.Option("efficientnet-lite2", "--backbone"),
    seed: int = typer.Option(0, "--seed"),
    device: str = DeviceOpt,
) -> None:
    """Fit on a few nominal textiles, predict a mix of nominal and defective ones, print image AUROC."""
    from ..demo import run_demo

    try:
        run_demo(data, shots, per_class, out, backbone, seed, device)
    except (FileNotFoundError, ValueError, ImportError) as error:
        fail(str(error))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


# Commands kept in their own modules register themselves here (each module's register(app)).
from . import evaluate as _evaluate  # noqa: E402

_evaluate.register(app)
from . import adapters as _adapters  # noqa: E402

_adapters.register(app)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
