"""API keys over HTTP (admin): list, make (the key is in the answer once), revoke. The same rows as
``vandal keys``; every change is audited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from fastapi import FastAPI, Response
from pydantic import BaseModel, Field

from .auth import ADMIN
from .db import audit, keys
from .db.keys import Identity
from .errors import ServiceError
from .schemas import documented
from .station import Station

Run = Callable[..., Awaitable[Any]]


class KeyBody(BaseModel):
    name: str = Field(description="1-64 of A-Z a-z 0-9 _ . @ -")
    role: Literal["viewer", "inspector", "admin"]


class KeyEntry(BaseModel):
    name: str
    role: str
    prefix: str = Field(description="The key's public part (vandal_<prefix>_...).")
    created: str
    revoked: str | None


class KeyList(BaseModel):
    keys: list[KeyEntry]


class NewKey(KeyEntry):
    key: str = Field(description="The key itself: shown this once, stored only hashed.")


def add_key_routes(app: FastAPI, station: Station, run: Run) -> None:
    db = station.db

    def listing() -> dict:
        with db.connect() as conn:
            return {"keys": keys.list_keys(conn)}

    def make(body: KeyBody, who: Identity) -> dict:
        with db.begin() as conn:
            try:
                entry, key = keys.add_key(conn, body.name, body.role)
            except ValueError as error:
                raise ServiceError(409 if "exists" in str(error) else 422, str(error)) from error
            audit.record(conn, who.name, "key.add", body.name, {"role": body.role})
        return {**entry, "key": key}

    def revoke(name: str, who: Identity) -> None:
        with db.begin() as conn:
            if not keys.revoke_key(conn, name):
                raise ServiceError(404, f"no active key named {name!r}; GET /keys lists them")
            audit.record(conn, who.name, "key.revoke", name, None)

    @app.get("/keys", tags=["station"], summary="The API keys (never the keys themselves)",
             responses=documented(KeyList, 401, 403))
    async def list_keys(who: Identity = ADMIN) -> dict:
        return await run(listing)

    @app.post("/keys", tags=["station"], status_code=201, summary="Make an API key (shown once, in this answer)",
              responses=documented(NewKey, 401, 403, 409, 422, status=201))
    async def add_key(body: KeyBody, who: Identity = ADMIN) -> dict:
        return await run(make, body, who)

    @app.delete("/keys/{name}", tags=["station"], status_code=204, summary="Revoke an API key",
                responses={401: {}, 403: {}, 404: {}})
    async def revoke_key(name: str, who: Identity = ADMIN) -> Response:
        await run(revoke, name, who)
        return Response(status_code=204)
