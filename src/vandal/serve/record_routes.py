"""The station's records over HTTP: inspections (list, one, its image and overlay, CSV), reviews,
per-model stats, model versions and rollback, the audit trail, and who the caller is."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import Depends, FastAPI, Query, Response
from fastapi.responses import StreamingResponse

from .auth import ADMIN, INSPECTOR, VIEWER
from .blobs import media_type
from .db import audit, records, stats, versions
from .db.keys import Identity
from .db.times import parse_time, utcnow
from .errors import ServiceError
from .schemas import (
    AuditList,
    InspectionList,
    InspectionOne,
    ModelSummary,
    ReviewAnswer,
    ReviewBody,
    RollbackBody,
    StatsAnswer,
    VersionList,
    WhoAmI,
    documented,
)
from .station import Station
from .store import ModelStore

Run = Callable[..., Awaitable[Any]]
CSV_FIELDS = ("id", "time", "model", "version", "file", "sha256", "size", "width", "height", "pred_score",
              "pred_label", "verdict", "image_threshold", "pixel_threshold", "key", "source")
STATS_SPAN = {"hour": timedelta(hours=48), "day": timedelta(days=30)}  # the default range of /stats
TIME_HELP = "ISO 8601 time (UTC unless an offset is given), e.g. 2026-12-03T09:00:00Z."


def spreadsheet_safe(value: Any) -> Any:
    """A client's text (a file name) that a spreadsheet would run as a formula gets a leading quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def time_or_none(text: str | None, what: str) -> datetime | None:
    try:
        return None if text in (None, "") else parse_time(text, f"query parameter {what!r}")
    except ValueError as error:
        raise ServiceError(422, str(error)) from error


class Filters:
    """The inspections' query filters, parsed once (a dependency shared by the list and the CSV)."""

    def __init__(self,
                 model: str | None = Query(None, description="Only this model's inspections."),
                 label: bool | None = Query(None, description="true: flagged (pred_label) only; false: passed only."),
                 verdict: Literal["good", "defect", "none"] | None = Query(
                     None, description="The latest review: good, defect, or none (not reviewed)."),
                 since: str | None = Query(None, description="From this time on. " + TIME_HELP),
                 until: str | None = Query(None, description="Before this time. " + TIME_HELP)):
        self.model, self.label, self.verdict = model, label, verdict
        self.since, self.until = time_or_none(since, "since"), time_or_none(until, "until")

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "label": self.label, "verdict": self.verdict, "since": self.since,
                "until": self.until}


def add_record_routes(app: FastAPI, store: ModelStore, station: Station, run: Run) -> None:
    db = station.db

    def page(filters: Filters, cursor: int | None, limit: int) -> dict:
        with db.connect() as conn:
            found, next_cursor = records.list_inspections(conn, **filters.as_dict(), cursor=cursor, limit=limit)
        return {"inspections": found, "next": next_cursor}

    @app.get("/me", tags=["station"], summary="The caller's key name and role",
             responses=documented(WhoAmI, 401))
    async def whoami(who: Identity = VIEWER) -> dict:
        return {"name": who.name, "role": who.role, "keys_required": who.name is not None}

    @app.get("/inspections", tags=["inspections"], summary="Inspections, newest first (cursor pagination)",
             responses=documented(InspectionList, 401, 403, 422))
    async def inspections_page(
        filters: Filters = Depends(),
        cursor: int | None = Query(None, description="The `next` of the previous page."),
        limit: int = Query(50, ge=1, le=records.MAX_PAGE, description="Inspections per page."),
        who: Identity = VIEWER,
    ) -> dict:
        return await run(page, filters, cursor, limit)

    def csv_rows(filters: Filters) -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        cursor: int | None = None
        while True:
            with db.connect() as conn:
                found, cursor = records.list_inspections(conn, **filters.as_dict(), cursor=cursor,
                                                         limit=records.MAX_PAGE)
            for row in found:
                writer.writerow({key: spreadsheet_safe(value) for key, value in row.items()})
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if cursor is None:
                return

    @app.get("/inspections.csv", tags=["inspections"], summary="Inspections as CSV (the same filters)",
             response_class=StreamingResponse, responses={401: {}, 403: {}, 422: {}})
    async def inspections_csv(filters: Filters = Depends(), who: Identity = VIEWER) -> StreamingResponse:
        return StreamingResponse(csv_rows(filters), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="inspections.csv"'})

    def one(inspection_id: int) -> dict:
        with db.connect() as conn:
            found = records.get_inspection(conn, inspection_id)
        if found is None:
            raise ServiceError(404, f"no inspection {inspection_id}; GET /inspections lists them")
        return found

    @app.get("/inspections/{inspection_id}", tags=["inspections"], summary="One inspection with all its reviews",
             responses=documented(InspectionOne, 401, 403, 404))
    async def get_inspection(inspection_id: int, who: Identity = VIEWER) -> dict:
        return await run(one, inspection_id)

    def kept(inspection_id: int, what: str) -> Response:
        found = one(inspection_id)
        digest = found["sha256"] if what == "image" else found.get("overlay_sha256")
        data = None if digest is None else station.images.get(digest)
        if data is None:
            why = ("the request asked for no overlay" if what == "overlay" and digest is None
                   else "images are kept --keep-images days (0: none)")
            raise ServiceError(404, f"inspection {inspection_id}: its {what} is not kept ({why})")
        return Response(data, media_type=media_type(data), headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/inspections/{inspection_id}/image", tags=["inspections"], summary="The inspected image as uploaded",
             response_class=Response, responses={200: {"content": {"image/png": {}}}, 401: {}, 403: {}, 404: {}})
    async def inspection_image(inspection_id: int, who: Identity = VIEWER) -> Response:
        return await run(kept, inspection_id, "image")

    @app.get("/inspections/{inspection_id}/overlay", tags=["inspections"], summary="The inspection's overlay PNG",
             response_class=Response, responses={200: {"content": {"image/png": {}}}, 401: {}, 403: {}, 404: {}})
    async def inspection_overlay(inspection_id: int, who: Identity = VIEWER) -> Response:
        return await run(kept, inspection_id, "overlay")

    def review(inspection_id: int, body: ReviewBody, who: Identity) -> dict:
        with db.begin() as conn:
            made = records.add_review(conn, inspection_id, body.verdict, body.note, who.name)
            if made is None:
                raise ServiceError(404, f"no inspection {inspection_id}; GET /inspections lists them")
            audit.record(conn, who.name, "inspection.review", str(inspection_id),
                         {"verdict": body.verdict, "note": body.note})
        return made

    @app.post("/inspections/{inspection_id}/review", tags=["inspections"], status_code=201,
              summary="Review an inspection (later reviews supersede earlier ones; all are kept)",
              responses=documented(ReviewAnswer, 401, 403, 404, 422, status=201))
    async def review_inspection(inspection_id: int, body: ReviewBody, who: Identity = INSPECTOR) -> dict:
        return await run(review, inspection_id, body, who)

    add_model_history_routes(app, store, station, run)


def add_model_history_routes(app: FastAPI, store: ModelStore, station: Station, run: Run) -> None:
    db = station.db

    def model_stats(name: str, bucket: str, since: datetime | None, until: datetime | None) -> dict:
        with db.connect() as conn:
            rows = records.score_rows(conn, name, since, until)
        return {"model": name, "bucket": bucket, "total": stats.summarise(rows), "histogram": stats.histogram(rows),
                "buckets": stats.bucketed(rows, bucket)}

    @app.get("/models/{name}/stats", tags=["models"], summary="Inspections per hour or day: counts, review rates, "
                                                            "score quantiles", responses=documented(StatsAnswer, 401, 403, 422))
    async def get_stats(name: str, bucket: Literal["hour", "day"] = Query("day"),
                        since: str | None = Query(None, description="Default: 48 hours ago (hour), 30 days ago "
                                                                    "(day). " + TIME_HELP),
                        until: str | None = Query(None, description=TIME_HELP), who: Identity = VIEWER) -> dict:
        store.path(name)
        start = time_or_none(since, "since") or utcnow() - STATS_SPAN[bucket]
        return await run(model_stats, name, bucket, start, time_or_none(until, "until"))

    def version_list(name: str) -> dict:
        store.path(name)
        if store.path(name).exists():
            station.versions.current(name, store.path(name))  # a bundle changed outside shows as a version
        with db.connect() as conn:
            found = versions.list_versions(conn, name)
        if not found:
            raise ServiceError(404, f"no model named {name!r} and no versions of one; GET /models lists them")
        return {"model": name, "versions": found}

    @app.get("/models/{name}/versions", tags=["models"], summary="A model's versions, newest first",
             responses=documented(VersionList, 401, 403, 404))
    async def get_versions(name: str, who: Identity = VIEWER) -> dict:
        return await run(version_list, name)

    def rollback(name: str, version: int, who: Identity) -> dict:
        path = store.path(name)
        with store.lock(name), station.model_lock(name):
            made = station.versions.restore(name, path, version, who.name)
            store.cache.drop(name)
            summary = store.summary(name)
        summary["version"] = made["version"]
        return summary

    @app.post("/models/{name}/rollback", tags=["models"], summary="Make an earlier version current again (as a new "
                                                                "version)", responses=documented(ModelSummary, 401, 403, 404, 409))
    async def rollback_model(name: str, body: RollbackBody, who: Identity = ADMIN) -> dict:
        return await run(rollback, name, body.version, who)

    def audit_page(action: str | None, actor: str | None, since: datetime | None, until: datetime | None,
                   cursor: int | None, limit: int) -> dict:
        with db.connect() as conn:
            entries, next_cursor = audit.list_audit(conn, action=action, actor=actor, since=since, until=until,
                                                    cursor=cursor, limit=limit)
        return {"audit": entries, "next": next_cursor}

    @app.get("/audit", tags=["station"], summary="Who changed what, and when (admin)",
             responses=documented(AuditList, 401, 403, 422))
    async def get_audit(action: str | None = Query(None, description="e.g. model.create, inspection.review"),
                        actor: str | None = Query(None, description="A key name."),
                        since: str | None = Query(None, description=TIME_HELP),
                        until: str | None = Query(None, description=TIME_HELP),
                        cursor: int | None = Query(None), limit: int = Query(100, ge=1, le=audit.MAX_PAGE),
                        who: Identity = ADMIN) -> dict:
        return await run(audit_page, action, actor, time_or_none(since, "since"), time_or_none(until, "until"),
                         cursor, limit)
