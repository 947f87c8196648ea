"""The shapes of the service's answers, for the OpenAPI document (/openapi.json, shown at /docs).

Handlers return plain dicts; these models document them (``responses=``) without filtering them.
"""

from __future__ import annotations

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


class ModelList(BaseModel):
    models: list[ModelSummary]


class Result(BaseModel):
    file: str = Field(description="The uploaded file's name.")
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
