"""Watched folders: a file is taken only once complete (size stable and settled), each file once,
across restarts of the server, and scored files reach the outputs like any inspection."""

from __future__ import annotations

import json
import os

import pytest

from vandal.detector import Detector
from vandal.serve.db import Database
from vandal.serve.db.schema import watched_files
from vandal.serve.db.watched import WatchedFiles
from vandal.serve.watch import FolderWatcher, Retry, is_candidate, parse_watch

from serve_helpers import Receiver, png_bytes, running_server, wait_for
from synthetic import plant_defect, texture

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.usefixtures("one_thread")


class Calls:
    """A scorer that records what it was given (the watcher's own logic is under test here)."""

    def __init__(self, outcome: str = "inspection 0.1"):
        self.files: list[str] = []
        self.outcome = outcome

    def __call__(self, model: str, file: str, data: bytes) -> str:
        self.files.append(file)
        if self.outcome == "retry":
            raise Retry(f"no model named {model!r}")
        return self.outcome


def seen_in(folder) -> WatchedFiles:
    """What the watchers took, in a SQLite station database in ``folder`` (the service's default kind)."""
    return WatchedFiles(Database(str(folder / "station.sqlite")))


def write(path, data: bytes, mtime: float | None = None) -> None:
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_a_file_is_taken_once_complete(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    calls = Calls()
    watcher = FolderWatcher("m", folder, calls, seen_in(tmp_path), interval=1, settle=5)
    part = folder / "a.png"
    write(part, b"x" * 100, mtime=1000)
    assert watcher.ready(now=1000) == [], "first sighting: not known to be stable yet"
    write(part, b"x" * 200, mtime=1000)  # still growing (same mtime: the size alone tells)
    assert watcher.ready(now=1001) == []
    assert watcher.ready(now=1004) == [], "unchanged for less than the settle time"
    assert watcher.ready(now=1006) == [part]
    write(folder / "empty.png", b"", mtime=1000)
    write(folder / "b.png.part", b"x", mtime=1000)
    write(folder / ".hidden.png", b"x", mtime=1000)
    write(folder / "notes.txt", b"x", mtime=1000)
    (folder / "sub.png").mkdir()
    assert watcher.ready(now=1011) == [part] and watcher.ready(now=1020) == [part]


def test_each_file_once_and_again_when_rewritten(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    calls, seen = Calls(), seen_in(tmp_path)
    watcher = FolderWatcher("m", folder, calls, seen, interval=1, settle=0)
    write(folder / "a.png", b"first")
    write(folder / "b.png", b"other")
    assert watcher.poll() == 0  # first sighting
    assert watcher.poll() == 2 and calls.files == ["a.png", "b.png"]
    assert watcher.poll() == 0 and watcher.scored == 2
    write(folder / "a.png", b"second content", mtime=os.stat(folder / "a.png").st_mtime + 3600)  # a clock ahead
    watcher.poll()
    assert watcher.poll() == 1 and calls.files[-1] == "a.png", "new content under the same name is scored"

    again = FolderWatcher("m", folder, calls, seen_in(tmp_path), interval=1, settle=0)
    again.poll()
    assert again.poll() == 0 and len(calls.files) == 3, "a new watcher (a restart) reads what was taken"
    other_model = FolderWatcher("n", folder, calls, seen_in(tmp_path), interval=1, settle=0)
    other_model.poll()
    assert other_model.poll() == 2, "what one model took is still new to another"


def test_a_missing_model_is_retried_and_unreadable_files_are_taken(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    waiting = Calls("retry")
    watcher = FolderWatcher("m", folder, waiting, seen_in(tmp_path), interval=1, settle=0)
    write(folder / "a.png", b"data")
    watcher.poll()
    watcher.poll()
    watcher.poll()
    assert waiting.files == ["a.png", "a.png"], "tried at each poll while the model is missing"
    watcher.score = Calls("unreadable: a.png is not an image")
    watcher.poll()
    watcher.poll()
    assert watcher.failed == 1 and watcher.scored == 0
    with Database(str(tmp_path / "station.sqlite")).connect() as conn:
        outcomes = conn.execute(watched_files.select()).mappings().all()
    assert [(row["file"], row["outcome"]) for row in outcomes] == [("a.png", "unreadable: a.png is not an image")]


def test_watch_option_and_names():
    assert parse_watch("bottle=/srv/cam") == ("bottle", __import__("pathlib").Path("/srv/cam"))
    for bad in ("bottle", "=x", "bottle="):
        with pytest.raises(ValueError, match="NAME=DIR"):
            parse_watch(bad)
    assert is_candidate(__import__("pathlib").Path("x/IMG_1.JPG"))
    assert not is_candidate(__import__("pathlib").Path("x/IMG_1.jpg.crdownload"))


def test_the_server_scores_dropped_files_once_across_restarts(tmp_path):
    from vandal.serve import create_app

    models, drop = tmp_path / "models", tmp_path / "camera"
    drop.mkdir()
    Detector(image_size=64, device="cpu", progress=False).fit([texture(0, 64)]).save(str(models / "line"))

    def server():
        return running_server(create_app(models=models, device="cpu", watch=(("line", drop),), watch_interval=0.1))

    def state(url: str) -> dict:
        return httpx.get(f"{url}/line", timeout=10).json()["watch"][0]

    (drop / "good.png").write_bytes(png_bytes(texture(3, 64)))
    (drop / "bad.png").write_bytes(png_bytes(plant_defect(texture(4, 64), 0, radius=10)[0]))
    (drop / "broken.png").write_bytes(b"not a png")
    with Receiver() as receiver, server() as url:
        httpx.post(f"{url}/models/line/webhooks", json={"url": receiver.url}, timeout=10).raise_for_status()
        wait_for(lambda: state(url)["scored"] + state(url)["failed"] == 3, 60, "the three dropped files")
        assert state(url)["scored"] == 2 and state(url)["failed"] == 1
        wait_for(lambda: len(receiver.requests) == 2, what="two webhook deliveries")
        listed = httpx.get(f"{url}/inspections?model=line", timeout=10).json()["inspections"]
    events = sorted((json.loads(body) for _, body in receiver.requests), key=lambda e: e["file"])
    assert [(e["file"], e["source"], e["model"]) for e in events] == [("bad.png", "watch", "line"),
                                                                      ("good.png", "watch", "line")]
    assert events[0]["pred_score"] > events[1]["pred_score"]
    assert sorted(record["id"] for record in listed) == sorted(e["id"] for e in events), "recorded like any other"
    assert {record["source"] for record in listed} == {"watch"}

    with server() as url:  # a restart: the three files are known, only the new one is scored
        polls = state(url)["polls"]
        wait_for(lambda: state(url)["polls"] >= polls + 3, what="three polls")
        assert state(url)["scored"] == 0 and state(url)["failed"] == 0
        (drop / "later.png").write_bytes(png_bytes(texture(5, 64)))
        wait_for(lambda: state(url)["scored"] == 1, 60, "the file dropped after the restart")
        assert state(url)["running"] and state(url)["folder"] == str(drop.resolve())
        files = [r["file"] for r in httpx.get(f"{url}/inspections?model=line", timeout=10).json()["inspections"]]
    assert sorted(files) == ["bad.png", "good.png", "later.png"], "each file once, across the restart"


@pytest.mark.parametrize("options, message", [
    (["--watch", "line"], "use NAME=DIR"),
    (["--watch", "line=/no/such/folder"], "no such folder"),
    (["--watch", "../x=."], "is not allowed"),
    (["--mqtt", "http://broker:1883"], "mqtt://"),
])
def test_serve_refuses_bad_line_options_before_starting(tmp_path, options, message):
    from click.testing import CliRunner

    from vandal.cli.main import app

    result = CliRunner().invoke(app, ["serve", "--models", str(tmp_path), *options])
    assert result.exit_code == 2 and message in result.output, result.output
