"""Line integration: where inspections go besides the HTTP answer (webhooks, MQTT) and where they
come from besides HTTP (watched folders).

:class:`LineIntegration` owns the background parts and starts/stops them with the app. Every
inspection, from a request or a watched folder, becomes one event
``{"event": "inspection", "model", "source", "time", "file", "pred_score", "pred_label", ...}``
(the result's fields without its PNGs), offered to each output without waiting for any of them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from ..data.images import UnreadableImageError, decode_bytes
from .encode import PNG_FIELDS, results_json
from .errors import ServiceError
from .mqtt import MqttPublisher
from .settings import ServeSettings
from .store import SERVICE_DIR, ModelStore, check_name
from .watch import FolderWatcher, Retry, SeenFiles, SeenLog
from .webhook_delivery import WebhookSender
from .webhooks import WebhookRegistry

log = logging.getLogger("vandal.serve")
RETRIED = frozenset({404, 503})  # the model not there yet, or busy: a watched file waits for the next poll


def inspection_event(model: str, result: dict[str, Any], source: str) -> dict[str, Any]:
    """One result of ``/predict`` (or of a watched file) -> the event the outputs send."""
    event: dict[str, Any] = {"event": "inspection", "model": model, "source": source,
                             "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
    event.update((key, value) for key, value in result.items() if key not in PNG_FIELDS)
    return event


class LineIntegration:
    """Webhooks (always), MQTT (with ``settings.mqtt``) and watched folders (``settings.watch``)
    around the models of ``store``; ``seen`` keeps what the watched folders took (default: a file
    in the models folder's ``.vandal-serve``)."""

    def __init__(self, settings: ServeSettings, store: ModelStore, seen: SeenFiles | None = None):
        self.store = store
        self.max_pixels = settings.max_pixels
        self.webhooks = WebhookRegistry(store.root / SERVICE_DIR)
        self.sender = WebhookSender(self.webhooks, attempts=settings.webhook_attempts,
                                    backoff=settings.webhook_backoff, timeout=settings.webhook_timeout)
        self.mqtt = MqttPublisher(settings.mqtt) if settings.mqtt else None
        seen = seen if seen is not None else SeenLog(store.root / SERVICE_DIR / "watched.tsv")
        self.watchers = [FolderWatcher(check_name(name), folder, self.score_file, seen, settings.watch_interval)
                         for name, folder in settings.watch]
        self._started = False

    def start(self) -> None:
        for watcher in self.watchers:  # a missing folder fails start-up, before anything runs
            if not watcher.folder.is_dir():
                raise FileNotFoundError(f"--watch {watcher.model}={watcher.folder}: no such folder; create it first")
        self.sender.start()
        if self.mqtt is not None:
            self.mqtt.start()
        for watcher in self.watchers:
            watcher.start()
        self._started = True

    def stop(self) -> None:
        if not self._started:
            return
        for watcher in self.watchers:
            watcher.stop()
        if self.mqtt is not None:
            self.mqtt.stop()
        self.sender.stop()
        self._started = False

    def publish(self, model: str, results: Iterable[dict[str, Any]], source: str = "api") -> None:
        """Offer each result to the outputs (never blocks: each output queues or drops)."""
        for result in results:
            event = inspection_event(model, result, source)
            try:
                self.sender.offer(event)
            except ServiceError as error:  # a damaged webhooks file: the prediction still stands
                log.error("webhooks not delivered: %s", error.detail)
            if self.mqtt is not None:
                self.mqtt.offer(event)

    def score_file(self, model: str, file: str, data: bytes) -> str:
        """Score one watched file (the watcher's thread) -> its outcome; :class:`Retry` when it should wait."""
        try:
            image = decode_bytes(data, file, self.max_pixels)
        except UnreadableImageError as error:
            return f"unreadable: {error}"
        try:
            predictions, level = self.store.predict(model, [image])
        except ServiceError as error:
            if error.status in RETRIED:
                raise Retry(error.detail) from error
            return f"not scored: {error.detail}"
        results = results_json([(file, image)], predictions, level, ())
        self.publish(model, results, source="watch")
        return f"inspection {results[0]['pred_score']:.4f}"

    def state(self) -> dict[str, Any]:
        return {"webhook_deliveries_queued": self.sender.queued,
                "mqtt": None if self.mqtt is None else self.mqtt.state(),
                "watch": [watcher.state() for watcher in self.watchers]}
