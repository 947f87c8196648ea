"""How the service fails: one exception carrying the HTTP status and a message naming the file or
field, answered as ``{"detail": "..."}`` (validation errors too, flattened to one line)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger("vandal.serve")


class ServiceError(Exception):
    """An error answered with ``status`` and ``{"detail": detail}`` (and ``headers``, e.g. Retry-After)."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


_WHERE = {"query": "query parameter", "path": "path parameter", "body": "field", "header": "header",
          "cookie": "cookie"}


def validation_detail(errors: Sequence[Mapping[str, Any]]) -> str:
    """FastAPI's list of validation errors -> one line naming each field: ``field 'files': Field required``."""
    parts = []
    for error in errors:
        loc = [str(x) for x in error.get("loc", ())]
        where = _WHERE.get(loc[0], loc[0]) if loc else "request"
        name = ".".join(loc[1:]) or "body"
        parts.append(f"{where} {name!r}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_handlers(app: Any) -> None:
    """Every error the app raises -> JSON ``{"detail": "..."}``."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @app.exception_handler(ServiceError)
    async def service_error(request: Any, error: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Any, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_detail(error.errors())}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Any, error: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(error.detail)}, status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    from sqlalchemy.exc import OperationalError

    @app.exception_handler(OperationalError)
    async def database_down(request: Any, error: OperationalError) -> JSONResponse:
        # The database server is away (restarting, unreachable): nothing was recorded; the client may retry.
        log.error("database unavailable on %s %s: %s", request.method, request.url.path, error.orig)
        return JSONResponse({"detail": "the station database is unavailable (nothing was recorded); retry shortly, "
                                       "and see the server log"}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def crash(request: Any, error: Exception) -> JSONResponse:
        # A bug, not the client's fault: logged with its traceback, answered without internals.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(error).__name__}); see the server log"},
                            status_code=500)
