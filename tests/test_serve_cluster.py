"""Two server processes sharing one PostgreSQL server (started by the test: initdb into a temporary
folder, loopback port) and one models folder behave as one station: a prediction made on one is
listed by the other, two concurrent reference additions from the two give two versions with none of
the references lost, and a process holding an old version in its cache notices the new one."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from vandal.detector import Detector

from serve_helpers import free_port, parts, png_bytes, score_texture, wait_for
from synthetic import texture

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("psycopg")
SRC = str(Path(__file__).resolve().parents[1] / "src")


class Servers:
    """``count`` processes of ``vandal serve --database URL`` on one models folder -> their base URLs."""

    def __init__(self, models: Path, database: str, count: int = 2):
        env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "OMP_NUM_THREADS": "1"}
        self.urls, self.processes = [], []
        for _ in range(count):
            port = free_port()
            command = [sys.executable, "-m", "vandal.cli.main", "serve", "--models", str(models), "--database",
                       database, "--port", str(port), "--device", "cpu", "--log-level", "warning"]
            self.processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
            self.urls.append(f"http://127.0.0.1:{port}")
        for url, process in zip(self.urls, self.processes):
            wait_for(lambda url=url, process=process: self._up(url, process), 120, f"the server at {url}")

    @staticmethod
    def _up(url: str, process: subprocess.Popen) -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {process.stdout.read().decode()[-3000:]}")
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(30)


def test_two_processes_on_one_postgresql_are_one_station(postgres, tmp_path):
    models = tmp_path / "models"
    Detector(image_size=64, device="cpu", progress=False).fit([texture(0, 64), texture(1, 64)]).save(
        str(models / "line"))
    servers = Servers(models, postgres)
    try:
        first, second = servers.urls
        made_on_second = score_texture(second, 5)
        made_on_first = score_texture(first, 6)
        for url in (first, second):
            listed = httpx.get(f"{url}/inspections?model=line", timeout=10).json()["inspections"]
            assert [r["id"] for r in listed] == [made_on_first["inspection_id"], made_on_second["inspection_id"]]
        version = httpx.get(f"{second}/models/line", timeout=10).json()["version"]
        assert httpx.get(f"{first}/models/line", timeout=10).json()["version"] == version

        def add(job: tuple[str, int]) -> httpx.Response:
            url, seed = job
            return httpx.post(f"{url}/models/line/references", files=parts([(f"r{seed}.png",
                                                                             png_bytes(texture(seed, 64)))]),
                              timeout=300)

        with ThreadPoolExecutor(2) as pool:  # both processes have the model cached at `version`
            answers = list(pool.map(add, [(first, 20), (second, 21)]))
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        versions = httpx.get(f"{first}/models/line/versions", timeout=10).json()["versions"]
        added = [v for v in versions if v["version"] > version]
        assert sorted(v["action"] for v in added) == ["references", "references"]
        assert sorted(v["references"] for v in added) == [3, 4], "the second change started from the first"
        for url in (first, second):  # each process serves the newest version, whichever made it
            summary = httpx.get(f"{url}/models/line", timeout=10).json()
            assert summary["references"] == 4 and summary["version"] == max(v["version"] for v in added)
            assert score_texture(url, 7)["inspection_id"] > made_on_first["inspection_id"]
        records = httpx.get(f"{second}/inspections?model=line&limit=2", timeout=10).json()["inspections"]
        assert {r["version"] for r in records} == {summary["version"]}, "both scored with the new version"
    finally:
        servers.close()


def test_the_model_lock_on_sqlite_orders_writers(tmp_path):
    import threading

    from vandal.serve.db import Database
    from vandal.serve.locking import lock_key, model_lock

    db = Database(str(tmp_path / "station.sqlite"))
    order, inside = [], threading.Event()

    def second() -> None:
        with model_lock(db, tmp_path, "line"):
            order.append("second")

    with model_lock(db, tmp_path, "line"):
        thread = threading.Thread(target=second)
        thread.start()
        with model_lock(db, tmp_path, "other"):  # another model's lock is free
            inside.set()
        thread.join(0.3)
        assert thread.is_alive() and order == [], "the second writer waits"
        order.append("first")
    thread.join(10)
    assert order == ["first", "second"] and inside.is_set()
    assert lock_key("line") == lock_key("line") != lock_key("other") and -(2 ** 63) <= lock_key("line") < 2 ** 63
    db.dispose()
