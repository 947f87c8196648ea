"""The papers' benchmark tables: cells (category x shots x seed), protocols, results file, tables."""

from __future__ import annotations

from .cells import METRIC_KEYS, cell_seeds
from .config import PROTOCOLS, EvalConfig
from .run import evaluate, run_cell

__all__ = ["METRIC_KEYS", "PROTOCOLS", "EvalConfig", "cell_seeds", "evaluate", "run_cell"]
