"""The station on a real uvicorn server: slow uploads time out without starving other clients, and a
real PostgreSQL server (started by the test) holds the records as SQLite does."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
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
                reply = sock.recv(4096).decode("latin-1")
                assert reply.startswith("HTTP/1.1 408") and "--body-timeout" in reply
        finally:
            for sock in slow:
                sock.close()
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert "vandal_uploads_timed_out_total 12" in metrics


# ---------------------------------------------------------------------------- PostgreSQL


def postgres_tools() -> tuple[str, str] | None:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            if (folder / "initdb").exists():
                return str(folder / "initdb"), str(folder / "pg_ctl")
        return None
    return initdb, pg_ctl


def unavailable(reason: str) -> None:
    """In CI the PostgreSQL test must run: fail there, skip on a machine without the server."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL test server: {reason}")
    pytest.skip(f"PostgreSQL test server: {reason}")


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on a loopback port, run as the ``postgres`` user when we are root."""
    tools = postgres_tools()
    if tools is None:
        unavailable("initdb/pg_ctl not found (Debian: apt-get install postgresql)")
    initdb, pg_ctl = tools
    # Not under pytest's temporary folder: that one is private to us, and the server runs as another user.
    folder = Path(tempfile.mkdtemp(prefix="vandal-pg-"))
    data = folder / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if shutil.which("runuser") is None:
            unavailable("running as root without runuser")
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", "vandal", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60", "-o",
                        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        shutil.rmtree(folder, ignore_errors=True)
        unavailable(f"could not start ({error}; {detail.decode(errors='replace')[-500:]})")
    try:
        yield f"postgresql://vandal@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


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
    db.dispose()
