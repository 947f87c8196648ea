"""The station on a real uvicorn server: slow uploads time out without starving other clients, and a
real PostgreSQL server (started by the test) holds the records as SQLite does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vandal.detector import Detector

from serve_helpers import free_port, parts, png_bytes, running_server
from synthetic import texture

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("sqlalchemy")
pytestmark = pytest.mark.usefixtures("one_thread")


def slow_upload(url: str) -> socket.socket:
    """A predict request whose body starts and then stalls (a client trickling a large upload)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(b"POST /models/m/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
                 b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n--xyz\r\n")
    return sock


def test_slow_uploads_time_out_without_starving_other_clients(tmp_path):
    from vandal.serve import create_app

    Detector(image_size=64, device="cpu", progress=False).fit([texture(0, 64)]).save(str(tmp_path / "m"))
    app = create_app(models=tmp_path, device="cpu", queue_size=4, body_timeout=2.0)
    files = parts([("a.png", png_bytes(texture(5, 64)))])
    with running_server(app) as url:
        slow = [slow_upload(url) for _ in range(12)]  # three times the queue
        try:
            start = time.monotonic()
            answer = httpx.post(f"{url}/models/m/predict?include=", files=files, timeout=60)
            assert answer.status_code == 200, answer.text
            assert time.monotonic() - start < 2.0, "answered while the slow uploads were still arriving"
            for sock in slow:
                reply = b""
                while b"--body-timeout" not in reply and (chunk := sock.recv(4096)):
                    reply += chunk
                assert reply.startswith(b"HTTP/1.1 408") and b"--body-timeout" in reply
        finally:
            for sock in slow:
                sock.close()
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert "vandal_uploads_timed_out_total 12" in metrics


def test_serve_beyond_loopback_requires_the_key_it_was_given(tmp_path):
    from click.testing import CliRunner

    from vandal.cli.main import app

    added = CliRunner().invoke(app, ["keys", "add", "lead", "--role", "viewer", "--models", str(tmp_path)])
    key = added.output.strip().splitlines()[-1]
    port = free_port()
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "vandal.cli.main", "serve", "--models", str(tmp_path),
                                "--host", "0.0.0.0", "--port", str(port), "--device", "cpu", "--log-level",
                                "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "vandal serve did not start"
                time.sleep(0.2)
        assert httpx.get(f"{url}/models", timeout=10).status_code == 401
        assert httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code == 200
        rebound = httpx.get(f"{url}/health", headers={"Host": "attacker.example"}, timeout=10)
        assert rebound.status_code == 421
    finally:
        process.terminate()
        process.wait(timeout=20)


# ---------------------------------------------------------------------------- PostgreSQL


def test_postgresql_holds_records_keys_and_versions(postgres, tmp_path):
    from fastapi.testclient import TestClient

    from vandal.serve import create_app
    from vandal.serve.db import Database, keys

    db = Database(postgres)
    assert db.dialect == "postgresql"
    with db.begin() as conn:
        _, key = keys.add_key(conn, "pg-admin", "admin")
    headers = {"Authorization": f"Bearer {key}"}
    first = create_app(models=tmp_path, device="cpu", database=postgres)
    client = TestClient(first, base_url="http://127.0.0.1")
    references = parts([(f"r{i}.png", png_bytes(texture(i, 64))) for i in range(2)])
    assert client.post("/models/m", files=references, data={"settings": '{"image_size": 64}'}).status_code == 401
    created = client.post("/models/m", files=references, data={"settings": '{"image_size": 64}'}, headers=headers)
    assert created.status_code == 201 and created.json()["version"] == 1
    scored = client.post("/models/m/predict?include=", files=parts([("x.png", png_bytes(texture(9, 64)))]),
                         headers=headers).json()["results"][0]
    review = client.post(f"/inspections/{scored['inspection_id']}/review", json={"verdict": "good"}, headers=headers)
    assert review.status_code == 201
    # A second app on the same database (another process would do the same) lists what the first recorded.
    second = TestClient(create_app(models=tmp_path, device="cpu", database=postgres), base_url="http://127.0.0.1")
    listed = second.get("/inspections", headers=headers).json()
    assert [r["id"] for r in listed["inspections"]] == [scored["inspection_id"]]
    assert listed["inspections"][0]["verdict"] == "good" and listed["inspections"][0]["version"] == 1
    stats = second.get("/models/m/stats?bucket=day", headers=headers).json()
    assert stats["total"]["scored"] == 1 and stats["total"]["reviewed"] == 1
    assert [e["action"] for e in second.get("/audit", headers=headers).json()["audit"]][:2] == [
        "inspection.review", "model.create"]
    import threading

    from vandal.serve.locking import model_lock

    other, entered = Database(postgres), threading.Event()

    def wait_for_the_lock() -> None:
        with model_lock(other, tmp_path, "m"):
            entered.set()

    with model_lock(db, tmp_path, "m"):  # an advisory lock: another connection (process, machine) waits
        waiter = threading.Thread(target=wait_for_the_lock)
        waiter.start()
        assert not entered.wait(0.3)
    assert entered.wait(10)
    waiter.join(10)
    other.dispose()
    db.dispose()
