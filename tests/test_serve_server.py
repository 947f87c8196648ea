"""The service on a real uvicorn server (a socket, a thread pool, concurrent clients): concurrency gives
the sequential scores, a full queue answers 503 with Retry-After, body limits, and the CLI command."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from vandal.detector import Detector

from serve_helpers import FIT_SETTINGS, free_port, parts, png_bytes, running_server
from synthetic import plant_defect, texture

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from vandal.serve import create_app

    models = tmp_path_factory.mktemp("models")
    app = create_app(models=models, device="cpu", queue_size=32)
    with running_server(app) as url:
        references = parts([(f"ref{i}.png", png_bytes(texture(i, 72))) for i in range(2)])
        created = httpx.post(f"{url}/models/line", files=references, data={"settings": FIT_SETTINGS}, timeout=60)
        assert created.status_code == 201, created.text
        yield url, models, app


def test_parallel_predicts_give_the_sequential_scores(served):
    url, models, _ = served
    images = [plant_defect(texture(40 + i, 72), i, radius=10)[0] if i % 2 else texture(40 + i, 72) for i in range(8)]
    payloads = [parts([(f"img{i}.png", png_bytes(image))]) for i, image in enumerate(images)]

    def score(files):
        answer = httpx.post(f"{url}/models/line/predict?include=mask_png", files=files, timeout=120)
        assert answer.status_code == 200, answer.text
        return answer.json()["results"][0]

    sequential = [score(files) for files in payloads]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(score, payloads))
    assert [r["pred_score"] for r in parallel] == [r["pred_score"] for r in sequential]
    assert [r["mask_png"] for r in parallel] == [r["mask_png"] for r in sequential]
    # One image per request: the in-process reference scores one image per call too (images sharing a
    # backbone batch may differ in the last float digits).
    detector = Detector.load(str(models / "line"), device="cpu", progress=False)
    in_process = [detector.predict([image])[0] for image in images]
    assert [r["pred_score"] for r in parallel] == pytest.approx([p.pred_score for p in in_process], rel=1e-6)
    assert [r["pred_label"] for r in parallel] == [bool(p.pred_label) for p in in_process]


def test_a_full_queue_answers_503_with_retry_after(tmp_path):
    from vandal.serve import create_app

    app = create_app(models=tmp_path, device="cpu", queue_size=1)
    store, release, entered = app.state.store, threading.Event(), threading.Event()
    Detector(image_size=64, device="cpu", progress=False).fit([texture(0, 64)]).save(str(tmp_path / "m"))
    original = store.predict

    def slow_predict(*args, **kwargs):
        entered.set()
        release.wait(30)
        return original(*args, **kwargs)

    store.predict = slow_predict
    files = parts([("a.png", png_bytes(texture(5, 64)))])
    with running_server(app) as url, ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, f"{url}/models/m/predict?include=", files=files, timeout=60)
        assert entered.wait(30)
        busy = httpx.post(f"{url}/models/m/predict", files=files, timeout=30)
        assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1
        assert "queue" in busy.json()["detail"] and "--queue-size" in busy.json()["detail"]
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200, "light requests still answered"
        release.set()
        assert first.result().status_code == 200
        assert httpx.post(f"{url}/models/m/predict?include=", files=files, timeout=60).status_code == 200
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert "vandal_queue_rejected_total 1" in metrics
    assert 'vandal_requests_total{endpoint="/models/{name}/predict",method="POST",status="503"} 1' in metrics


def test_request_bodies_above_the_limit_are_refused_before_reading(tmp_path):
    from vandal.serve import create_app

    app = create_app(models=tmp_path, device="cpu", max_request_mb=0.05)
    big = os.urandom(80_000)
    with running_server(app) as url:
        declared = httpx.post(f"{url}/models/m/predict", files=parts([("big.png", big)]), timeout=30)
        assert declared.status_code == 413 and "--max-request-mb" in declared.json()["detail"]

        body = (b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
                b"Content-Type: image/png\r\n\r\n" + big + b"\r\n--xyz--\r\n")

        def chunks():  # no Content-Length: the limit is counted while the (well-formed) body streams
            for start in range(0, len(body), 8192):
                yield body[start:start + 8192]

        streamed = httpx.post(f"{url}/models/m/predict", content=chunks(), timeout=30,
                              headers={"content-type": "multipart/form-data; boundary=xyz"})
        assert streamed.status_code == 413 and "--max-request-mb" in streamed.json()["detail"]
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200


def test_the_serve_command_serves_a_folder_of_bundles(tmp_path):
    Detector(image_size=64, device="cpu", progress=False).fit([texture(0, 64)]).save(str(tmp_path / "from-cli"))
    port = free_port()
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "vandal.cli.main", "serve", "--models", str(tmp_path),
                                "--port", str(port), "--device", "cpu", "--log-level", "warning"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "vandal serve did not start"
                time.sleep(0.2)
        assert health.json()["status"] == "ok"
        listed = httpx.get(f"http://127.0.0.1:{port}/models", timeout=10).json()["models"]
        assert [m["name"] for m in listed] == ["from-cli"] and listed[0]["references"] == 1
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_missing_extra_is_named(monkeypatch):
    import importlib.util

    from vandal.serve import require_extra

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    with pytest.raises(ImportError, match=r"vandal\[serve\]"):
        require_extra()
