"""The service's HTTP contract, through FastAPI's TestClient (in process; the real-server tests are in
test_serve_server.py). Tiny fits: the real backbone at 64 px on synthetic textures."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from vandal.detector import Detector
from vandal.outputs.visualize import map_image, mask_image
from vandal.serve.app import STATIC

from serve_helpers import FIT_SETTINGS, bomb_png, parts, png_bytes
from synthetic import plant_defect, texture

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def images():
    references = {f"ref{i}.png": png_bytes(texture(i, 80)) for i in range(3)}
    defect = plant_defect(texture(21, 80), 1, radius=12)[0]
    normal = texture(30, 80)
    wide = np.ascontiguousarray(np.concatenate([texture(31, 80), texture(32, 80)[:, :40]], axis=1))  # 80 x 120
    return {"references": references, "arrays": {"defect.png": defect, "normal.png": normal, "wide.png": wide}}


@pytest.fixture(scope="module")
def service(tmp_path_factory, images):
    from fastapi.testclient import TestClient

    from vandal.serve import create_app

    models = tmp_path_factory.mktemp("models")
    app = create_app(models=models, device="cpu", max_pixels=2_000_000, max_upload_mb=0.25, max_files=8)
    client = TestClient(app, base_url="http://127.0.0.1")  # a loopback Host: the DNS-rebinding guard allows it
    created = client.post("/models/base", files=parts(list(images["references"].items())),
                          data={"settings": FIT_SETTINGS})
    assert created.status_code == 201, created.text
    return client, models, app


def predict(client, name, named_arrays, query=""):
    files = parts([(n, png_bytes(a)) for n, a in named_arrays.items()])
    return client.post(f"/models/{name}/predict{query}", files=files)


def decode_png(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


# ---------------------------------------------------------------------------- health, listing, docs


def test_health_models_and_docs(service):
    client, _, _ = service
    assert client.get("/health").json() == {"status": "ok", "version": __import__("vandal").__version__}
    models = client.get("/models").json()["models"]
    summary = next(m for m in models if m["name"] == "base")
    assert summary["backbone"] == "efficientnet-lite2" and summary["references"] == 3
    assert summary["image_threshold"] == 0.5 and summary["pixel_threshold"] == 0.5 and summary["image_size"] == 64
    spec = client.get("/openapi.json").json()
    assert {"/models", "/models/{name}", "/models/{name}/predict", "/models/{name}/references", "/health",
            "/metrics"} <= set(spec["paths"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text
    assert "<script src=\"http" not in docs.text and "https://" not in docs.text, "works offline"


def test_page_and_its_files_work_offline(service):
    client, _, _ = service
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for hook in ("model-name", "reference-files", "create-model", "test-files", "threshold", "error"):
        assert f'data-testid="{hook}"' in page.text
    assets = sorted(path.name for path in STATIC.iterdir() if path.suffix in (".js", ".css"))
    assert {"main.js", "score.js", "style.css"} <= set(assets)
    for asset in assets:
        answer = client.get(f"/static/{asset}")
        assert answer.status_code == 200
        text = answer.text.replace("http://www.w3.org/2000/svg", "")  # the SVG namespace names, loads nothing
        assert "http://" not in text and "https://" not in text, f"{asset} must not load anything from elsewhere"
    assert "result-card" in client.get("/static/score.js").text
    assert "http://" not in page.text and "https://" not in page.text


def test_the_pages_run_under_a_strict_content_security_policy(service):
    """No inline script, event handler or style attribute (script-src / style-src 'self')."""
    client, _, _ = service
    for path in ("/", "/docs"):
        html = client.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), f"{path}: an inline <script>"
        assert not re.search(r"\son[a-z]+\s*=", html), f"{path}: an inline event handler"
        assert not re.search(r"\sstyle\s*=|<style", html), f"{path}: an inline style"
        assert "javascript:" not in html and 'src="data:' not in html and 'href="data:' not in html


# ---------------------------------------------------------------------------- predict


def test_predict_scores_in_upload_order_as_the_library_does(service, images):
    client, models, _ = service
    arrays = images["arrays"]
    answer = predict(client, "base", arrays)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["file"] for r in results] == list(arrays)
    expected = Detector.load(str(models / "base"), device="cpu", progress=False).predict(list(arrays.values()))
    for result, want, array in zip(results, expected, arrays.values()):
        assert result["pred_score"] == pytest.approx(want.pred_score, rel=1e-6)
        assert result["pred_label"] is bool(want.pred_label)
        for field in ("overlay_png", "mask_png", "anomaly_map_png"):
            assert decode_png(result[field]).shape[:2] == array.shape[:2], "PNGs at the image's original size"
        assert np.array_equal(decode_png(result["mask_png"]), mask_image(want.pred_mask))
        diff = np.abs(decode_png(result["anomaly_map_png"]).astype(int) - map_image(want.anomaly_map, 0.5))
        assert diff.max() <= 1, "the calibrated map, 0 -> 2 x threshold as 8 bits"
    assert results[0]["pred_label"] is True and results[1]["pred_label"] is False


def test_include_and_per_request_thresholds(service, images):
    client, _, _ = service
    defect = {"defect.png": images["arrays"]["defect.png"]}
    only_mask = predict(client, "base", defect, "?include=mask_png").json()["results"][0]
    assert set(only_mask) == {"file", "pred_score", "pred_label", "mask_png", "inspection_id"}
    bare = predict(client, "base", defect, "?include=").json()["results"][0]
    assert set(bare) == {"file", "pred_score", "pred_label", "inspection_id"}
    high = predict(client, "base", defect, "?include=mask_png&image_threshold=1e6&pixel_threshold=1e6").json()
    assert high["results"][0]["pred_label"] is False and decode_png(high["results"][0]["mask_png"]).max() == 0
    again = predict(client, "base", defect, "?include=").json()["results"][0]
    assert again["pred_label"] is True, "a request's thresholds apply to that request only"
    bad = predict(client, "base", defect, "?include=heatmap")
    assert bad.status_code == 422 and "include" in bad.json()["detail"]
    negative = predict(client, "base", defect, "?image_threshold=-1")
    assert negative.status_code == 422 and "image_threshold" in negative.json()["detail"]


def test_bad_uploads_name_the_file_and_the_rest_can_still_be_scored(service, images):
    client, _, _ = service
    good = ("normal.png", png_bytes(images["arrays"]["normal.png"]))
    noisy = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)  # ~480 KB as PNG
    cases = {
        "junk.png": (b"\x89PNG\r\n\x1a\n not really", 422, "cannot decode"),
        "truncated.png": (png_bytes(texture(3, 80))[:200], 422, "cannot decode"),
        "empty.png": (b"", 422, "empty"),
        "bomb.png": (bomb_png(1500), 422, "pixels"),
        "huge.png": (png_bytes(noisy), 413, "limit"),
    }
    for name, (data, status, words) in cases.items():
        answer = client.post("/models/base/predict", files=parts([good, (name, data)]))
        assert answer.status_code == status, (name, answer.text)
        detail = answer.json()["detail"]
        assert isinstance(detail, str) and name in detail and words in detail
    answer = client.post("/models/base/predict?skip_unreadable=true&include=",
                         files=parts([good, ("junk.png", b"junk"), ("bomb.png", bomb_png(1500))]))
    body = answer.json()
    assert answer.status_code == 200 and [r["file"] for r in body["results"]] == ["normal.png"]
    assert [e["file"] for e in body["errors"]] == ["junk.png", "bomb.png"]
    too_many = client.post("/models/base/predict", files=parts([good] * 9))
    assert too_many.status_code == 413 and "9 files" in too_many.json()["detail"]
    assert client.post("/models/base/predict").status_code == 422
    assert client.get("/health").status_code == 200


def test_upload_file_names_are_never_paths(service, images):
    client, models, _ = service
    before = sorted(p.relative_to(models) for p in models.rglob("*"))
    answer = client.post("/models/base/predict?include=",
                         files=parts([("../../../escape.png", png_bytes(images["arrays"]["normal.png"]))]))
    assert answer.json()["results"][0]["file"] == "../../../escape.png"
    assert sorted(p.relative_to(models) for p in models.rglob("*")) == before
    assert not (models.parent / "escape.png").exists()


# ---------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["a b", "x" * 65, ".hidden", "%2E%2E", "caf%C3%A9", "a%2Fb", "semi;colon", "a%00b"])
def test_bad_model_names_are_refused(service, images, name):
    client, models, _ = service
    before = sorted(p.name for p in models.parent.iterdir())
    for answer in (client.post(f"/models/{name}", files=parts(list(images["references"].items())[:1])),
                   client.post(f"/models/{name}/predict", files=parts([("x.png", b"x")])),
                   client.get(f"/models/{name}"), client.delete(f"/models/{name}")):
        assert 400 <= answer.status_code < 500, (name, answer.status_code)
    assert sorted(p.name for p in models.parent.iterdir()) == before, "nothing written outside the models folder"


def test_name_rule():
    from vandal.serve.errors import ServiceError
    from vandal.serve.store import check_name

    for good in ("bottle", "Line_3.v2-a", "x" * 64, "a..b"):
        assert check_name(good) == good
    for bad in ("", ".", "..", ".vandal-serve", "x" * 65, "a/b", "a\\b", "caf\u00e9", "a\nb"):
        with pytest.raises(ServiceError) as caught:
            check_name(bad)
        assert caught.value.status == 422 and "1-64" in caught.value.detail


def test_a_link_leading_out_of_the_folder_is_not_a_model(service, tmp_path):
    client, models, _ = service
    outside = tmp_path / "elsewhere"
    Detector.load(str(models / "base"), device="cpu", progress=False).save(str(outside))
    (models / "linked").symlink_to(outside, target_is_directory=True)
    try:
        assert "linked" not in [m["name"] for m in client.get("/models").json()["models"]]
        assert client.get("/models/linked").status_code == 403
        assert client.delete("/models/linked").status_code == 403
        assert outside.is_dir()
    finally:
        (models / "linked").unlink()


# ---------------------------------------------------------------------------- create, references, delete


def test_create_conflict_overwrite_settings_and_delete(service, images):
    client, models, _ = service
    refs = parts(list(images["references"].items())[:2])
    assert client.post("/models/temp", files=refs, data={"settings": FIT_SETTINGS}).status_code == 201
    again = client.post("/models/temp", files=refs, data={"settings": FIT_SETTINGS})
    assert again.status_code == 409 and "overwrite=true" in again.json()["detail"]
    replaced = client.post("/models/temp?overwrite=true", files=refs[:1],
                           data={"settings": json.dumps({"image_size": 64, "neighbourhood": [1]})})
    assert replaced.status_code == 201 and replaced.json()["references"] == 1
    assert replaced.json()["settings"]["memory.neighbourhood"] == [1]
    assert sorted(p.name for p in (models / "temp").iterdir()) == ["detector.json", "tensors.safetensors"]
    assert client.delete("/models/temp").status_code == 204
    assert client.get("/models/temp").status_code == 404 and not (models / "temp").exists()
    assert client.delete("/models/temp").status_code == 404


@pytest.mark.parametrize("form, words", [
    ({"settings": '{"imagesize": 64}'}, ["settings", "imagesize", "image_size"]),
    ({"settings": "[1, 2]"}, ["settings", "JSON object"]),
    ({"settings": "{not json"}, ["settings", "JSON"]),
    ({"settings": '{"neighbourhood": [2]}'}, ["settings", "memory.neighbourhood"]),
    ({"preset": "no-such-preset"}, ["preset", "no-such-preset", "mmc-few-shot"]),
    ({"settings": '{"backbone": "/etc"}'}, ["settings", "backbone.name", "path"]),
    ({"settings": '{"adapters": "weights.safetensors"}'}, ["settings", "text.adapters"]),
])
def test_bad_fit_options_are_422_naming_the_field(service, images, form, words):
    client, models, _ = service
    answer = client.post("/models/options", files=parts(list(images["references"].items())[:1]), data=form)
    assert answer.status_code == 422, answer.text
    assert all(word in answer.json()["detail"] for word in words), answer.json()["detail"]
    assert not (models / "options").exists()


def test_folders_that_are_not_bundles_are_never_replaced(service, images):
    client, models, _ = service
    (models / "notes").mkdir()
    (models / "notes" / "mine.txt").write_text("a user's file")
    refs = parts(list(images["references"].items())[:1])
    for query in ("", "?overwrite=true"):
        answer = client.post(f"/models/notes{query}", files=refs, data={"settings": FIT_SETTINGS})
        assert answer.status_code == 409 and "not a model bundle" in answer.json()["detail"]
    assert client.delete("/models/notes").status_code == 404
    assert (models / "notes" / "mine.txt").read_text() == "a user's file"
    assert "notes" not in [m["name"] for m in client.get("/models").json()["models"]]


def test_a_model_named_like_an_exported_file_is_still_a_bundle(service, images):
    client, _, _ = service
    refs = parts(list(images["references"].items())[:1])
    assert client.post("/models/line.onnx", files=refs, data={"settings": FIT_SETTINGS}).status_code == 201
    answer = predict(client, "line.onnx", {"normal.png": images["arrays"]["normal.png"]}, "?include=")
    assert answer.status_code == 200, answer.text
    assert client.delete("/models/line.onnx").status_code == 204


def test_a_failed_fit_keeps_nothing(service, images):
    client, models, _ = service
    answer = client.post("/models/failing", files=parts(list(images["references"].items())[:1]),
                         data={"settings": '{"backbone": "no-such-backbone"}'})
    assert answer.status_code == 422 and "no-such-backbone" in answer.json()["detail"]
    assert sorted(p.name for p in models.iterdir() if "failing" in p.name) == []
    uncached = client.post("/models/failing", files=parts(list(images["references"].items())[:1]),
                           data={"settings": '{"backbone": "vandal-tests/no-such-clip"}'})
    assert uncached.status_code == 422 and "vandal-tests/no-such-clip" in uncached.json()["detail"], uncached.text
    corrupt = client.post("/models/failing", files=parts([("ref.png", b"junk")]), data={"settings": FIT_SETTINGS})
    assert corrupt.status_code == 422 and "ref.png" in corrupt.json()["detail"]
    assert not (models / "failing").exists()


def test_add_references_grows_the_model_as_the_library_does(service, images):
    client, models, _ = service
    refs = list(images["references"].items())
    assert client.post("/models/grow", files=parts(refs[:2]), data={"settings": FIT_SETTINGS}).status_code == 201
    expected = Detector.load(str(models / "grow"), device="cpu", progress=False)
    added = client.post("/models/grow/references", files=parts(refs[2:]))
    assert added.status_code == 200 and added.json()["references"] == 3
    expected.add_references([np.asarray(Image.open(io.BytesIO(refs[2][1])).convert("RGB"))])
    arrays = images["arrays"]
    scores = [r["pred_score"] for r in predict(client, "grow", arrays, "?include=").json()["results"]]
    assert scores == pytest.approx([p.pred_score for p in expected.predict(list(arrays.values()))], rel=1e-6)
    reloaded = Detector.load(str(models / "grow"), device="cpu", progress=False)  # saved, not only in memory
    assert reloaded.n_references_ == 3
    assert client.post("/models/missing/references", files=parts(refs[:1])).status_code == 404


def test_a_bundle_rewritten_outside_the_service_is_reloaded(service, images):
    client, models, _ = service
    refs = list(images["references"].items())
    assert client.post("/models/outside", files=parts(refs[:1]), data={"settings": FIT_SETTINGS}).status_code == 201
    arrays = {"normal.png": images["arrays"]["normal.png"]}
    first = predict(client, "outside", arrays, "?include=").json()["results"][0]["pred_score"]
    other = Detector(image_size=64, neighbourhood=(1,), device="cpu", progress=False).fit([texture(50, 80)])
    other.save(str(models / "outside"))  # e.g. `vandal fit --out DIR/outside` while the server runs
    second = predict(client, "outside", arrays, "?include=").json()["results"][0]["pred_score"]
    assert second == pytest.approx(other.predict([arrays["normal.png"]])[0].pred_score, rel=1e-6)
    assert second != pytest.approx(first, rel=1e-3)


def test_damaged_bundles_are_listed_with_their_error(service):
    client, models, _ = service
    broken = models / "broken"
    broken.mkdir()
    (broken / "detector.json").write_text(json.dumps({"format": "vandal-detector", "format_version": 2}))
    (broken / "tensors.safetensors").write_bytes(b"")
    try:
        listed = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert "error" in listed["broken"] and "base" in listed and "error" not in listed["base"]
        answer = predict(client, "broken", {"x.png": texture(1, 64)})
        assert answer.status_code == 409 and "broken" in answer.json()["detail"]
        assert str(models) not in answer.json()["detail"], "server paths stay private"
    finally:
        for path in broken.iterdir():
            path.unlink()
        broken.rmdir()


# ---------------------------------------------------------------------------- metrics


def test_metrics_count_requests_errors_latency_and_images(service, images):
    client, _, _ = service
    before = client.get("/metrics").text
    scored = int(next(line.split()[1] for line in before.splitlines() if line.startswith("vandal_images_scored_total")))
    predict(client, "base", images["arrays"], "?include=")
    client.get("/models/nope")
    text = client.get("/metrics").text
    assert "# TYPE vandal_requests_total counter" in text
    assert 'vandal_requests_total{endpoint="/models/{name}/predict",method="POST",status="200"}' in text
    assert 'vandal_request_errors_total{endpoint="/models/{name}",method="GET"}' in text
    assert 'vandal_request_duration_seconds_bucket{endpoint="/models/{name}/predict",le="+Inf"}' in text
    assert f"vandal_images_scored_total {scored + len(images['arrays'])}" in text
    assert "vandal_queue_active 0" in text and "vandal_models_cached" in text
    assert "/models/nope" not in text, "endpoints are route templates, not raw paths"
