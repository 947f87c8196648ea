"""Record the golden outputs (run once, before a refactor): ``python tests/golden/record.py``."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
torch.set_num_threads(2)

from vandal.detector import Detector  # noqa: E402

from golden_cases import GOLDEN_DIR, cases, map_sample  # noqa: E402


def main() -> None:
    record, maps = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, settings, references, tests in cases(Path(tmp)):
            detector = Detector(**settings, device="cpu", progress=False).fit(references or None)
            predictions = detector.predict(tests)
            record[name] = {
                "pred_score": [p.pred_score for p in predictions],
                "raw_score": [p.raw_score for p in predictions],
                "pred_label": [p.pred_label for p in predictions],
                "image_threshold": detector.calibration_.image_threshold,
                "pixel_threshold": detector.calibration_.pixel_threshold,
                "mask_pixels": [int(p.pred_mask.sum()) for p in predictions],
            }
            for i, p in enumerate(predictions):
                maps[f"{name}/{i}"] = map_sample(p.anomaly_map)
            print(name, [round(s, 6) for s in record[name]["pred_score"]], flush=True)
    GOLDEN_DIR.mkdir(exist_ok=True)
    (GOLDEN_DIR / "golden.json").write_text(json.dumps(record, indent=1))
    np.savez_compressed(GOLDEN_DIR / "maps.npz", **maps)


if __name__ == "__main__":
    main()
