"""MQTT publishing (``vandal serve --mqtt mqtt://host:port``): each inspection as JSON on the topic
``vandal/<model>/inspections``, QoS 1.

paho-mqtt runs its network loop in its own thread and reconnects by itself (1 s, doubling up to
30 s); :meth:`MqttPublisher.offer` only hands a message to paho's queue (bounded; the oldest wait,
the newest are dropped and counted beyond it), so a broker that is down or slow never blocks a
prediction. Messages queued while disconnected are sent after the reconnection.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

log = logging.getLogger("vandal.serve.mqtt")
TOPIC = "vandal/{model}/inspections"
DEFAULT_PORT = 1883


def parse_mqtt_url(url: str) -> dict[str, Any]:
    """``mqtt://[user[:password]@]host[:port]`` -> ``{"host", "port", "username", "password"}``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ValueError(f"--mqtt {url!r}: not a URL ({error}); use mqtt://host:port") from error
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"--mqtt {url!r}: use mqtt://[user:password@]host[:port] (TLS brokers are not supported)")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"--mqtt {url!r}: no path or query; topics are vandal/<model>/inspections")
    return {"host": parts.hostname, "port": port or DEFAULT_PORT,
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None}


def topic_of(model: str) -> str:
    # Model names are [A-Za-z0-9_.-]: never the wildcards + and #, nor a level separator.
    return TOPIC.format(model=model)


class MqttPublisher:
    """Publishes inspections to the broker at ``url``; at most ``capacity`` messages wait in paho."""

    def __init__(self, url: str, capacity: int = 10000, client_id: str | None = None):
        try:
            import paho.mqtt.client as mqtt
        except ImportError as error:
            raise ImportError("--mqtt needs paho-mqtt: install the serve extra, pip install 'vandal[serve]'") \
                from error
        self.address = parse_mqtt_url(url)
        self.url = url
        self.published = 0
        self.dropped = 0
        self.connected = threading.Event()
        self._count = threading.Lock()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=client_id or f"vandal-{uuid.uuid4().hex[:12]}")
        self._client.max_queued_messages_set(capacity)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        if self.address["username"]:
            self._client.username_pw_set(self.address["username"], self.address["password"])
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker %s:%s refused the connection: %s", self.address["host"], self.address["port"],
                        reason)
            return
        self.connected.set()
        log.info("MQTT connected to %s:%s", self.address["host"], self.address["port"])

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connected.clear()
        log.warning("MQTT disconnected from %s:%s (%s); reconnecting", self.address["host"], self.address["port"],
                    reason)

    def start(self) -> None:
        """Connect in the background (the first attempt too: a broker that is down never delays start-up)."""
        self._client.connect_async(self.address["host"], self.address["port"], keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def offer(self, event: dict[str, Any]) -> None:
        """Queue one inspection for its model's topic (never waits for the broker)."""
        import paho.mqtt.client as mqtt

        payload = json.dumps(event, separators=(",", ":"))
        try:
            info = self._client.publish(topic_of(event["model"]), payload, qos=1)
            ok = info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)  # NO_CONN: queued for the reconnection
        except (ValueError, RuntimeError, OSError) as error:
            log.warning("MQTT publish failed: %s", error)
            ok = False
        with self._count:
            if ok:
                self.published += 1
            else:
                self.dropped += 1

    def state(self) -> dict[str, Any]:
        with self._count:
            return {"broker": f"{self.address['host']}:{self.address['port']}", "connected": self.connected.is_set(),
                    "published": self.published, "dropped": self.dropped}
