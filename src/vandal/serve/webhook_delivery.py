"""Webhook deliveries: POSTed by background threads from a bounded queue, retried with exponential
backoff, each attempt's outcome kept per hook for ``GET /models/{name}/webhooks``.

:meth:`WebhookSender.offer` only appends to the queue (or drops when it is full, counting the drop),
so a slow or dead receiver never slows a prediction. A delivery is retried after a network error,
408, 429 or 5xx, waiting ``backoff x 2^(attempt-1)`` seconds (capped) between attempts; other
answers (4xx, redirects: never followed) fail at once. Deliveries still queued when the server stops
are lost: a receiver that must see every inspection reads ``GET /inspections`` too.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .. import __version__
from .webhooks import WebhookRegistry, sign

log = logging.getLogger("vandal.serve.webhooks")
RETRIED_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))


@dataclass
class Delivery:
    """One event on its way to one hook."""

    hook: dict[str, Any]
    body: bytes
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    attempt: int = 0


@dataclass
class HookStatus:
    """How deliveries to one hook went, in this process."""

    delivered: int = 0
    failed: int = 0
    retried: int = 0
    dropped: int = 0
    pending: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_attempt: str | None = None
    last_delivered: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer like any other: a receiver's URL is given exactly."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class WebhookSender:
    """Delivers events to the hooks of ``registry``: at most ``capacity`` deliveries queued,
    ``attempts`` tries each, ``workers`` threads posting with a ``timeout`` in seconds."""

    def __init__(self, registry: WebhookRegistry, capacity: int = 1000, attempts: int = 5, backoff: float = 1.0,
                 max_backoff: float = 60.0, timeout: float = 5.0, workers: int = 2):
        if capacity < 1 or attempts < 1 or workers < 1 or backoff < 0 or timeout <= 0:
            raise ValueError("webhook delivery needs capacity, attempts and workers >= 1, backoff >= 0, timeout > 0")
        self.registry = registry
        self.capacity, self.attempts, self.backoff, self.max_backoff = capacity, attempts, backoff, max_backoff
        self.timeout, self.workers = timeout, workers
        self._queue: list[tuple[float, int, Delivery]] = []  # (due time, order, delivery): a heap
        self._order = itertools.count()
        self._status: dict[str, HookStatus] = {}
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._opener = urllib.request.build_opener(NoRedirects)

    # ------------------------------------------------------------------ from the service
    def offer(self, event: dict[str, Any]) -> None:
        """Queue ``event`` (an inspection, with ``model`` and ``pred_label``) for the model's hooks."""
        hooks = [hook for hook in self.registry.of(event["model"])
                 if event.get("pred_label") or not hook.get("only_flagged")]
        if not hooks:
            return
        body = json.dumps(event, separators=(",", ":")).encode()
        with self._ready:
            for hook in hooks:
                status = self._status.setdefault(hook["id"], HookStatus())
                if len(self._queue) >= self.capacity:
                    status.dropped += 1
                    continue
                status.pending += 1
                heapq.heappush(self._queue, (time.monotonic(), next(self._order), Delivery(hook, body)))
            self._ready.notify(len(hooks))

    def status(self, hook_id: str) -> dict[str, Any]:
        """Counts and the last attempt's outcome of one hook (zeros before its first event)."""
        with self._ready:
            return self._status.get(hook_id, HookStatus()).as_dict()

    @property
    def queued(self) -> int:
        with self._ready:
            return len(self._queue)

    def start(self) -> None:
        with self._ready:
            self._stopping = False
        self._threads = [threading.Thread(target=self._work, name=f"vandal-webhooks-{i}", daemon=True)
                         for i in range(self.workers)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    # ------------------------------------------------------------------ the delivering threads
    def _next(self) -> Delivery | None:
        """The next delivery that is due (waiting for it), or None when stopping."""
        with self._ready:
            while not self._stopping:
                if self._queue:
                    wait = self._queue[0][0] - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._queue)[2]
                    self._ready.wait(wait)
                else:
                    self._ready.wait()
            return None

    def _work(self) -> None:
        while (delivery := self._next()) is not None:
            try:
                self._attempt(delivery)
            except Exception:  # a bug here must not end the thread and silently stop deliveries
                log.exception("webhook delivery %s failed unexpectedly", delivery.id)

    def _post(self, delivery: Delivery) -> tuple[int | None, str | None]:
        """One POST -> (HTTP status or None, error text or None)."""
        hook = delivery.hook
        request = urllib.request.Request(hook["url"], data=delivery.body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": f"vandal/{__version__}",
            "X-Vandal-Event": "inspection", "X-Vandal-Delivery": delivery.id,
            "X-Vandal-Attempt": str(delivery.attempt), "X-Vandal-Signature": sign(hook["secret"], delivery.body)})
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                answer.read(1 << 16)
                return answer.status, None
        except urllib.error.HTTPError as error:
            return error.code, f"HTTP {error.code} {error.reason}"
        except (OSError, ValueError) as error:  # refused, timed out, DNS, TLS
            reason = getattr(error, "reason", None) or error
            return None, f"{type(error).__name__}: {reason}"[:300]

    def _attempt(self, delivery: Delivery) -> None:
        hook_id = delivery.hook["id"]
        if not any(h["id"] == hook_id for h in self.registry.of(delivery.hook["model"])):
            with self._ready:  # deleted since the event: nobody to deliver to
                self._status.pop(hook_id, None)
            return
        delivery.attempt += 1
        code, error = self._post(delivery)
        ok = code is not None and 200 <= code < 300
        again = not ok and delivery.attempt < self.attempts and (code is None or code in RETRIED_STATUSES)
        with self._ready:
            status = self._status.setdefault(hook_id, HookStatus())
            status.last_status, status.last_error, status.last_attempt = code, error, now_text()
            if again:
                status.retried += 1
                wait = min(self.max_backoff, self.backoff * 2 ** (delivery.attempt - 1))
                heapq.heappush(self._queue, (time.monotonic() + wait, next(self._order), delivery))
                self._ready.notify()
                return
            status.pending -= 1
            if ok:
                status.delivered += 1
                status.last_delivered = status.last_attempt
            else:
                status.failed += 1
        if not ok:
            log.warning("webhook %s: delivery %s to %s failed after %d attempt(s): %s", hook_id, delivery.id,
                        delivery.hook["url"], delivery.attempt, error)
