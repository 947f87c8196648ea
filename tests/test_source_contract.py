"""A new score source is one class and one registry line: calibration, predict and ONNX export ask it
through the contract (hold-out, graph terms) and never name it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vandal.detector import Detector
from vandal.sources import SOURCES, ScoreSource, SourceScore
from vandal.sources.base import GraphTerms

from synthetic import plant_defect, texture


def colour_map(taps: list[torch.Tensor], mean: torch.Tensor, size: int) -> torch.Tensor:
    """Views' first tap ``[B, h, w, C]`` -> distance of each token to the references' mean token per place,
    upsampled to ``[B, size, size]``."""
    distance = (taps[0].float() - mean).norm(dim=-1)
    return F.interpolate(distance[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]


class ColourTerms(nn.Module):
    def __init__(self, mean: torch.Tensor, size: int):
        super().__init__()
        self.register_buffer("mean", mean.float().cpu())
        self.size = size

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        return colour_map(taps, self.mean, self.size)


class ColourSource(ScoreSource):
    """Toy source: per place, the first tap's distance to the references' mean token there."""

    name = "toy-colour"
    option = "the test's registry line"

    def __init__(self, config, embedder):
        super().__init__(config, embedder)
        self.means: list[torch.Tensor] = []
        self.exportable = True

    @classmethod
    def wanted(cls, config, has_references: bool) -> bool:
        return has_references

    @property
    def reference_count(self) -> int:
        return len(self.means)

    def add(self, reference) -> None:
        self.means.append(reference.item.output.taps[0].float().mean(dim=0))

    def _map(self, item, means: list[torch.Tensor]) -> torch.Tensor:
        return colour_map(item.output.taps, torch.stack(means).mean(dim=0), self.embedder.size)

    def score(self, item) -> SourceScore:
        return SourceScore(self._map(item, self.means))

    def score_left_out(self, index: int, item) -> SourceScore:
        return SourceScore(self._map(item, self.means[:index] + self.means[index + 1:]))

    def graph_terms(self) -> GraphTerms:
        if not self.exportable:
            return super().graph_terms()
        return GraphTerms(map=ColourTerms(torch.stack(self.means).mean(dim=0), self.embedder.size))


@pytest.fixture(scope="module")
def with_toy():
    SOURCES[ColourSource.name] = ColourSource  # the one registry line
    try:
        yield Detector(image_size=128, distribution="on", device="cpu", progress=False).fit([texture(0), texture(1), texture(2)])
    finally:
        del SOURCES[ColourSource.name]


def test_a_new_source_calibrates_and_predicts(with_toy, monkeypatch):
    detector = with_toy
    assert detector.source_names == ["memory", "distribution", ColourSource.name]
    assert detector.calibration_.method.startswith("held-out")
    monkeypatch.delitem(SOURCES, ColourSource.name)
    plain = Detector(image_size=128, distribution="on", device="cpu", progress=False).fit([texture(0), texture(1), texture(2)])
    # Its leave-one-out maps joined the calibration: the level moved from the memory-only detector's.
    assert detector.calibration_.pixel_threshold != plain.calibration_.pixel_threshold
    defect, _ = plant_defect(texture(11), 1)
    predictions = detector.predict([defect, texture(7)])
    assert predictions[0].pred_label and predictions[0].pred_score > predictions[1].pred_score


def test_a_new_source_exports_its_terms_and_runs_in_onnxruntime(with_toy, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from vandal.export import OnnxDetector, export_onnx

    detector = with_toy
    path = export_onnx(detector, tmp_path / "toy.onnx")  # verifies the written graph against torch
    runner = OnnxDetector(path, device="cpu", progress=False)
    assert runner.source_names == detector.source_names
    images = [plant_defect(texture(11), 1)[0], texture(7)]
    for want, got in zip(detector.predict(images), runner.predict(images)):
        assert abs(want.pred_score - got.pred_score) <= 1e-3 and want.pred_label == got.pred_label
        assert float(np.abs(want.anomaly_map - got.anomaly_map).max()) <= 1e-3


def test_a_source_without_terms_is_refused_by_name(with_toy, tmp_path):
    pytest.importorskip("onnxscript")
    from vandal.export import NotExportableError, export_onnx

    toy = next(s for s in with_toy.sources_ if s.name == ColourSource.name)
    toy.exportable = False
    try:
        with pytest.raises(NotExportableError, match="toy-colour source .turned on by the test's registry line"):
            export_onnx(with_toy, tmp_path / "refused.onnx")
    finally:
        toy.exportable = True
    assert not (tmp_path / "refused.onnx").exists()
