"""The shapes of the service's answers, for the OpenAPI document (/openapi.json, shown at /docs).

Handlers return plain dicts; these models document them (``responses=``) without filtering them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorAnswer(BaseModel):
    detail: str = Field(description="What went wrong, naming the file or field, and the fix.")


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    version: str


class ModelSummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    backbone: str | None = Field(None, description="Backbone the model was fitted with.")
    references: int | None = Field(None, description="Normal images in the model's memory.")
    image_threshold: float | None = Field(None, description="Decision level on pred_score (0.5 unless set).")
    pixel_threshold: float | None = Field(None, description="Mask level on the calibrated map (0.5 unless set).")
    error: str | None = Field(None, description="Present only when the bundle cannot be read.")
    version: int | None = Field(None, description="The current version (GET /models/{name}/versions).")


class ModelList(BaseModel):
    models: list[ModelSummary]


class Result(BaseModel):
    file: str = Field(description="The uploaded file's name.")
    inspection_id: int = Field(description="The inspection record of this image (GET /inspections/{id}).")
    pred_score: float = Field(description="Calibrated image score; above image_threshold means anomalous.")
    pred_label: bool = Field(description="True when the image is judged anomalous.")
    mask_png: str | None = Field(None, description="base64 PNG, 0/255, the image's original size.")
    overlay_png: str | None = Field(None, description="base64 PNG: heat map over the image, mask outlined.")
    anomaly_map_png: str | None = Field(None, description="base64 8-bit PNG of the calibrated map: 0 -> 0, "
                                                          "2 x pixel_threshold -> 255 (the overlays' scale).")


class FileError(BaseModel):
    file: str
    detail: str


class PredictAnswer(BaseModel):
    results: list[Result] = Field(description="One per readable file, in upload order.")
    errors: list[FileError] | None = Field(None, description="Unreadable files (with ?skip_unreadable=true only).")


class Inspection(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    time: str = Field(description="UTC, ISO 8601.")
    model: str
    version: int | None = Field(description="The model version that scored it.")
    file: str
    sha256: str = Field(description="Of the uploaded bytes.")
    size: int = Field(description="Bytes uploaded.")
    pred_score: float
    pred_label: bool
    verdict: Literal["good", "defect"] | None = Field(description="The latest review's verdict; null: not reviewed.")
    image_threshold: float = Field(description="The decision level used.")
    pixel_threshold: float = Field(description="The mask level used.")
    key: str | None = Field(description="The name of the key that asked (null: an open station).")
    overlay: bool = Field(description="Whether the overlay is kept (GET /inspections/{id}/overlay).")


class InspectionList(BaseModel):
    inspections: list[Inspection] = Field(description="Newest first.")
    next: int | None = Field(description="Pass as ?cursor= for the next page; null on the last.")


class ReviewBody(BaseModel):
    verdict: Literal["good", "defect"]
    note: str | None = Field(None, max_length=2000)


class ReviewAnswer(BaseModel):
    id: int
    inspection_id: int
    time: str
    verdict: Literal["good", "defect"]
    note: str | None
    key: str | None


class InspectionOne(Inspection):
    reviews: list[ReviewAnswer] = Field(description="All reviews, oldest first.")


class RollbackBody(BaseModel):
    version: int = Field(ge=1, description="The version to make current again.")


class Version(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: int
    time: str
    action: str = Field(description="create, overwrite, references, rollback, or found (changed outside the service).")
    references: int | None
    by: str | None = Field(description="The key name that made it.")


class VersionList(BaseModel):
    model: str
    versions: list[Version] = Field(description="Newest first.")


class Bucket(BaseModel):
    model_config = ConfigDict(extra="allow")

    scored: int
    flagged: int
    reviewed: int
    false_alarm_rate: float | None = Field(description="Of flagged inspections reviewed, the share reviewed good.")
    miss_rate: float | None = Field(description="Of passed inspections reviewed, the share reviewed defect.")
    score_quantiles: dict[str, float | None]


class Histogram(BaseModel):
    edges: list[float] = Field(description="Bin edges of pred_score: 0 to max(1, the 99th percentile).")
    counts: list[int] = Field(description="Inspections per bin (higher scores counted in the last).")


class StatsAnswer(BaseModel):
    model: str
    bucket: Literal["hour", "day"]
    total: Bucket
    histogram: Histogram
    buckets: list[Bucket] = Field(description="Oldest first, each with its `start` (UTC).")


class AuditList(BaseModel):
    audit: list[dict] = Field(description="Newest first: id, time, actor, action, target, detail.")
    next: int | None


class WhoAmI(BaseModel):
    name: str | None = Field(description="The key's name (null: an open station, no key needed).")
    role: Literal["viewer", "inspector", "admin"]
    keys_required: bool


def documented(model: type[BaseModel], *errors: int, status: int = 200) -> dict:
    """``responses=`` for a route: its answer's model (at ``status``) and the error statuses it may give."""
    out: dict = {status: {"model": model}}
    out.update({status: {"model": ErrorAnswer} for status in errors})
    return out


class Deliveries(BaseModel):
    delivered: int = Field(description="Deliveries the receiver answered 2xx (this server process).")
    failed: int = Field(description="Deliveries given up: every attempt failed, or a 4xx answer.")
    retried: int = Field(description="Attempts that failed and were tried again later.")
    dropped: int = Field(description="Events not queued because the delivery queue was full.")
    pending: int = Field(description="Deliveries queued or waiting for a retry.")
    last_status: int | None = Field(None, description="HTTP status of the last attempt (null: no answer).")
    last_error: str | None = Field(None, description="Why the last attempt failed (null: it succeeded).")
    last_attempt: str | None = Field(None, description="UTC time of the last attempt.")
    last_delivered: str | None = Field(None, description="UTC time of the last successful delivery.")


class Webhook(BaseModel):
    id: str
    model: str
    url: str
    only_flagged: bool
    created: str


class WebhookCreated(Webhook):
    secret: str = Field(description="Shown only now: the key of each delivery's X-Vandal-Signature header, "
                                    "sha256=<hex HMAC-SHA256 of the body>.")


class WebhookState(Webhook):
    deliveries: Deliveries


class WebhookList(BaseModel):
    webhooks: list[WebhookState]


class LineState(BaseModel):
    webhook_deliveries_queued: int
    mqtt: dict | None = Field(None, description="broker, connected, published, dropped (null without --mqtt).")
    watch: list[dict] = Field(description="Per watched folder: model, folder, scored, failed, running.")
