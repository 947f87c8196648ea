"""The body gate: a request body (any POST, PUT, PATCH) must arrive in full within ``timeout``
seconds, and only then does a heavy request (fit, add references, predict) take a place in the
admission queue.

Without it, clients trickling uploads (1 KB/s) held the queue's places while sending, and every
other client was answered 503 until they gave up. Now a slow body costs one of ``readers`` reading
places (several times the queue) and is answered 408 at its deadline; bodies are spooled to disk
past 1 MB, so reading many at once costs disk (bounded by --max-request-mb each), not memory.
"""

from __future__ import annotations

import tempfile
from typing import Any

import anyio

from .limits import BODY_METHODS, send_json

SPOOL_MEMORY = 1 << 20
CHUNK = 1 << 16


class GateCounts:
    """Bodies being read now and bodies timed out so far (on the event loop: no lock needed)."""

    def __init__(self, readers: int):
        self.readers = readers
        self.reading = 0
        self.timed_out = 0


class BodyGateMiddleware:
    """Read request bodies within ``timeout`` seconds, at most ``counts.readers`` at once."""

    def __init__(self, app: Any, timeout: float, counts: GateCounts):
        self.app = app
        self.timeout = timeout
        self.counts = counts

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            return await self.app(scope, receive, send)
        counts = self.counts
        if counts.reading >= counts.readers:
            return await send_json(send, 503, {"detail": f"server busy: {counts.reading} uploads arriving at once; "
                                                         "retry after 1 s"}, {"Retry-After": "1"})
        counts.reading += 1
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115 (closed in the finally below, after the replay)
        try:
            try:
                with anyio.fail_after(self.timeout):
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            return  # the client left, or the body limit cut it off (answered outside)
                        spool.write(message.get("body", b""))
                        if not message.get("more_body", False):
                            break
            except TimeoutError:
                counts.timed_out += 1
                return await send_json(send, 408, {
                    "detail": f"request body did not arrive within {self.timeout:g} s (the server's --body-timeout); "
                              "send it faster, or fewer or smaller files per request"}, {"Connection": "close"})
            finally:
                counts.reading -= 1
            spool.seek(0)
            await self.app(scope, self._replay(spool, receive), send)
        finally:
            spool.close()

    @staticmethod
    def _replay(spool: Any, receive: Any) -> Any:
        done = False

        async def replayed() -> dict:
            nonlocal done
            if done:
                return await receive()  # after the body: the client's disconnect, when it comes
            chunk = spool.read(CHUNK)
            more = bool(spool.read(1))
            if more:
                spool.seek(-1, 1)
            done = not more
            return {"type": "http.request", "body": chunk, "more_body": more}

        return replayed
