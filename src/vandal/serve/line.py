"""Line integration: where inspections go besides the HTTP answer (webhooks, MQTT) and where they
come from besides HTTP (watched folders).

:class:`LineIntegration` owns the background parts and starts/stops them with the app. Every
inspection the station records, from a request or a watched folder, becomes one event
``{"event": "inspection", "id", "time", "model", "version", "file", "sha256", "pred_score",
"pred_label", "source", ...}`` (the inspection's API object, as ``GET /inspections/{id}`` gives it),
offered to each output without waiting for any of them.
"""

from __future__ import annotations

import logging
from typing import Any

from ..data.images import UnreadableImageError, decode_bytes
from .db.keys import Identity
from .db.watched import WatchedFiles
from .errors import ServiceError
from .mqtt import MqttPublisher
from .scoring import score_and_record
from .settings import ServeSettings
from .station import Station
from .store import SERVICE_DIR, ModelStore, check_name
from .uploads import Upload
from .watch import FolderWatcher, Retry
from .webhook_delivery import WebhookSender
from .webhooks import WebhookRegistry

log = logging.getLogger("vandal.serve")
RETRIED = frozenset({404, 503})  # the model not there yet, or busy: a watched file waits for the next poll
WATCHER = Identity("watch", "inspector")  # who the records of watched files name (their source is "watch")


class LineIntegration:
    """Webhooks (always), MQTT (with ``settings.mqtt``) and watched folders (``settings.watch``)
    around the models of ``store``, hearing of each inspection ``station`` records."""

    def __init__(self, settings: ServeSettings, store: ModelStore, station: Station):
        self.store, self.station = store, station
        self.max_pixels = settings.max_pixels
        self.webhooks = WebhookRegistry(store.root / SERVICE_DIR)
        self.sender = WebhookSender(self.webhooks, attempts=settings.webhook_attempts,
                                    backoff=settings.webhook_backoff, timeout=settings.webhook_timeout)
        self.mqtt = MqttPublisher(settings.mqtt) if settings.mqtt else None
        seen = WatchedFiles(station.db)
        self.watchers = [FolderWatcher(check_name(name), folder, self.score_file, seen, settings.watch_interval)
                         for name, folder in settings.watch]
        station.on_recorded.append(self.publish)
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

    def publish(self, record: dict[str, Any]) -> None:
        """Offer a new inspection to the outputs (never blocks: each output queues or drops)."""
        event = {"event": "inspection", **record}
        try:
            self.sender.offer(event)
        except ServiceError as error:  # a damaged webhooks file: the inspection still stands
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
            results = score_and_record(self.store, self.station, model, [(Upload(file, data), image)], (), None, None,
                                       WATCHER, source="watch")
        except ServiceError as error:
            if error.status in RETRIED:
                raise Retry(error.detail) from error
            return f"not scored: {error.detail}"
        return f"inspection {results[0]['inspection_id']}"

    def state(self) -> dict[str, Any]:
        return {"webhook_deliveries_queued": self.sender.queued,
                "mqtt": None if self.mqtt is None else self.mqtt.state(),
                "watch": [watcher.state() for watcher in self.watchers]}
