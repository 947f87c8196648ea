"""The ``vandal`` command line. Each command lives in its own module and is imported only when run,
so ``vandal --help`` and ``vandal predict`` load nothing that only training or evaluation use."""

from __future__ import annotations

import importlib
import os
import sys

import click

from .. import __version__

# command -> "module:function", relative to this package
COMMANDS = {
    "fit": "fit:fit",
    "predict": "predict:predict",
    "export": "export:export",
    "evaluate": "evaluate:evaluate",
    "presets": "presets:presets",
    "serve": "serve:serve",
    "keys": "keys:keys",
    "train-adapters": "adapters:train_adapters",
    "convert-adapters": "adapters:convert_adapters",
    "demo": "demo:demo",
    "version": "demo:version",
}
SUMMARIES = {
    "fit": "Fit a detector on a few normal images and save it.",
    "predict": "Score images: predictions.csv, heat-map overlays and masks (and maps).",
    "export": "Export a saved detector to ONNX (runs with onnxruntime, no bundle needed).",
    "evaluate": "Benchmark tables as in the papers (per category and shot count), resumable.",
    "presets": "List the named presets, or show one as TOML.",
    "serve": "Inspection service and page: fit and score over HTTP (needs the serve extra).",
    "keys": "The inspection station's API keys: add, list, revoke.",
    "train-adapters": "Train APRIL-GAN's per-tap text adapters on a dataset's test split.",
    "convert-adapters": "Convert the authors' released adapters into vandal's adapters file.",
    "demo": "Fit on a few nominal textiles, score a mix, print image AUROC.",
    "version": "Print the version.",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, function = COMMANDS[name].split(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, SUMMARIES[name]) for name in COMMANDS])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vandal")
def app() -> None:
    """vandal: zero-/few-shot visual anomaly detection and localisation (APRIL-GAN, Multi-Scale Memory Comparison)."""


def quiet_threads() -> None:
    """OpenMP threads sleep when idle instead of spinning (unless the user chose): concurrent
    ``vandal predict`` runs then share the cores instead of spinning against each other
    (``benchmarks/bench_speed.py --concurrency``; docs/performance.md). Set before torch loads."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:  # pragma: no cover - console entry
    quiet_threads()
    app()


if __name__ == "__main__":  # pragma: no cover
    quiet_threads()
    sys.exit(app())
