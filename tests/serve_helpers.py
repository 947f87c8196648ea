"""Helpers for the service tests: a real uvicorn server in a thread, PNG bytes, multipart parts."""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = os.environ.get("VANDAL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
FIT_SETTINGS = '{"image_size": 64}'  # tiny fits: the real backbone at 64 px


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def parts(named: list[tuple[str, bytes]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """``[(file name, bytes)]`` -> the ``files=`` of httpx / TestClient, one ``files`` field each."""
    return [("files", (name, data, "image/png")) for name, data in named]


def bomb_png(side: int = 20000) -> bytes:
    """A 1-bit PNG of ``side`` x ``side`` pixels, a few KB on disk: a decompression bomb above the pixel limit."""
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free local port in a background thread -> its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def save_pngs(folder: Path, images: dict[str, np.ndarray]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in images.items():
        Image.fromarray(image).save(folder / name)
        paths.append(folder / name)
    return paths


def score_texture(url: str, seed: int, prefix: str = "p", threshold: float | None = None) -> dict:
    """POST one synthetic texture (``{prefix}{seed}.png``, 64 px) to model ``line`` at ``url``, no PNGs
    back -> its result (asserting a 200)."""
    import httpx

    from synthetic import texture

    query = "?include=" + ("" if threshold is None else f"&image_threshold={threshold}")
    answer = httpx.post(f"{url}/models/line/predict{query}",
                        files=parts([(f"{prefix}{seed}.png", png_bytes(texture(seed, 64)))]), timeout=120)
    assert answer.status_code == 200, answer.text
    return answer.json()["results"][0]


def required_program(name: str, *candidates: str) -> str:
    """The path of an external program the test runs (a broker, a database server): skipped when it is
    missing, except in CI (``CI=true``), where a missing program fails the test instead."""
    for candidate in (*candidates, shutil.which(name)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    message = f"{name} is not installed (apt-get install the package that has it; .ci/run does)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + "; CI must run this test")
    pytest.skip(message)


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    """Poll ``condition()`` until it is truthy -> its value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


class Receiver:
    """A webhook receiver: answers ``fail_first`` requests with 503, then 200; ``gate`` (when set)
    holds every request until it is opened."""

    def __init__(self, fail_first: int = 0, gate: threading.Event | None = None):
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_first, self.gate = fail_first, gate
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.gate is not None:
                    receiver.gate.wait(30)
                receiver.requests.append((dict(self.headers), body))
                status = 503 if len(receiver.requests) <= receiver.fail_first else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()
