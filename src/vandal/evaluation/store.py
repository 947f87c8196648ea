"""``results.json``: the config and one entry per finished cell, rewritten atomically after each cell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from .config import settings

RESULTS_FILE = "results.json"


class ConfigMismatchError(ValueError):
    """``results.json`` in the output folder was made with other settings."""


class ResultStore:
    """The finished cells of a run, keyed (category, shots, seed); resumes a compatible file."""

    def __init__(self, out_dir: Path, config: dict[str, Any], restart: bool = False):
        self.path = Path(out_dir) / RESULTS_FILE
        self.config = config
        self.runs: dict[tuple[str, int, int], dict] = {}
        self.notes: list[str] = []
        if self.path.is_file() and not restart:
            self._resume()

    def _resume(self) -> None:
        try:
            old = json.loads(self.path.read_text())
            old_config = old["config"]
            runs = old["runs"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ConfigMismatchError(
                f"{self.path} exists but is not a vandal results file ({error}); use --restart to overwrite it "
                "or choose another --out") from error
        new, before = settings(self.config), settings(old_config)
        diff = sorted(k for k in new.keys() | before.keys() if new.get(k) != before.get(k))
        if diff:
            lines = ", ".join(f"{k}: {before.get(k)!r} -> {new.get(k)!r}" for k in diff)
            raise ConfigMismatchError(
                f"{self.path} was written with other settings ({lines}); its cells are not comparable. "
                "Use --restart to discard them, or another --out folder.")
        for run in runs:
            self.runs[(run["category"], run["shots"], run["seed"])] = run

    def done(self, category: str, shots: int, seed: int) -> bool:
        return (category, shots, seed) in self.runs

    def add(self, run: dict) -> None:
        self.runs[(run["category"], run["shots"], run["seed"])] = run

    def document(self, mean: dict | None = None) -> dict[str, Any]:
        runs = [self.runs[k] for k in sorted(self.runs)]
        doc: dict[str, Any] = {"config": self.config, "runs": runs, "mean": mean or {}}
        if self.notes:
            doc["notes"] = self.notes
        return doc

    def save(self, mean: dict | None = None) -> None:
        atomic_write_text(self.path, json.dumps(self.document(mean), indent=1, allow_nan=False))
