"""`vandal serve` under load: N concurrent clients scoring bottle images, against in-process predict.

    python benchmarks/bench_serve.py [--clients 4] [--shots 4] [--rounds 3] [--threads 1] [--bottle DIR]
    python benchmarks/bench_serve.py --records [--postgres URL] ...   (what inspection records cost)

Starts `vandal serve` in its own process (so its memory is its own), creates a model from
``--shots`` MVTec bottle train/good images over HTTP, then N client threads post the bottle test
images one per request (with every PNG, as the page asks, and again with scores only). Prints
throughput (images/s), client-side p50/p95 latency, failures, the server's RSS (peak and after),
and the throughput relative to the same work in process (target >= 0.8): ``Detector.predict`` on
the same files for scores only, and predict plus the same PNGs for the full answer (also given
against bare predict). Measured back to back in each round; medians over rounds (the machine may
be shared).
Synthetic 900 x 900 images stand in when the bottle data is absent.

With ``--records``: three servers side by side, records off (the same server with
``Station.record`` replaced by a no-op in its process: no database row, no kept image), records in
the default SQLite file, and records in PostgreSQL (``--postgres URL``, else a throwaway server
started like the tests' one, which needs Debian's postgresql), each with the default image
retention. The same load runs on each, interleaved per round; reported: images/s, and records-on /
records-off throughput (target: recording costs <= 10%, a ratio >= 0.90).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

BOTTLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_ad" / "bottle"
SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parents[1] / "tests"
# The records-off baseline: the CLI's own server, with nothing recorded (results carry no inspection id).
NO_RECORDS = ("import sys; from vandal.serve.station import Station; "
              "Station.record = lambda self, model, version, scored, *a, **k: [{'id': None} for _ in scored]; "
              "from vandal.cli.main import app; app()")


def images(bottle: Path, shots: int) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]], str]:
    """(references, test images) as (name, PNG bytes), and where they came from."""
    if bottle.is_dir():
        train = sorted((bottle / "train" / "good").glob("*.png"))[:shots]
        test = sorted((bottle / "test").rglob("*.png"))
        read = lambda paths: [(f"{p.parent.name}/{p.name}", p.read_bytes()) for p in paths]  # noqa: E731
        return read(train), read(test), "MVTec bottle test images, 900 x 900"
    from PIL import Image

    rng = np.random.default_rng(0)

    def png(i: int) -> tuple[str, bytes]:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (900, 900, 3), dtype=np.uint8)).save(buffer, format="PNG")
        return f"synthetic{i}.png", buffer.getvalue()

    return [png(i) for i in range(shots)], [png(100 + i) for i in range(40)], "synthetic images, 900 x 900"


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, MB (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def start_server(models: Path, port: int, device: str, clients: int, options: tuple[str, ...] = (),
                 records: bool = True) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    launcher = ["-m", "vandal.cli.main"] if records else ["-c", NO_RECORDS]
    command = [sys.executable, *launcher, "serve", "--models", str(models), "--port", str(port), "--device", device,
               "--log-level", "warning", "--queue-size", str(max(16, 2 * clients)), *options]
    return subprocess.Popen(command, env=env)


def wait_ready(httpx, url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("vandal serve exited")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("vandal serve did not start")


def load(httpx, url: str, tests: list[tuple[str, bytes]], clients: int, include: str | None,
         repeat: int) -> dict[str, float]:
    """Every test image posted once per repeat by ``clients`` threads -> throughput and latencies."""
    work = tests * repeat
    query = "" if include is None else f"?include={include}"
    latencies, failures, lock = [], [], threading.Lock()
    queue = iter(range(len(work)))

    def client() -> None:
        with httpx.Client(timeout=300) as session:
            while True:
                with lock:
                    index = next(queue, None)
                if index is None:
                    return
                name, data = work[index]
                start = time.perf_counter()
                try:
                    answer = session.post(f"{url}/models/bench/predict{query}",
                                          files=[("files", (name, data, "image/png"))])
                    failure = None if answer.status_code == 200 else f"{answer.status_code} {answer.text[:120]}"
                except httpx.HTTPError as error:
                    failure = f"{type(error).__name__}: {error}"
                seconds = time.perf_counter() - start
                with lock:
                    latencies.append(seconds)
                    if failure:
                        failures.append(f"{name}: {failure}")

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
    wall = time.perf_counter() - start
    for failure in failures[:5]:
        print(f"  failure: {failure}")
    return {"images": len(work), "seconds": wall, "throughput": len(work) / wall,
            "p50": float(np.percentile(latencies, 50)), "p95": float(np.percentile(latencies, 95)),
            "failures": len(failures)}


class InProcess:
    """In this process, on the same files: ``Detector.predict`` (decoding included, as the server's),
    and the same work as the server's default answer: predict, then the same PNGs drawn and encoded
    by the service's own helper."""

    def __init__(self, models: Path, tests: list[tuple[str, bytes]], device: str, folder: Path):
        from vandal.detector import Detector

        self.paths = []
        for i, (_, data) in enumerate(tests):
            self.paths.append(folder / f"{i:04d}.png")
            self.paths[-1].write_bytes(data)
        self.detector = Detector.load(str(models / "bench"), device=device, progress=False)
        self.detector.predict(self.paths[:2])  # warm-up

    def predict(self, repeat: int) -> float:
        start = time.perf_counter()
        for _ in range(repeat):
            self.detector.predict(self.paths)
        return len(self.paths) * repeat / (time.perf_counter() - start)

    def predict_and_pngs(self, repeat: int) -> float:
        from vandal.data.images import decode_ahead
        from vandal.serve.encode import PNG_FIELDS, results_json

        start = time.perf_counter()
        for _ in range(repeat):
            for path, image in decode_ahead(self.paths):
                prediction = self.detector.predict_image(image, str(path))
                results_json([(path.name, image)], [prediction], 0.5, PNG_FIELDS)
        return len(self.paths) * repeat / (time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def record_costs(database: str, tests: list[tuple[str, bytes]], folder: Path) -> dict[str, float]:
    """Milliseconds per image that recording takes (``Station.record``, one image per transaction as
    one-image requests have it, the image and an overlay-sized PNG kept as new files), in SQLite and in
    PostgreSQL at ``database``: medians over the test images, measured in this process."""
    from vandal.data.images import decode_bytes
    from vandal.prediction import Prediction
    from vandal.serve.db.keys import Identity
    from vandal.serve.settings import ServeSettings
    from vandal.serve.station import Scored, Station
    from vandal.serve.uploads import Upload

    costs = {}
    for mode, url in (("SQLite", None), ("PostgreSQL", database)):
        station = Station(ServeSettings(models=folder / f"cost-{mode}", database=url))
        seconds = []
        for index, (name, data) in enumerate(tests):
            image = decode_bytes(data, name)
            empty = np.zeros(image.shape[:2], np.float32)
            prediction = Prediction(0.3, empty, False, empty > 0, 0.3)
            unique = f"{mode}{index}".encode()  # new content each time: the kept files are written, not found
            scored = Scored(Upload(name, data + unique), image, prediction, overlay_png=data + unique + b"o")
            start = time.perf_counter()
            station.record("bench", 1, [scored], 0.5, 0.5, Identity("bench", "inspector"))
            seconds.append(time.perf_counter() - start)
        station.close()
        costs[mode] = float(np.median(seconds)) * 1000
    return costs


def compare_records(httpx, args: argparse.Namespace, references: list, tests: list) -> None:
    """Records off / SQLite / PostgreSQL servers under the same load, interleaved; medians over rounds."""
    answers = (("all PNGs", None), ("scores only", ""))
    runs: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        database = args.postgres
        if database is None:
            sys.path.insert(0, str(TESTS))
            from pg_server import temporary_postgres

            database = stack.enter_context(temporary_postgres(fast=False))  # durable, as a station runs it
        modes = {"records off": ((), False), "records in SQLite": ((), True),
                 "records in PostgreSQL": (("--database", database), True)}
        urls = {}
        for mode, (options, records) in modes.items():
            port = free_port()
            server = start_server(Path(folder) / mode.replace(" ", "-"), port, args.device, args.clients, options,
                                  records)
            stack.callback(server.wait, 30)
            stack.callback(server.terminate)
            urls[mode] = url = f"http://127.0.0.1:{port}"
            wait_ready(httpx, url, server)
            httpx.post(f"{url}/models/bench", timeout=600, files=[("files", (n, d, "image/png"))
                                                                  for n, d in references]).raise_for_status()
            load(httpx, url, tests[:4], 2, None, 1)  # warm-up
        for round_ in range(args.rounds):
            order = list(modes)[round_ % 3:] + list(modes)[: round_ % 3]  # drift on a shared machine spreads evenly
            line = []
            for mode in order:
                for label, include in answers:
                    result = load(httpx, urls[mode], tests, args.clients, include, args.repeat)
                    runs.setdefault((mode, label), []).append(result["throughput"])
                    line.append(f"{mode}, {label}: {result['throughput']:.2f} img/s ({result['failures']} failed)")
            print(f"round {round_ + 1}: " + "; ".join(line), flush=True)
        for mode, url in urls.items():
            newest = httpx.get(f"{url}/inspections?limit=1", timeout=30).json()["inspections"]
            print(f"{mode}: newest inspection id {newest[0]['id'] if newest else None}")
        costs = record_costs(database, tests, Path(folder))
    for label, _ in answers:
        off = float(np.median(runs[("records off", label)]))
        print(f"{label}: records off median {off:.2f} img/s")
        for mode in ("records in SQLite", "records in PostgreSQL"):
            on = float(np.median(runs[(mode, label)]))
            print(f"{label}: {mode} median {on:.2f} img/s, on / off {on / off:.3f} (target >= 0.90)")
    # Throughput on a shared machine drifts by more than recording costs: the direct measure too.
    # 1 / throughput is what one image takes when images follow each other: recording adding its time
    # to that, overlapping nothing, is the most it can cost.
    per_image = 1000 / float(np.median(runs[("records off", "scores only")]))
    for mode, ms in costs.items():
        print(f"recording in {mode}: {ms:.2f} ms per image (median, in process) against {per_image:.0f} ms per image "
              f"(1 / records-off scores-only throughput): at most {100 * ms / (per_image + ms):.1f}% of throughput")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="Passes over the test images per measurement.")
    parser.add_argument("--rounds", type=int, default=3, help="In-process / server measurements, interleaved.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bottle", type=Path, default=BOTTLE, help="MVTec AD bottle folder.")
    parser.add_argument("--n", type=int, default=None, help="Only the first N test images (default: all).")
    parser.add_argument("--records", action="store_true",
                        help="Compare records off, in SQLite and in PostgreSQL instead of serve vs in-process.")
    parser.add_argument("--postgres", default=None, help="With --records: a PostgreSQL URL to record into "
                                                         "(default: a throwaway server started here).")
    parser.add_argument("--threads", type=int, default=None,
                        help="Torch threads for both sides (OMP_NUM_THREADS for the server); 1 on a shared machine, "
                             "where a second spinning thread slows predict several times.")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch loads, and inherited by the server
    import httpx
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    references, tests, source = images(args.bottle, args.shots)
    tests = tests[: args.n] if args.n else tests
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; {len(tests)} "
          f"{source}; {len(references)} references; {args.clients} clients, one image per request")
    if args.records:
        compare_records(httpx, args, references, tests)
        return
    url = f"http://127.0.0.1:{args.port}"
    # The machine may be shared: each round measures in-process predict and the server back to back,
    # so a round's ratio compares the two under the same load; the median over rounds is reported.
    runs: dict[str, list[dict]] = {"all PNGs": [], "scores only": []}
    baselines: dict[str, list[float]] = {"predict": [], "predict + PNGs": []}
    with tempfile.TemporaryDirectory() as folder:
        models = Path(folder) / "models"
        server = start_server(models, args.port, args.device, args.clients)
        try:
            wait_ready(httpx, url, server)
            start = time.perf_counter()
            created = httpx.post(f"{url}/models/bench", timeout=600,
                                 files=[("files", (name, data, "image/png")) for name, data in references])
            created.raise_for_status()
            print(f"create (fit {len(references)} references over HTTP): {time.perf_counter() - start:.2f} s; "
                  f"server RSS {rss_mb(server.pid)['VmRSS']:.0f} MB")
            load(httpx, url, tests[:4], 2, None, 1)  # warm-up: model loaded, threads started
            local = InProcess(models, tests, args.device, Path(folder))
            for round_ in range(args.rounds):
                # The baseline for each answer: bare predict for scores, predict + the same PNGs for PNGs.
                plain, same_work = local.predict(args.repeat), local.predict_and_pngs(args.repeat)
                baselines["predict"].append(plain)
                baselines["predict + PNGs"].append(same_work)
                line = [f"round {round_ + 1}: in-process predict {plain:.2f} img/s, with PNGs {same_work:.2f}"]
                for label, include, baseline in (("all PNGs", None, same_work), ("scores only", "", plain)):
                    r = load(httpx, url, tests, args.clients, include, args.repeat)
                    r.update(rss_mb(server.pid), ratio=r["throughput"] / baseline, bare=r["throughput"] / plain)
                    runs[label].append(r)
                    line.append(f"serve {label} {r['throughput']:.2f} img/s (x{r['ratio']:.2f}), p50 "
                                f"{r['p50'] * 1000:.0f} ms, p95 {r['p95'] * 1000:.0f} ms, {r['failures']} failed")
                print("; ".join(line), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    for label, values in baselines.items():
        print(f"in-process {label}: median {np.median(values):.2f} img/s over {args.rounds} round(s)")
    for label, rounds in runs.items():
        med = {key: float(np.median([r[key] for r in rounds])) for key in ("throughput", "p50", "p95", "ratio", "bare")}
        same = "predict + the same PNGs" if label == "all PNGs" else "predict"
        print(f"serve, {label}: median {med['throughput']:.2f} img/s, p50 {med['p50'] * 1000:.0f} ms, p95 "
              f"{med['p95'] * 1000:.0f} ms, failures {sum(r['failures'] for r in rounds)}, server RSS "
              f"{rounds[-1]['VmRSS']:.0f} MB (peak {max(r['VmHWM'] for r in rounds):.0f} MB); serve / in-process "
              f"{same}: {med['ratio']:.2f} (target >= 0.8)"
              + (f"; serve / in-process predict: {med['bare']:.2f}" if label == "all PNGs" else ""))


if __name__ == "__main__":
    main()
