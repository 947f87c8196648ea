"""A bounded queue for heavy requests (fit, add references, predict): admitted or answered 503.

Requests are counted once their body has arrived (the body gate, ``gate.py``, reads it within a
deadline first), so a burst of clients cannot pile up decoded images and maps in memory, and slow
senders cannot hold the places: beyond ``capacity`` requests in progress the answer is 503 with
``Retry-After`` (seconds, from the recent duration of heavy requests), and the server keeps
answering everything else (/health, /metrics, the page).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from .limits import send_json

HEAVY = re.compile(r"^/models/[^/]+(/references|/predict)?/?$")


def is_heavy(scope: dict) -> bool:
    return scope["type"] == "http" and scope["method"] == "POST" and bool(HEAVY.match(scope.get("path", "")))


class Admission:
    """Counts heavy requests in progress (on the event loop: no lock needed)."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"queue capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.active = 0
        self.rejected = 0
        self._mean_seconds = 1.0

    def enter(self) -> bool:
        if self.active >= self.capacity:
            self.rejected += 1
            return False
        self.active += 1
        return True

    def leave(self, seconds: float) -> None:
        self.active -= 1
        self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds  # recent requests weigh most

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: about one request's duration, 1 to 60."""
        return int(min(60, max(1, math.ceil(self._mean_seconds))))


class AdmissionMiddleware:
    """Answer 503 + Retry-After to heavy requests beyond the capacity."""

    def __init__(self, app: Any, admission: Admission):
        self.app = app
        self.admission = admission

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if not is_heavy(scope):
            return await self.app(scope, receive, send)
        admission = self.admission
        if not admission.enter():
            wait = admission.retry_after()
            detail = (f"server busy: {admission.active} requests in progress, the queue holds {admission.capacity} "
                      f"(--queue-size); retry after {wait} s")
            return await send_json(send, 503, {"detail": detail}, {"Retry-After": str(wait)})
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            admission.leave(time.perf_counter() - start)
