"""The model endpoints: list, create, add references (uploads, or reviewed inspections), predict, delete.
Reading needs a viewer key, predicting an inspector's, changing a model an admin's (``auth.py``);
every change is a new model version, every scored image an inspection record (``station.py``).

Thin by design (STYLE: surfaces are thin): each handler reads its uploads, decodes them with the
library's decoder, and calls the store, which calls the same :class:`~vandal.detector.Detector`
API as the CLI. CPU work runs in worker threads, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, File, Form, Query, Request, Response, UploadFile
from fastapi import Path as PathParam

from .auth import ADMIN, INSPECTOR, VIEWER
from .db.keys import Identity
from .encode import PNG_FIELDS, parse_include
from .errors import ServiceError
from .fit_options import fit_config
from .metrics import Metrics
from .references import references_from_inspections
from .schemas import ModelList, ModelSummary, PredictAnswer, documented
from .scoring import score_and_record
from .settings import ServeSettings
from .station import Station
from .store import ModelStore
from .uploads import decode_kept, read_uploads

Run = Callable[..., Awaitable[Any]]  # runs a blocking function in a worker thread

NAME_HELP = "Model name: 1-64 of A-Z a-z 0-9 _ . - (not starting with a dot)."
FILES_HELP = "Image files (PNG, JPEG, BMP, TIFF, WebP, GIF); repeat the field for several."


def add_model_routes(app: FastAPI, store: ModelStore, options: ServeSettings, metrics: Metrics, run: Run,
                     station: Station) -> None:
    """Register the endpoints on ``app`` itself (not through an included router, so every route is a
    plain one whose template the metrics can name even for requests answered before routing)."""

    async def decoded(files: list[UploadFile], skip_unreadable: bool = False) -> tuple[list, list]:
        uploads = await read_uploads(files, options)
        return await run(decode_kept, uploads, options.max_pixels, skip_unreadable, options.max_request_pixels)

    add_admin_routes(app, store, options, run, decoded, station)
    add_predict_route(app, store, metrics, run, decoded, station)


def versioned(store: ModelStore, station: Station, summary: dict) -> dict:
    """A model summary naming its current version (a damaged bundle's entry stays as it is)."""
    if "error" not in summary:
        summary["version"] = station.versions.current(summary["name"], store.path(summary["name"]))
    return summary


def changed(store: ModelStore, station: Station, name: str, action: str, who: Identity, change: Callable,
            *args: Any) -> dict:
    """Run ``change`` (a store write) and freeze its result as the model's next version, under the model's
    locks (this process's, then every process's: the store reloads a bundle another process changed)."""
    with store.lock(name), station.model_lock(name):
        change(name, *args)
        station.versions.commit(name, store.path(name), action, who.name)
        return versioned(store, station, store.summary(name))


def add_admin_routes(app: FastAPI, store: ModelStore, options: ServeSettings, run: Run, decoded: Callable,
                     station: Station) -> None:
    """List, read, create, grow and delete models."""

    def listing() -> list[dict]:
        return [versioned(store, station, summary) for summary in store.summaries()]

    @app.get("/models", tags=["models"], summary="List the models", responses=documented(ModelList, 401, 403))
    async def list_models(who: Identity = VIEWER) -> dict:
        return {"models": await run(listing)}

    @app.get("/models/{name}", tags=["models"], summary="One model's summary",
             responses=documented(ModelSummary, 401, 403, 404, 422))
    async def get_model(name: str = PathParam(..., description=NAME_HELP), who: Identity = VIEWER) -> dict:
        return await run(lambda: versioned(store, station, store.summary(name)))

    @app.post("/models/{name}", tags=["models"], status_code=201, summary="Create a model from normal images",
              responses=documented(ModelSummary, 401, 403, 408, 409, 413, 422, 503, status=201))
    async def create_model(
        name: str = PathParam(..., description=NAME_HELP),
        files: list[UploadFile] = File(..., description="Normal (defect-free) images. " + FILES_HELP),
        preset: str | None = Form(None, description="A named preset (`vandal presets`)."),
        settings: str | None = Form(None, description='JSON object of config fields by alias or dotted key, '
                                                      'e.g. {"image_size": 256}.'),
        overwrite: bool = Query(False, description="Replace a model of that name."),
        who: Identity = ADMIN,
    ) -> dict:
        store.path(name)  # a bad name fails before any decoding
        config = fit_config(preset, settings)
        images, _ = await decoded(files)
        action = "overwrite" if overwrite and store.path(name).exists() else "create"
        return await run(changed, store, station, name, action, who, store.create, [image for _, image in images],
                         config, overwrite)

    @app.post("/models/{name}/references", tags=["models"],
              summary="Add normal images to a model (no refit from scratch)",
              description="Multipart `files` (normal images), or a JSON body `{\"inspection_ids\": [...]}` of "
                          "inspections reviewed `good` (confirmed false alarms) whose kept images become references. "
                          "The threshold recalibrates on the new references.",
              openapi_extra={"requestBody": {"content": {"application/json": {"schema": {
                  "type": "object", "required": ["inspection_ids"],
                  "properties": {"inspection_ids": {"type": "array", "items": {"type": "integer"}}}}}}}},
              responses=documented(ModelSummary, 401, 403, 404, 408, 409, 413, 422, 503))
    async def add_references(
        request: Request,
        name: str = PathParam(..., description=NAME_HELP),
        files: list[UploadFile] | None = File(None, description="More normal images. " + FILES_HELP),
        who: Identity = ADMIN,
    ) -> dict:
        store.require(name)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
            images = await run(references_from_inspections, station, name, await request.body(),
                               options.max_pixels)
        else:
            if not files:
                raise ServiceError(422, "field 'files': upload at least one image, or send a JSON body "
                                        '{"inspection_ids": [...]} of inspections reviewed good')
            images = [image for _, image in (await decoded(files))[0]]
        return await run(changed, store, station, name, "references", who, store.add_references, images)

    @app.delete("/models/{name}", tags=["models"], status_code=204, summary="Delete a model",
                responses={401: {}, 403: {}, 404: {}, 422: {}})
    async def delete_model(name: str = PathParam(..., description=NAME_HELP), who: Identity = ADMIN) -> Response:
        await run(store.delete, name)
        await run(station.audit, who, "model.delete", name, None)
        await run(app.state.line.webhooks.remove_model, name)  # a later model of that name starts without hooks
        return Response(status_code=204)


def add_predict_route(app: FastAPI, store: ModelStore, metrics: Metrics, run: Run, decoded: Callable,
                      station: Station) -> None:
    """Score images: results in upload order, PNGs at each image's size, each one an inspection record."""

    @app.post("/models/{name}/predict", tags=["models"], summary="Score images",
              responses=documented(PredictAnswer, 401, 403, 404, 408, 409, 413, 422, 503))
    async def predict(
        name: str = PathParam(..., description=NAME_HELP),
        files: list[UploadFile] = File(..., description="Images to score. " + FILES_HELP),
        include: str | None = Query(None, description=f"PNGs to return, comma-separated from {', '.join(PNG_FIELDS)} "
                                                      "(default: all; empty: none). The overlay is kept with the "
                                                      "inspection only when it is returned."),
        image_threshold: float | None = Query(None, gt=0, description="Decision level on pred_score for this "
                                                                      "request (default: the model's)."),
        pixel_threshold: float | None = Query(None, gt=0, description="Mask level on the calibrated map for this "
                                                                      "request (default: the model's)."),
        skip_unreadable: bool = Query(False, description="Score the readable files and list the others in "
                                                         "'errors' instead of failing the request."),
        who: Identity = INSPECTOR,
    ) -> dict:
        fields = parse_include(include)
        store.require(name)
        images, errors = await decoded(files, skip_unreadable)
        body: dict[str, Any] = {"results": []}
        if images:
            body["results"] = await run(score_and_record, store, station, name, images, fields, image_threshold,
                                        pixel_threshold, who)
            metrics.add_images(len(images))
        if skip_unreadable:
            body["errors"] = errors
        return body
