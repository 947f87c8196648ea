"""``vandal evaluate``: the papers' benchmark tables on MVTec AD, VisA or any MVTec-layout folder.

Thin: parsing and messages only; the work is in :mod:`vandal.evaluate`. Registered on the main
app by :func:`register` (called at the end of ``cli/main.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click
import typer
from typer.core import TyperCommand

# Options that take several values: both "--shots 0 1 2 4" (as the papers' scripts) and "--shots 0,1,2,4".
LIST_OPTIONS = ("--shots", "--categories", "--neighbourhood", "--taps")


def join_list_values(args: list[str], options: tuple[str, ...] = LIST_OPTIONS) -> list[str]:
    """Fold the space-separated values after a list option into one comma-separated value."""
    out: list[str] = []
    i = 0
    while i < len(args):
        out.append(args[i])
        if args[i] in options:
            values = []
            while i + 1 < len(args) and not args[i + 1].startswith("-"):
                values.append(args[i + 1])
                i += 1
            if values:
                out.append(",".join(values))
        i += 1
    return out


class ListOptionsCommand(TyperCommand):
    """A typer command whose list options accept space-separated values (click options take one)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, join_list_values(list(args)))


def _split(text: Optional[str]) -> list[str]:
    return [x for x in (text or "").replace(",", " ").split() if x]


def _ints(text: Optional[str], what: str) -> Optional[list[int]]:
    from .main import fail

    if not text:
        return None
    try:
        return [int(x) for x in _split(text)]
    except ValueError:
        fail(f"{what} takes integers, e.g. '{what} 0 1 2 4' or '{what} 0,1,2,4'; got {text!r}")


def evaluate_command(
    dataset: str = typer.Option(..., "--dataset", help="Layout: mvtec, visa or folder (any MVTec-layout folder)."),
    root: Path = typer.Option(..., "--root", help="Dataset root (the folder holding the categories)."),
    out: Path = typer.Option(..., "--out", help="Output folder: results.json, results.md, results.csv."),
    categories: Optional[str] = typer.Option(None, "--categories", help="Categories to run (default: all found)."),
    shots: str = typer.Option("0 1 2 4", "--shots", help="Shot counts, e.g. '--shots 0 1 2 4' (0: zero-shot, text backbones)."),
    seeds: int = typer.Option(5, "--seeds", help="Seeds 0..N-1 for the k-shot draws (zero-shot runs once)."),
    backbone: str = typer.Option("efficientnet-lite2", "--backbone", help="Registry name, Hugging Face CLIP id or local CLIP dir."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Backbone input size (default: the backbone's)."),
    protocol: str = typer.Option("518", "--protocol", help="518: maps and masks at 518x518 (papers); native: original size (MVTec)."),
    class_name_humanize: bool = typer.Option(False, "--class-name-humanize", help="Prompts say 'metal nut', not 'metal_nut'."),
    adapters: Optional[Path] = typer.Option(None, "--adapters", help="Trained APRIL-GAN adapters for the text map."),
    transductive: bool = typer.Option(False, "--transductive", help="TRANSDUCTIVE few-shot image scores (test-set min-max, as the reference code)."),
    legacy_pro: bool = typer.Option(True, "--legacy-pro/--no-legacy-pro", help="Also compute the APRIL-GAN AU-PRO variant (slow)."),
    resize: str = typer.Option("squash", "--resize", help="squash (papers), pad, or tile."),
    neighbourhood: Optional[str] = typer.Option(None, "--neighbourhood", help="Memory comparison scales, e.g. '1 3 5'."),
    taps: Optional[str] = typer.Option(None, "--taps", help="Tap set, e.g. '8 16' (strides) or '6 12 18 24' (CLIP blocks)."),
    augment: bool = typer.Option(False, "--augment/--no-augment", help="Add 11 augmented views of each reference."),
    smoothing_sigma: float = typer.Option(4.0, "--smoothing-sigma", help="Gaussian smoothing of maps in input pixels (0: off, as the APRIL-GAN reference)."),
    restart: bool = typer.Option(False, "--restart", help="Discard results already in --out instead of resuming."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
) -> None:
    """Benchmark per category and shot count (mean ± std over seeds), resumable; tables as in the papers."""
    from ..data.images import UnreadableImageError
    from ..evaluate import EvalConfig, evaluate
    from .main import echo, fail

    extra: dict = {"resize": resize, "augment": augment, "smoothing_sigma": smoothing_sigma}
    if neighbourhood:
        extra["neighbourhood"] = tuple(_ints(neighbourhood, "--neighbourhood"))
    if taps:
        extra["taps"] = tuple(_ints(taps, "--taps"))
    config = EvalConfig(
        dataset=dataset, root=str(root), categories=_split(categories) or None, shots=_ints(shots, "--shots") or [],
        seeds=seeds, backbone=backbone, image_size=image_size, protocol=protocol,
        class_name_humanize=class_name_humanize, adapters=str(adapters) if adapters else None,
        transductive=transductive, legacy_pro=legacy_pro, detector=extra, device=device,
    )
    if transductive:
        echo("--transductive: few-shot image scores are min-max normalised over the test set (reference code); "
             "a score then depends on the other test images")
    try:
        doc = evaluate(config, out, restart=restart, progress=progress)
    except (FileNotFoundError, ValueError, TypeError, RuntimeError, UnreadableImageError) as error:
        fail(str(error))  # ConfigMismatchError is a ValueError: its message says to use --restart
    if any(r["category"] in doc["config"]["categories"] for r in doc["runs"]):
        typer.echo((out / "results.md").read_text())
    else:
        echo("no cell could be run (see the messages above)")
    echo(f"results in {out}/: results.json, results.md, results.csv")


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the ``vandal`` command line."""
    app.command("evaluate", cls=ListOptionsCommand)(evaluate_command)
