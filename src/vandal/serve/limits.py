"""The request-body limit, enforced before a body is read (ASGI middleware).

Uploads are spooled to disk by the form parser, so a body costs disk rather than memory; this cap
bounds the disk too. A declared ``Content-Length`` over the limit is answered 413 at once; a body
streamed without one is cut off at the limit.
"""

from __future__ import annotations

import json
from typing import Any

from .settings import MB

BODY_METHODS = ("POST", "PUT", "PATCH")


async def send_json(send: Any, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class BodyLimitMiddleware:
    """Refuse request bodies above ``max_bytes`` with 413 ``{"detail": ...}``."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self, size: str) -> dict:
        return {"detail": f"request body {size} is above the limit of {self.max_bytes / MB:g} MB (the server's "
                          "--max-request-mb); send fewer or smaller files per request"}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await send_json(send, 413, self._detail(f"of {int(declared) / MB:.1f} MB"))
        seen, cut, started = 0, False, False

        async def limited_receive() -> dict:
            nonlocal seen, cut
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    cut = True
                    return {"type": "http.disconnect"}  # the parser stops reading; answered below
            return message

        async def watched_send(message: dict) -> None:
            nonlocal started
            if cut and not started:
                return  # the app's own answer to the cut-off body is replaced by the 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except Exception:
            if not cut:
                raise
        if cut and not started:
            await send_json(send, 413, self._detail("(streamed)"))
