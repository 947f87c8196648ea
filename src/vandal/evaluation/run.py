"""Benchmark evaluation (docs/method.md §6): every (category, shots, seed) cell -> the papers' metrics.

A cell fits a detector on ``k`` references drawn by :func:`~vandal.data.sampling.sample_shots`
(zero-shot: none; text prompts name the category when the backbone has a text encoder), predicts
the category's test set, and scores image and pixel metrics and the detector's own decisions.
Results go to ``DIR/results.json`` after every cell (atomically), so a killed run resumes where
it stopped; tables (Markdown, CSV) are written by :mod:`.tables`.

``results.json``: ``{"config": {...}, "runs": [{"category", "shots", "seed", "files", "metrics",
"decisions", "n_test", "n_anomalous", "seconds", "finished_at"}], "mean": {"<shots>": {"metrics",
"std", "categories", "seeds"}}}``; metrics are fractions in [0, 1] keyed as
:data:`~vandal.evaluation.cells.METRIC_KEYS` (``pixel_aupro_legacy`` is null when skipped or
undefined). Zero-shot cells have seed 0.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..backbones import resolve_kind
from ..config import DetectorConfig
from ..data.datasets import CategorySplit, load_dataset
from .cells import cell_seeds
from .config import EvalConfig
from .protocol import CategoryAccumulator, MaskCache
from .store import ResultStore

# A class name that stands for each category's own name: lets `vandal evaluate --adapters` (which needs a
# class name to shape the text map) run across categories without --class-name.
CATEGORY_NAME = "{category}"


def cell_config(config: EvalConfig, category: str) -> DetectorConfig:
    """The detector settings of a category's cells: the class name is the category's when text is on."""
    detector = config.detector
    if detector.text.class_name == CATEGORY_NAME or (
            config.text and not detector.text.class_name and resolve_kind(detector.backbone.name) == "clip"):
        name = category.replace("_", " ") if config.humanize else category
        detector = detector.replace(class_name=name)
    return detector


def zero_shot_possible(config: EvalConfig) -> bool:
    """Zero-shot cells need text (a CLIP backbone, text on) or mutual comparison."""
    detector = config.detector
    return detector.mutual.mode is not None or (config.text and resolve_kind(detector.backbone.name) == "clip")


class CellDetectors:
    """One detector refitted per cell: the backbone is loaded once for the whole run."""

    def __init__(self, config: EvalConfig):
        self.config = config
        self.detector: Any = None

    def fitted(self, category: str, references: list) -> Any:
        from ..detector import Detector

        settings = cell_config(self.config, category)
        if self.detector is None:
            self.detector = Detector(settings, device=self.config.device, progress=False)
        else:
            self.detector.set_params(config=settings)
        return self.detector.fit(references or None)


def run_cell(config: EvalConfig, split: CategorySplit, shots: int, seed: int, masks: MaskCache,
             detectors: CellDetectors, progress: bool = True, details: Callable | None = None) -> dict[str, Any]:
    """Fit, predict the test set, score: one ``runs`` entry. ``details(split, shots, seed, accumulator)``
    may look at the predictions before they are dropped (the HTML report's curves and misses)."""
    from ..data.images import load_image
    from ..data.sampling import sample_shots

    start = time.perf_counter()
    references = sample_shots(split.train, shots, seed) if shots else []
    detector = detectors.fitted(split.category, [s.path for s in references])
    acc = CategoryAccumulator(config.protocol, masks)
    grid = config.protocol == "grid"
    desc = f"{split.category} k={shots} seed={seed}"
    if detector.transductive:  # TRANSDUCTIVE (mutual batch): the whole test set is one predict call
        if grid:
            raise ValueError("--protocol grid scores one image at a time, but this detector compares the test images "
                             "with each other (mutual batch): use --protocol 518 or native")
        detector.progress = progress  # the all-pairs comparisons take minutes on a CPU: show their bar
        try:
            predictions = detector.predict([str(sample.path) for sample in split.test])
        finally:
            detector.progress = False
        for sample, prediction in zip(split.test, predictions, strict=True):
            acc.add(sample, prediction)
    for sample in tqdm([] if detector.transductive else split.test, desc=desc, unit="img", leave=False,
                       disable=not progress):
        acc.add(sample, detector.predict_image(load_image(sample.path), str(sample.path), grid=grid))
    metrics = acc.metrics(config.transductive and shots > 0, config.legacy_pro)
    if details is not None:
        details(split, shots, seed, acc)
    return {
        "category": split.category, "shots": shots, "seed": seed,
        "files": [str(s.path) for s in references],
        "metrics": metrics,
        "decisions": acc.decisions(),
        "n_test": len(split.test), "n_anomalous": int(sum(acc.labels)),
        "seconds": round(time.perf_counter() - start, 2),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _check_shots(splits: dict[str, CategorySplit], shots: list[int]) -> None:
    k = max(shots)
    short = {c: len(s.train) for c, s in splits.items() if len(s.train) < k}
    if short:
        raise ValueError(f"--shots asks for up to {k} references, but some categories have fewer normal "
                         f"training images: {short}; lower the shot counts or drop those categories")


Cell = tuple[str, int, int]  # (category, shots, seed)
# (config, splits, pending cells, progress) -> finished ``runs`` entries, in any order, as they finish
CellRunner = Callable[[EvalConfig, dict[str, CategorySplit], list[Cell], bool], Iterator[dict[str, Any]]]


def local_cells(config: EvalConfig, splits: dict[str, CategorySplit], pending: list[Cell],
                progress: bool = True, details: Callable | None = None) -> Iterator[dict[str, Any]]:
    """Run the cells here, one after another: one backbone, one category's masks in memory at a time
    (``details``: as in :func:`run_cell`)."""
    detectors = CellDetectors(config)
    for category in splits:
        masks = MaskCache(config.protocol)
        for c, k, seed in pending:
            if c == category:
                yield run_cell(config, splits[category], k, seed, masks, detectors, progress, details)


def evaluate(config: EvalConfig, out_dir: str | os.PathLike, restart: bool = False,
             echo: Callable[[str], None] = tqdm.write, progress: bool = True,
             runner: CellRunner | None = None) -> dict[str, Any]:
    """Run every missing cell, writing ``results.json`` after each, then the tables.

    runner: where the cells run (default :func:`local_cells`; ``vandal.engines.ray_engine.ray_cells``
    runs them on a Ray cluster). Returns the results document (the contents of ``results.json``).
    """
    from .report_cells import CellDetails
    from .report_html import write_evaluation_report
    from .tables import summarise, write_tables

    config.check()
    splits = load_dataset(config.dataset, config.root, config.categories)
    shots = list(dict.fromkeys(config.shots))
    _check_shots(splits, shots)
    out_dir = Path(out_dir)
    stored = config.to_dict()
    stored["categories"] = list(splits)
    store = ResultStore(out_dir, stored, restart=restart)
    out_dir.mkdir(parents=True, exist_ok=True)

    wanted = [(c, k, s) for c in splits for k in shots for s in cell_seeds(k, config.seeds)]
    pending = [cell for cell in wanted if not store.done(*cell)]
    if len(pending) < len(wanted):
        echo(f"resuming: {len(wanted) - len(pending)} of {len(wanted)} cells already in {store.path}")
    if 0 in shots and not zero_shot_possible(config):
        note = (f"shots 0 skipped: backbone {config.detector.backbone.name!r} has no text encoder; zero-shot needs "
                "a CLIP backbone (e.g. --backbone openai/clip-vit-large-patch14-336) or --mutual")
        echo(note)
        store.notes.append(note)
        pending = [cell for cell in pending if cell[1] != 0]

    def save() -> dict[str, Any]:
        # Means and tables are cheap: rewrite them with every cell, so a killed run leaves them current.
        summary = summarise(list(store.runs.values()), list(splits), shots, config.seeds)
        mean = {str(k): v["mean"] for k, v in summary.items()}
        store.save(mean)
        write_tables(summary, out_dir, store.config, list(store.runs.values()))
        write_evaluation_report(out_dir, summary, store.config, list(store.runs.values()))
        return store.document(mean)

    if runner is None:  # here: the cells' predictions also feed the HTML report's curves and worst misses
        runner = functools.partial(local_cells, details=CellDetails(out_dir, config))
    bar = tqdm(total=len(pending), desc="cells", unit="cell", disable=not progress)
    for run in runner(config, splits, pending, progress):
        store.add(run)
        save()
        bar.update()
    bar.close()
    return save()
