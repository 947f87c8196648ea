"""``vandal evaluate``: the papers' benchmark tables on MVTec AD, VisA or any MVTec-layout folder.

Thin: parsing and messages only; the work is in :mod:`vandal.evaluation`. Takes every detector
setting (``--preset``, ``--config``, ``--set``, flags); a preset's ``[evaluate]`` table gives
defaults for the options here (e.g. ``april-gan-reference``: ``--protocol grid --transductive``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import device_option, echo, user_errors
from .options import compose_options, config_options, pop_config

# Options that take several values: both "--shots 0 1 2 4" (as the papers' scripts) and "--shots 0,1,2,4".
LIST_OPTIONS = ("--shots", "--categories", "--neighbourhood", "--taps", "--window-sizes")
EVAL_DEFAULTS = {"protocol": "518", "transductive": False, "legacy_pro": True, "text": True, "humanize": False}


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


class ListOptionsCommand(click.Command):
    """A command whose list options accept space-separated values (click options take one)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, join_list_values(list(args)))


def _split(text: str | None) -> list[str]:
    return [x for x in (text or "").replace(",", " ").split() if x]


def _shots(text: str) -> list[int]:
    try:
        return [int(x) for x in _split(text)]
    except ValueError:
        raise click.UsageError(f"--shots takes integers, e.g. '--shots 0 1 2 4' or '--shots 0,1,2,4'; got {text!r}") from None


def _eval_options(given: dict[str, Any], preset_defaults: dict[str, Any]) -> dict[str, Any]:
    """Explicit flags > the preset's [evaluate] table > defaults."""
    unknown = sorted(set(preset_defaults) - set(EVAL_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown [evaluate] setting(s) {unknown}; known: {', '.join(EVAL_DEFAULTS)}")
    return {key: given[key] if given.get(key) is not None else preset_defaults.get(key, default)
            for key, default in EVAL_DEFAULTS.items()}


@click.command(cls=ListOptionsCommand,
               help="Benchmark per category and shot count (mean ± std over seeds), resumable; tables as in the papers.")
@click.option("--dataset", required=True, help="Layout: mvtec, visa or folder (any MVTec-layout folder).")
@click.option("--root", required=True, type=click.Path(path_type=Path), help="Dataset root (the folder holding the categories).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder: results.json, results.md, results.csv.")
@click.option("--categories", default=None, help="Categories to run (default: all found).")
@click.option("--shots", default="0 1 2 4", show_default=True, help="Shot counts (0: zero-shot, text backbones or --mutual).")
@click.option("--seeds", default=5, show_default=True, help="Seeds 0..N-1 for the k-shot draws (zero-shot runs once).")
@click.option("--protocol", type=click.Choice(["518", "native", "grid"]), default=None,
              help="518: maps and masks at 518x518 (papers); native: original size (MVTec); grid: the detector's input "
                   "grid with masks thresholded as the APRIL-GAN reference [default: 518].")
@click.option("--text/--no-text", default=None, help="Prompts with the category name when the backbone has text [default: on].")
@click.option("--class-name-humanize", "humanize", is_flag=True, default=None, help="Prompts say 'metal nut', not 'metal_nut'.")
@click.option("--transductive/--no-transductive", default=None,
              help="TRANSDUCTIVE few-shot image scores (test-set min-max, as the reference code) [default: off].")
@click.option("--legacy-pro/--no-legacy-pro", default=None, help="Also compute the APRIL-GAN AU-PRO variant (slow) [default: on].")
@click.option("--restart", is_flag=True, help="Discard results already in --out instead of resuming.")
@click.option("--progress/--no-progress", default=True, help="Progress bars.")
@device_option
# --- engine (vandal.engines.ray_engine): where the cells run
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: one cell after another here; ray: cells as tasks on a Ray cluster.")
@click.option("--num-workers", type=click.IntRange(min=1), default=None,
              help="--engine ray: workers, each with an equal share of the cores [default: one per GPU, else one "
                   "per 4 cores].")
@click.option("--ray-address", default=None, help="--engine ray: join this cluster (default: start one here).")
# --- end engine
@config_options
@user_errors
def evaluate(dataset: str, root: Path, out: Path, categories: str | None, shots: str, seeds: int, restart: bool,
             progress: bool, device: str, engine: str, num_workers: int | None, ray_address: str | None,
             **kwargs: Any) -> None:
    from ..backbones import resolve_kind
    from ..evaluation import EvalConfig
    from ..evaluation import evaluate as run_evaluation
    from ..evaluation.run import CATEGORY_NAME

    given = pop_config(kwargs)
    # Below every setting, the class name is each category's own (so --adapters needs no --class-name);
    # without text prompts there is none.
    composed = compose_options(given, base={"class_name": CATEGORY_NAME})
    options = _eval_options(kwargs, composed.evaluate)
    if composed.config.text.class_name == CATEGORY_NAME and not (
            options["text"] and resolve_kind(composed.config.backbone.name) == "clip"):
        composed = compose_options(given)
    config = EvalConfig(dataset=dataset, root=str(root), categories=_split(categories) or None, shots=_shots(shots),
                        seeds=seeds, detector=composed.config, device=device, preset=composed.preset, **options)
    if config.transductive:
        echo("--transductive: few-shot image scores are min-max normalised over the test set (reference code); "
             "a score then depends on the other test images")
    runner = None
    if engine == "ray":
        from ..engines.ray_engine import ray_cells

        runner = ray_cells(num_workers, ray_address)
    elif num_workers is not None or ray_address is not None:
        raise click.UsageError("--num-workers and --ray-address apply with --engine ray")
    doc = run_evaluation(config, out, restart=restart, progress=progress, runner=runner)
    if doc["runs"]:
        click.echo((out / "results.md").read_text())
    else:
        echo("no cell could be run (see the messages above)")
    echo(f"results in {out}/: results.json, results.md, results.csv, report.html")
