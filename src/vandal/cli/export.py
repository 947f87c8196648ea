"""``vandal export``: a saved detector as one ONNX file (graph + metadata), checked against torch."""

from __future__ import annotations

from pathlib import Path

import click

from .common import echo, fail, user_errors


@click.command(help="Export a saved detector (MODEL_DIR from `vandal fit`) to one file that runs without the bundle: "
                    "`--format onnx` writes an ONNX graph (views -> pred_score, anomaly_map) with its thresholds and "
                    "preprocessing as metadata; `vandal predict model.onnx IMAGES --out DIR` runs it with onnxruntime.")
@click.argument("model", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--format", "format_", type=click.Choice(["onnx"]), default="onnx", show_default=True,
              help="Export format.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output file, e.g. model.onnx.")
@click.option("--external-data", is_flag=True,
              help="Write the tensors to OUT.data beside the file (needed above ONNX's 2 GB single-file limit).")
@user_errors
def export(model: Path, format_: str, out: Path, external_data: bool) -> None:
    from ..detector import Detector
    from ..export import NotExportableError, export_onnx

    detector = Detector.load(str(model), device="cpu", progress=False)
    try:
        path = export_onnx(detector, out, external_data=external_data)
    except NotExportableError as error:
        fail(str(error))
    size = path.stat().st_size + (Path(f"{path}.data").stat().st_size if external_data else 0)
    spec = detector.backbone_.spec
    echo(f"wrote {path} ({size / 2**20:.1f} MiB{f', tensors in {path}.data' if external_data else ''}): "
         f"{spec.name} at {spec.image_size} px, resize={detector.plan_.resize or detector.config.views.resize}, "
         f"{detector.n_references_} reference(s); checked against torch on a test input")
