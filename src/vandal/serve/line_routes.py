"""The line-integration endpoints: a model's webhooks (add, list with how deliveries went, delete;
admin only: their URLs name the plant's systems, and adding one is audited) and ``GET /line``, the
state of MQTT publishing and the watched folders (viewer)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Body, FastAPI, Response
from fastapi import Path as PathParam

from .auth import ADMIN, VIEWER
from .db.keys import Identity
from .line import LineIntegration
from .schemas import LineState, WebhookCreated, WebhookList, documented
from .store import ModelStore
from .webhooks import public

Run = Callable[..., Awaitable[Any]]
NAME_HELP = "Model name: 1-64 of A-Z a-z 0-9 _ . - (not starting with a dot)."


def add_line_routes(app: FastAPI, store: ModelStore, line: LineIntegration, run: Run) -> None:
    @app.post("/models/{name}/webhooks", tags=["line"], status_code=201, summary="Add a webhook to a model",
              responses=documented(WebhookCreated, 401, 403, 404, 409, 422, status=201))
    async def add_webhook(
        name: str = PathParam(..., description=NAME_HELP),
        url: str = Body(..., embed=True, description="The receiver: an http:// or https:// URL. Each of the "
                                                     "model's inspections is POSTed to it as JSON."),
        only_flagged: bool = Body(False, embed=True, description="Send only inspections judged anomalous."),
        who: Identity = ADMIN,
    ) -> dict:
        store.require(name)
        hook = await run(line.webhooks.add, name, url, only_flagged)
        await run(line.station.audit, who, "webhook.add", name, {"id": hook["id"], "url": url,
                                                                 "only_flagged": only_flagged})
        return hook

    @app.get("/models/{name}/webhooks", tags=["line"], summary="A model's webhooks and how deliveries went",
             responses=documented(WebhookList, 401, 403, 404, 422))
    async def list_webhooks(name: str = PathParam(..., description=NAME_HELP), who: Identity = ADMIN) -> dict:
        store.require(name)
        hooks = await run(line.webhooks.of, name)
        return {"webhooks": [{**public(hook), "deliveries": line.sender.status(hook["id"])} for hook in hooks]}

    @app.delete("/models/{name}/webhooks/{hook_id}", tags=["line"], status_code=204, summary="Delete a webhook",
                responses={401: {}, 403: {}, 404: {}, 422: {}})
    async def delete_webhook(name: str = PathParam(..., description=NAME_HELP),
                             hook_id: str = PathParam(..., description="The id given at creation."),
                             who: Identity = ADMIN) -> Response:
        store.path(name)
        await run(line.webhooks.remove, name, hook_id)
        await run(line.station.audit, who, "webhook.delete", name, {"id": hook_id})
        return Response(status_code=204)

    @app.get("/line", tags=["line"], summary="MQTT publishing, watched folders and queued webhook deliveries",
             responses=documented(LineState, 401, 403))
    async def line_state(who: Identity = VIEWER) -> dict:
        return line.state()
