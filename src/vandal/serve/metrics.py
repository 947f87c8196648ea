"""Prometheus metrics in the text exposition format (no client library): requests and errors by
endpoint, latency histograms, images scored, and the queue and cache gauges.

Endpoints are route templates (``/models/{name}/predict``), never raw paths, so the number of
series stays fixed whatever names clients send.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels] + ([extra] if extra else [])
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    """Counters and histograms, safe to update from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[Labels] = Counter()
        self.errors: Counter[Labels] = Counter()
        self.latency: dict[str, list[float]] = {}  # endpoint -> bucket counts + [sum, count]
        self.images_scored = 0
        self.gauges: dict[str, tuple[str, str, Callable[[], float]]] = {}

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        # Label values come from a fixed set (route templates, known methods, status codes): clients
        # sending made-up methods or paths cannot grow the series.
        method = method if method in METHODS else "other"
        status = status if 100 <= status <= 599 else 0
        with self._lock:
            self.requests[(("endpoint", endpoint), ("method", method), ("status", str(status)))] += 1
            if status >= 400:
                self.errors[(("endpoint", endpoint), ("method", method))] += 1
            counts = self.latency.setdefault(endpoint, [0.0] * (len(BUCKETS) + 2))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-2] += seconds
            counts[-1] += 1

    def add_images(self, count: int) -> None:
        with self._lock:
            self.images_scored += count

    def gauge(self, name: str, help_text: str, value: Callable[[], float], kind: str = "gauge") -> None:
        """A value read when the metrics are rendered (queue depth, cached models); ``kind``: its
        Prometheus type, ``counter`` for a count kept elsewhere."""
        self.gauges[name] = (help_text, kind, value)

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP vandal_requests_total Requests answered, by endpoint, method and status.",
                     "# TYPE vandal_requests_total counter"]
            lines += [f"vandal_requests_total{_labels(k)} {v}" for k, v in sorted(self.requests.items())]
            lines += ["# HELP vandal_request_errors_total Requests answered with a 4xx or 5xx status.",
                      "# TYPE vandal_request_errors_total counter"]
            lines += [f"vandal_request_errors_total{_labels(k)} {v}" for k, v in sorted(self.errors.items())]
            lines += ["# HELP vandal_request_duration_seconds Time from request to the end of the answer.",
                      "# TYPE vandal_request_duration_seconds histogram"]
            for endpoint, counts in sorted(self.latency.items()):
                labels = (("endpoint", endpoint),)
                bounds = [*(str(b) for b in BUCKETS), "+Inf"]
                for bound, count in zip(bounds, [*counts[:len(BUCKETS)], counts[-1]]):
                    le = 'le="' + bound + '"'
                    lines.append(f"vandal_request_duration_seconds_bucket{_labels(labels, le)} {_number(count)}")
                lines.append(f"vandal_request_duration_seconds_sum{_labels(labels)} {counts[-2]:.6f}")
                lines.append(f"vandal_request_duration_seconds_count{_labels(labels)} {_number(counts[-1])}")
            lines += ["# HELP vandal_images_scored_total Images scored by predict requests.",
                      "# TYPE vandal_images_scored_total counter", f"vandal_images_scored_total {self.images_scored}"]
        for name, (help_text, kind, value) in sorted(self.gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {_number(value())}"]
        return "\n".join(lines) + "\n"


def route_template(app: Any, scope: dict) -> str:
    """The route a request matched (its template), ``"unmatched"`` when none did."""
    route = scope.get("route")
    if route is None:  # answered before routing (queue full, body too large): match it here
        from starlette.routing import Match

        route = next((r for r in getattr(app, "routes", []) if getattr(r, "path", None)
                      and r.matches(scope)[0] == Match.FULL), None)
    return getattr(route, "path", None) or "unmatched"


class MetricsMiddleware:
    """Times every HTTP request and counts it by route template, method and status."""

    def __init__(self, app: Any, metrics: Metrics, router_app: Any):
        self.app = app
        self.metrics = metrics
        self.router_app = router_app  # the FastAPI app, whose routes name the endpoints

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def watched_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            self.metrics.observe(route_template(self.router_app, scope), scope["method"], status,
                                 time.perf_counter() - start)
