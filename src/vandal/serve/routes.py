"""The model endpoints: list, create, add references, predict, delete.

Thin by design (STYLE: surfaces are thin): each handler reads its uploads, decodes them with the
library's decoder, and calls the store, which calls the same :class:`~vandal.detector.Detector`
API as the CLI. CPU work runs in worker threads, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, File, Form, Query, Response, UploadFile
from fastapi import Path as PathParam

from .encode import PNG_FIELDS, parse_include, results_json
from .fit_options import fit_config
from .line import LineIntegration
from .metrics import Metrics
from .schemas import ModelList, ModelSummary, PredictAnswer, documented
from .settings import ServeSettings
from .store import ModelStore
from .uploads import decode_uploads, read_uploads

Run = Callable[..., Awaitable[Any]]  # runs a blocking function in a worker thread

NAME_HELP = "Model name: 1-64 of A-Z a-z 0-9 _ . - (not starting with a dot)."
FILES_HELP = "Image files (PNG, JPEG, BMP, TIFF, WebP, GIF); repeat the field for several."


def add_model_routes(app: FastAPI, store: ModelStore, options: ServeSettings, metrics: Metrics, run: Run,
                     line: LineIntegration) -> None:
    """Register the endpoints on ``app`` itself (not through an included router, so every route is a
    plain one whose template the metrics can name even for requests answered before routing)."""

    async def decoded(files: list[UploadFile], skip_unreadable: bool = False) -> tuple[list, list]:
        uploads = await read_uploads(files, options)
        return await run(decode_uploads, uploads, options.max_pixels, skip_unreadable)

    add_admin_routes(app, store, run, decoded, line)
    add_predict_route(app, store, metrics, run, decoded, line)


def add_admin_routes(app: FastAPI, store: ModelStore, run: Run, decoded: Callable, line: LineIntegration) -> None:
    """List, read, create, grow and delete models."""

    @app.get("/models", tags=["models"], summary="List the models", responses=documented(ModelList))
    async def list_models() -> dict:
        return {"models": await run(store.summaries)}

    @app.get("/models/{name}", tags=["models"], summary="One model's summary",
             responses=documented(ModelSummary, 404, 422))
    async def get_model(name: str = PathParam(..., description=NAME_HELP)) -> dict:
        return await run(store.summary, name)

    @app.post("/models/{name}", tags=["models"], status_code=201, summary="Create a model from normal images",
              responses=documented(ModelSummary, 409, 413, 422, 503, status=201))
    async def create_model(
        name: str = PathParam(..., description=NAME_HELP),
        files: list[UploadFile] = File(..., description="Normal (defect-free) images. " + FILES_HELP),
        preset: str | None = Form(None, description="A named preset (`vandal presets`)."),
        settings: str | None = Form(None, description='JSON object of config fields by alias or dotted key, '
                                                      'e.g. {"image_size": 256}.'),
        overwrite: bool = Query(False, description="Replace a model of that name."),
    ) -> dict:
        store.path(name)  # a bad name fails before any decoding
        config = fit_config(preset, settings)
        images, _ = await decoded(files)
        return await run(store.create, name, [image for _, image in images], config, overwrite)

    @app.post("/models/{name}/references", tags=["models"],
              summary="Add normal images to a model (no refit from scratch)",
              responses=documented(ModelSummary, 404, 413, 422, 503))
    async def add_references(
        name: str = PathParam(..., description=NAME_HELP),
        files: list[UploadFile] = File(..., description="More normal images. " + FILES_HELP),
    ) -> dict:
        store.require(name)
        images, _ = await decoded(files)
        return await run(store.add_references, name, [image for _, image in images])

    @app.delete("/models/{name}", tags=["models"], status_code=204, summary="Delete a model",
                responses={404: {}, 422: {}})
    async def delete_model(name: str = PathParam(..., description=NAME_HELP)) -> Response:
        await run(store.delete, name)
        await run(line.webhooks.remove_model, name)
        return Response(status_code=204)


def add_predict_route(app: FastAPI, store: ModelStore, metrics: Metrics, run: Run, decoded: Callable,
                      line: LineIntegration) -> None:
    """Score images: results in upload order, PNGs at each image's size."""

    @app.post("/models/{name}/predict", tags=["models"], summary="Score images",
              responses=documented(PredictAnswer, 404, 413, 422, 503))
    async def predict(
        name: str = PathParam(..., description=NAME_HELP),
        files: list[UploadFile] = File(..., description="Images to score. " + FILES_HELP),
        include: str | None = Query(None, description=f"PNGs to return, comma-separated from {', '.join(PNG_FIELDS)} "
                                                      "(default: all; empty: none)."),
        image_threshold: float | None = Query(None, gt=0, description="Decision level on pred_score for this "
                                                                      "request (default: the model's)."),
        pixel_threshold: float | None = Query(None, gt=0, description="Mask level on the calibrated map for this "
                                                                      "request (default: the model's)."),
        skip_unreadable: bool = Query(False, description="Score the readable files and list the others in "
                                                         "'errors' instead of failing the request."),
    ) -> dict:
        fields = parse_include(include)
        store.require(name)
        images, errors = await decoded(files, skip_unreadable)
        body: dict[str, Any] = {"results": []}
        if images:
            predictions, level = await run(store.predict, name, [image for _, image in images],
                                           image_threshold, pixel_threshold)
            metrics.add_images(len(predictions))
            body["results"] = await run(results_json, images, predictions, level, fields)
            line.publish(name, body["results"])
        if skip_unreadable:
            body["errors"] = errors
        return body

