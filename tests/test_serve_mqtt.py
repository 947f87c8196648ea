"""MQTT publishing against a real broker (Debian's mosquitto, started by the test on loopback) and a
paho subscriber: each inspection on vandal/<model>/inspections, and publishing survives the broker
going away and coming back (messages queued meanwhile are sent after the reconnection)."""

from __future__ import annotations

import getpass
import json
import socket
import subprocess
import threading

import pytest

from vandal.detector import Detector
from vandal.serve.mqtt import parse_mqtt_url, topic_of

from serve_helpers import free_port, required_program, running_server, score_texture, wait_for
from synthetic import texture

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
mqtt = pytest.importorskip("paho.mqtt.client")
pytestmark = pytest.mark.usefixtures("one_thread")


class Broker:
    """mosquitto on 127.0.0.1:``port`` (anonymous), restartable on the same port; its state persists
    in the test's folder, so a subscriber's session (subscription and queued messages) survives a restart."""

    def __init__(self, program: str, folder):
        self.program = program
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                               f"persistence_location {folder}/\n"
                               # As root, mosquitto would switch to the user "mosquitto", who may not write here.
                               f"user {getpass.getuser()}\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([self.program, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)

        def accepts() -> bool:
            assert self.process is not None and self.process.poll() is None, self.process.stderr.read().decode()
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(accepts, 20, "mosquitto to listen")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def broker(tmp_path):
    program = required_program("mosquitto", "/usr/sbin/mosquitto")
    broker = Broker(program, tmp_path)
    broker.start()
    yield broker
    broker.stop()


class Subscriber:
    """A paho client collecting the messages on ``vandal/+/inspections``, with a persistent session
    (the broker keeps the messages published while it is away)."""

    def __init__(self, port: int):
        self.messages: list[tuple[str, dict]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber",
                                  clean_session=False)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = lambda client, *a: client.subscribe("vandal/+/inspections", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_disconnect = lambda *a: self.subscribed.clear()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload)))
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(20), "the subscriber did not subscribe"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    Detector(image_size=64, device="cpu", progress=False).fit([texture(0, 64)]).save(str(folder / "line"))
    return folder


def test_inspections_are_published_and_survive_a_broker_restart(broker, model_folder):
    from vandal.serve import create_app

    subscriber = Subscriber(broker.port)
    app = create_app(models=model_folder, device="cpu", mqtt=f"mqtt://127.0.0.1:{broker.port}")
    try:
        with running_server(app) as url:
            wait_for(lambda: httpx.get(f"{url}/line", timeout=10).json()["mqtt"]["connected"], what="MQTT connection")
            results = [score_texture(url, seed) for seed in (1, 2)]
            wait_for(lambda: len(subscriber.messages) == 2, what="two messages")
            assert [topic for topic, _ in subscriber.messages] == [topic_of("line")] * 2
            assert [m["file"] for _, m in subscriber.messages] == ["p1.png", "p2.png"]
            assert [m["pred_score"] for _, m in subscriber.messages] == [r["pred_score"] for r in results]
            assert all(m["model"] == "line" and m["event"] == "inspection" for _, m in subscriber.messages)

            assert "vandal_mqtt_connected 1" in httpx.get(f"{url}/metrics", timeout=10).text
            broker.stop()
            wait_for(lambda: not httpx.get(f"{url}/line", timeout=10).json()["mqtt"]["connected"],
                     what="the publisher to notice the broker is gone")
            offline = score_texture(url, 3)  # answered without a broker: the message waits in the queue
            broker.start()
            assert subscriber.subscribed.wait(20), "the subscriber did not come back"
            wait_for(lambda: httpx.get(f"{url}/line", timeout=10).json()["mqtt"]["connected"], 40,
                     "the publisher to reconnect")
            score_texture(url, 4)
            wait_for(lambda: {"p3.png", "p4.png"} <= {m["file"] for _, m in subscriber.messages}, what="both later")
            state = httpx.get(f"{url}/line", timeout=10).json()["mqtt"]
        late = {m["file"]: m for _, m in subscriber.messages}
        assert late["p3.png"]["pred_score"] == offline["pred_score"]
        assert state["published"] == 4 and state["dropped"] == 0
    finally:
        subscriber.close()


def test_mqtt_urls():
    assert parse_mqtt_url("mqtt://broker") == {"host": "broker", "port": 1883, "username": None, "password": None}
    assert parse_mqtt_url("mqtt://u:p%40ss@10.0.0.2:1884") == {"host": "10.0.0.2", "port": 1884, "username": "u",
                                                                "password": "p@ss"}
    for bad in ("mqtts://broker", "http://broker", "mqtt://", "mqtt://h/topic", "mqtt://h:99999"):
        with pytest.raises(ValueError, match="--mqtt"):
            parse_mqtt_url(bad)
