"""Writing a fitted detector as one ONNX file that runs with no other file.

The graph is :class:`~vandal.export.onnx_graph.DetectorGraph`, captured by ``torch.onnx.export``'s
``torch.export``-based exporter (``dynamo=True``, the default since torch 2.9; it needs the ``onnx``
and ``onnxscript`` packages, the ``onnx`` extra) with a dynamic batch. ``metadata_props`` carry what
running it needs: format and version, backbone, input size, mean/std and resampling, resize policy,
raw thresholds, taps, the whole config and calibration (:data:`METADATA_KEYS`).

Protocol buffers cap a file at 2 GB: a larger model (a big augmented bank) is refused unless
``external_data`` writes the tensors to ``NAME.data`` beside it (both files then travel together).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..atomic import atomic_write_bytes
from .onnx_graph import OUTPUTS, DetectorGraph
from .runtime import DECISION_KEY, FORMAT, FORMAT_VERSION, INPUT, PROTO_LIMIT, VERIFY_TOLERANCE, session


def _require_onnx():
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError as error:
        raise ImportError(f"ONNX export needs the onnx extra ({error.name} is missing): "
                          "pip install 'vandal[onnx]'") from error
    return onnx


def metadata(detector, graph: DetectorGraph) -> dict[str, str]:
    """What running ``graph`` (of ``detector``) needs besides its weights, as ``metadata_props`` strings
    (JSON values)."""
    spec = detector.backbone_.spec
    calibration = detector.calibration_
    # The layout the references decided (views.resize auto is resolved once per product at fit).
    config = detector.config.replace(image_size=spec.image_size, taps=spec.taps,
                                     resize=detector.plan_.resize or detector.config.views.resize)
    size = spec.image_size
    values = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "vandal_version": __version__,
        "backbone": spec.name, "backbone_kind": spec.kind, "image_size": size,
        "mean": list(spec.preprocessing.mean), "std": list(spec.preprocessing.std),
        "resample": spec.preprocessing.resample, "resize": config.views.resize,
        "lighting": None if detector.plan_.lighting is None else list(detector.plan_.lighting),
        "image_threshold": calibration.image_threshold, "pixel_threshold": calibration.pixel_threshold,
        "decision_level": 0.5, "taps": list(spec.taps), "tap_dims": list(spec.tap_dims),
        "neighbourhood": list(detector.plan_.neighbourhood), "smoothing_sigma": config.post.smoothing_sigma,
        DECISION_KEY: None if graph.decision is None else {**graph.decision_meta, "exclusive": graph.exclusive,
                                                            "source": graph.decision_source},
        "sources": [s.name for s in detector.sources_],
        "n_references": detector.n_references_,
        "inputs": {INPUT: f"[B, 3, {size}, {size}] float32: views resized ({spec.preprocessing.resample}) and "
                          "normalised with mean/std, under the resize policy (the image's grey levels first "
                          "moved to 'lighting' [mean, std] when that is not null)"},
        "outputs": {"pred_score": "[B] calibrated max of each view's map on the input grid (0.5 = threshold)",
                    "anomaly_map": f"[B, {size}, {size}] calibrated map per view (0.5 = threshold)",
                    "raw_map": f"[B, {size}, {size}] smoothed raw map per view: merge views, take the max, "
                               "divide by the raw thresholds and multiply by 0.5",
                    "dist_delta": "[B, C] per view: mean L2-normalised deepest-tap token minus the references' "
                                  "mean ([B, 1] zeros when 'distribution' is null)",
                    "dist_pdelta": "[B, C] per view: dist_delta times the references' precision; an image's "
                                   "D = mean(dist_delta) . mean(dist_pdelta) over its views, its score "
                                   "0.5 * D / (level * margin), joined to the map's score by maximum"},
        "config": config.to_dict(), "calibration": calibration.to_dict(),
    }
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def _graph(detector) -> DetectorGraph:
    """The export module on the CPU; a detector on another device keeps its own backbone there."""
    graph = DetectorGraph(detector)
    if next(graph.backbone.parameters()).device.type != "cpu":
        graph.backbone = copy.deepcopy(graph.backbone).cpu()
    return graph.eval()


def _example(detector) -> torch.Tensor:
    """Two different views, so the exporter keeps the batch symbolic (a batch of 1 would be specialised)."""
    generator = torch.Generator().manual_seed(0)
    size = detector.backbone_.spec.image_size
    return torch.rand(2, 3, size, size, generator=generator) * 2 - 1


def _capture(graph: DetectorGraph, example: torch.Tensor):
    import logging
    import warnings

    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    # The exporter logs that torchvision's operators are not registered: nothing here uses them.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings on the backbone's shape checks
            program = torch.onnx.export(graph, (example,), dynamo=True, input_names=[INPUT],
                                        output_names=list(OUTPUTS), dynamic_shapes={"pixels": {0: batch}},
                                        external_data=False, verbose=False)
    finally:
        registration.setLevel(level)
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program (the dynamo exporter failed silently)")
    return program.model_proto


def tensor_bytes(model) -> int:
    """Bytes of the model's initializers (the banks and the backbone weights)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    return sum(int(np.prod(t.dims, dtype=np.int64)) * tensor_dtype_to_np_dtype(t.data_type).itemsize
               for t in model.graph.initializer)


def _verify(path: Path, graph: DetectorGraph, example: torch.Tensor) -> float:
    """Run the written file in onnxruntime against the torch module; the largest raw-map difference."""
    with torch.no_grad():
        want = graph(example)[2].numpy()
    got = session(str(path), "cpu", threads=None).run(["raw_map"], {INPUT: example.numpy()})[0]
    difference = float(np.abs(got - want).max())
    if not difference <= VERIFY_TOLERANCE:
        raise RuntimeError(f"the exported graph differs from the torch detector by {difference:.3g} on its example "
                           f"input (tolerance {VERIFY_TOLERANCE}): please report this with the detector's config")
    return difference


def _write(onnx, model, target: Path, external_data: bool) -> None:
    """Atomically: the file (and its ``.data`` tensors) written in a temporary folder, then renamed."""
    if not external_data:
        atomic_write_bytes(target, model.SerializeToString())
        return
    data_name = f"{target.name}.data"
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as staging:
        onnx.save_model(model, os.path.join(staging, target.name), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data_name, size_threshold=1024)
        os.replace(os.path.join(staging, data_name), target.parent / data_name)
        os.replace(os.path.join(staging, target.name), target)


def export_onnx(detector, path: str | os.PathLike, external_data: bool = False, verify: bool = True) -> Path:
    """Write a fitted detector (global memory bank only, see
    :func:`~vandal.export.onnx_graph.check_exportable`) to ``path`` as ONNX; returns the path.

    external_data: tensors in ``NAME.data`` beside the file (needed above 2 GB). verify: run the written
    file in onnxruntime and compare it with the torch module on the export's example input.
    """
    onnx = _require_onnx()
    target = Path(path).expanduser()
    if target.suffix != ".onnx":
        raise ValueError(f"{target}: name the ONNX file with the .onnx suffix (vandal predict chooses the runtime "
                         "by it)")
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a folder: give a file path such as {target / 'model.onnx'}")
    graph = _graph(detector)
    example = _example(detector)
    model = _capture(graph, example)
    size = tensor_bytes(model)
    if size > PROTO_LIMIT and not external_data:
        raise ValueError(f"the exported model holds {size / 2**30:.2f} GiB of tensors, over ONNX's 2 GB single-file "
                         "limit: export with --external-data (writes NAME.onnx.data beside it; keep both together), "
                         "or fit on fewer references / without --augment")
    del model.metadata_props[:]
    for key, value in metadata(detector, graph).items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = "vandal anomaly detector: normalised views -> pred_score, anomaly_map, raw_map, dist_delta, dist_pdelta"
    target.parent.mkdir(parents=True, exist_ok=True)
    _write(onnx, model, target, external_data)
    if verify:
        _verify(target, graph, example)
    return target
