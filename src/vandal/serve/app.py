"""The app factory: the model endpoints, the station's records, /health, /metrics, the page (``GET /``)
and the API docs, behind these middlewares (outermost first): metrics, the browser guards (hosts,
origins, security headers), the body limit, the body gate (a deadline, then a queue place), the
bounded queue."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.responses import FileResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from .errors import install_handlers
from .gate import BodyGateMiddleware, GateCounts
from .guards import GuardMiddleware
from .key_routes import add_key_routes
from .limits import BodyLimitMiddleware
from .line import LineIntegration
from .line_routes import add_line_routes
from .metrics import Metrics, MetricsMiddleware
from .queue import Admission, AdmissionMiddleware
from .record_routes import add_record_routes
from .routes import add_model_routes
from .schemas import Health, documented
from .settings import ServeSettings
from .station import Station
from .store import ModelStore

STATIC = Path(__file__).with_name("static")

DESCRIPTION = """Zero-/few-shot visual anomaly detection over HTTP.

Models are named detector bundles (the folders `vandal fit` writes). Create one from a few normal
images, then score images: each result has `pred_score` (calibrated: above the model's
`image_threshold`, 0.5 unless set, means anomalous), `pred_label`, and PNGs at the image's size.
Errors are `{"detail": "..."}` naming the file or field. The page is at `/`.

Every scored image is an inspection record (`GET /inspections`), which operators review; every
change to a model is a version (`GET /models/{name}/versions`). With API keys (`vandal keys add NAME
--role viewer|inspector|admin`), send `Authorization: Bearer KEY`: viewers read, inspectors also
predict and review, admins also change models and read `/audit`.
"""
READERS_PER_PLACE = 4  # uploads arriving at once, per queue place (slow senders wait here, not in the queue)


class WorkerThreads:
    """Runs blocking calls in worker threads, at most ``limit`` at a time (created on first use,
    inside the event loop)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._limiter: anyio.CapacityLimiter | None = None

    async def __call__(self, function: Any, *args: Any) -> Any:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.limit)
        return await anyio.to_thread.run_sync(functools.partial(function, *args), limiter=self._limiter)


def build_app(settings: ServeSettings) -> FastAPI:
    """The service for the models in ``settings.models`` (see :class:`ServeSettings`)."""
    store = ModelStore(settings.models, settings.device, settings.cache_size, settings.max_pixels,
                       settings.allow_download)
    metrics = Metrics()
    admission = Admission(settings.queue_size)
    # Admitted requests wait for their model's lock in a thread: one thread each, and two spare.
    run = WorkerThreads(settings.queue_size + 2)
    station = Station(settings)
    line = LineIntegration(settings, store, station)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        line.start()  # webhook deliveries, MQTT and watched folders run in their own threads
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(line.stop)

    app = FastAPI(title="vandal", version=__version__, description=DESCRIPTION, docs_url=None, redoc_url=None,
                  lifespan=lifespan)
    gate = GateCounts(READERS_PER_PLACE * settings.queue_size)
    app.state.store, app.state.metrics, app.state.admission, app.state.settings = store, metrics, admission, settings
    # on_recorded: the hook for line integration (webhooks, MQTT): see station.py
    app.state.station, app.state.auth, app.state.on_recorded = station, station.auth, station.on_recorded
    app.state.line = line
    install_handlers(app)
    add_model_routes(app, store, settings, metrics, run, station)
    add_record_routes(app, store, station, run)
    add_key_routes(app, station, run)
    add_line_routes(app, store, line, run)

    metrics.gauge("vandal_queue_active", "Heavy requests (fit, references, predict) in progress.",
                  lambda: admission.active)
    metrics.gauge("vandal_queue_capacity", "Heavy requests admitted at once (--queue-size).",
                  lambda: admission.capacity)
    metrics.gauge("vandal_queue_rejected_total", "Heavy requests answered 503 because the queue was full.",
                  lambda: admission.rejected, kind="counter")
    metrics.gauge("vandal_uploads_timed_out_total", "Request bodies answered 408 (slower than --body-timeout).",
                  lambda: gate.timed_out, kind="counter")
    metrics.gauge("vandal_models_cached", "Detectors loaded in memory (LRU, --cache-size).", lambda: len(store.cache))
    metrics.gauge("vandal_webhook_deliveries_queued", "Webhook deliveries waiting to be sent or retried.",
                  lambda: line.sender.queued)
    if line.mqtt is not None:
        metrics.gauge("vandal_mqtt_connected", "1 while connected to the --mqtt broker.",
                      lambda: int(line.mqtt.connected.is_set()) if line.mqtt is not None else 0)

    @app.get("/health", tags=["service"], summary="Liveness", responses=documented(Health))
    async def health() -> dict:
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics (text format)",
             response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        # Our own page over /openapi.json: Swagger UI would load its scripts from a CDN, and this works offline.
        return FileResponse(STATIC / "docs.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(AdmissionMiddleware, admission=admission)
    app.add_middleware(BodyGateMiddleware, timeout=settings.body_timeout, counts=gate)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(GuardMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(MetricsMiddleware, metrics=metrics, router_app=app)
    return app
