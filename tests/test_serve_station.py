"""The inspection station through FastAPI's TestClient on a real SQLite file: keys and roles (the
poisoning request), inspection records, reviews, stats, versions and rollback, references from
reviewed inspections, audit, the browser guards, bounded metrics, and the red-team's damaged inputs."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

import numpy as np
import pytest

from serve_helpers import FIT_SETTINGS, parts, png_bytes
from synthetic import plant_defect, texture

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("sqlalchemy")
pytestmark = pytest.mark.usefixtures("one_thread")

BASE = "http://127.0.0.1"


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    from fastapi.testclient import TestClient

    from vandal.serve import create_app
    from vandal.serve.db import keys

    models = tmp_path_factory.mktemp("station")
    app = create_app(models=models, device="cpu", max_pixels=2_000_000, keep_images=1, max_request_pixels=100_000)
    client = TestClient(app, base_url=BASE)
    references = parts([(f"ref{i}.png", png_bytes(texture(i, 72))) for i in range(3)])
    created = client.post("/models/victim", files=references, data={"settings": FIT_SETTINGS})
    assert created.status_code == 201, "open while no key exists (loopback)"
    assert created.json()["version"] == 1
    headers = {}
    with app.state.station.db.begin() as conn:
        for role in keys.ROLES:
            headers[role] = {"Authorization": f"Bearer {keys.add_key(conn, role + '-key', role)[1]}"}
    defect = plant_defect(texture(40, 72), 1, radius=12)[0]
    return SimpleNamespace(client=client, app=app, models=models, keys=headers, defect=defect,
                           normal=texture(41, 72))


def predict(station, arrays, role="inspector", query="?include=overlay_png", model="victim"):
    files = parts([(name, png_bytes(array)) for name, array in arrays.items()])
    return station.client.post(f"/models/{model}/predict{query}", files=files, headers=station.keys[role])


# ---------------------------------------------------------------------------- access control


def test_the_poisoning_request_needs_an_admin_key(station):
    files = parts([("defect.png", png_bytes(station.defect))])
    anonymous = station.client.post("/models/victim/references", files=files)
    assert anonymous.status_code == 401 and "Authorization: Bearer" in anonymous.json()["detail"]
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    for role in ("viewer", "inspector"):
        refused = station.client.post("/models/victim/references", files=files, headers=station.keys[role])
        assert refused.status_code == 403 and role in refused.json()["detail"] and "admin" in refused.json()["detail"]
    wrong = station.client.post("/models/victim/references", files=files,
                                headers={"Authorization": "Bearer vandal_000000000000_" + "x" * 43})
    assert wrong.status_code == 401
    assert station.client.get("/models/victim", headers=station.keys["viewer"]).json()["references"] == 3


def test_roles_read_predict_and_change(station):
    client, keys = station.client, station.keys
    assert client.get("/models").status_code == 401
    assert client.get("/models", headers=keys["viewer"]).status_code == 200
    assert predict(station, {"n.png": station.normal}, role="viewer").status_code == 403
    assert predict(station, {"n.png": station.normal}, role="inspector").status_code == 200
    assert client.delete("/models/victim", headers=keys["inspector"]).status_code == 403
    assert client.get("/me", headers=keys["viewer"]).json() == {"name": "viewer-key", "role": "viewer",
                                                               "keys_required": True}
    assert client.get("/audit", headers=keys["inspector"]).status_code == 403
    assert client.get("/health").status_code == 200 and client.get("/").status_code == 200, "no key for these"


def test_admins_manage_keys_over_http(station):
    client, admin = station.client, station.keys["admin"]
    made = client.post("/keys", json={"name": "camera-2", "role": "inspector"}, headers=admin)
    assert made.status_code == 201 and made.json()["role"] == "inspector"
    headers = {"Authorization": f"Bearer {made.json()['key']}"}
    assert client.get("/me", headers=headers).json()["name"] == "camera-2"
    listed = client.get("/keys", headers=admin).json()["keys"]
    assert "camera-2" in [k["name"] for k in listed] and all("key" not in k for k in listed)
    assert client.post("/keys", json={"name": "camera-2", "role": "admin"}, headers=admin).status_code == 409
    assert client.get("/keys", headers=station.keys["inspector"]).status_code == 403
    assert client.delete("/keys/camera-2", headers=admin).status_code == 204
    assert client.get("/me", headers=headers).status_code == 401
    assert client.delete("/keys/camera-2", headers=admin).status_code == 404
    actions = [(e["action"], e["target"]) for e in client.get("/audit", headers=admin).json()["audit"]]
    assert ("key.add", "camera-2") in actions and ("key.revoke", "camera-2") in actions


def test_a_revoked_key_is_refused_at_once(station):
    from vandal.serve.db import keys

    with station.app.state.station.db.begin() as conn:
        _, key = keys.add_key(conn, "temp", "viewer")
    headers = {"Authorization": f"Bearer {key}"}
    assert station.client.get("/models", headers=headers).status_code == 200
    with station.app.state.station.db.begin() as conn:
        keys.revoke_key(conn, "temp")
    assert station.client.get("/models", headers=headers).status_code == 401


# ---------------------------------------------------------------------------- browser guards


def test_cross_origin_changes_and_foreign_hosts_are_refused(station):
    client, admin = station.client, station.keys["admin"]
    files = parts([("defect.png", png_bytes(station.defect))])
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        refused = client.post("/models/victim/references", files=files, headers={**admin, **headers})
        assert refused.status_code == 403 and "cross-origin" in refused.json()["detail"]
    rebound = client.get("/models", headers={**admin, "Host": "evil.example"})
    assert rebound.status_code == 421 and "--allowed-host" in rebound.json()["detail"]
    same = client.get("/models", headers={**admin, "Origin": BASE})
    assert same.status_code == 200
    page = client.get("/")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["X-Content-Type-Options"] == "nosniff"


def test_metrics_labels_stay_bounded(station):
    client = station.client
    for i in range(200):
        client.request(f"{'X' * 8192}{i}", f"/models/{'n' * 200}{i}")
    text = client.get("/metrics").text
    assert len(text) < 20_000 and "XXXX" not in text
    assert 'method="other"' in text


def test_the_pixel_budget_counts_the_whole_request(station):
    files = {f"{i}.png": texture(i, 200) for i in range(3)}  # 3 x 40,000 pixels, above the 100,000 budget
    refused = predict(station, files)
    assert refused.status_code == 413 and "2.png" in refused.json()["detail"]
    assert "--max-request-pixels" in refused.json()["detail"]


# ---------------------------------------------------------------------------- records


def test_each_scored_image_is_a_record(station):
    client, viewer = station.client, station.keys["viewer"]
    answer = predict(station, {"defect.png": station.defect, "normal.png": station.normal})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    ids = [r["inspection_id"] for r in results]
    page = client.get("/inspections", params={"model": "victim", "limit": 2}, headers=viewer).json()
    assert set(page) == {"inspections", "next"}
    assert [r["id"] for r in page["inspections"]] == ids[::-1], "newest first"
    newest = page["inspections"][0]
    assert {"id", "time", "model", "version", "file", "sha256", "pred_score", "pred_label", "verdict"} <= set(newest)
    assert newest["file"] == "normal.png" and newest["model"] == "victim" and newest["verdict"] is None
    assert newest["pred_score"] == results[1]["pred_score"] and newest["key"] == "inspector-key"
    assert newest["version"] == client.get("/models/victim", headers=viewer).json()["version"]
    assert newest["image_threshold"] == 0.5 and newest["width"] == 72
    image = client.get(f"/inspections/{ids[1]}/image", headers=viewer)
    assert image.status_code == 200 and image.content == png_bytes(station.normal)
    assert image.headers["content-type"] == "image/png"
    import base64

    overlay = client.get(f"/inspections/{ids[0]}/overlay", headers=viewer)
    assert overlay.content == base64.b64decode(results[0]["overlay_png"])
    one = client.get(f"/inspections/{ids[0]}", headers=viewer).json()
    assert one["file"] == "defect.png" and one["reviews"] == []
    assert client.get("/inspections/999999", headers=viewer).status_code == 404


def test_listing_filters_cursor_and_csv(station):
    client, viewer = station.client, station.keys["viewer"]
    predict(station, {f"n{i}.png": texture(50 + i, 72) for i in range(3)}, query="?include=")
    seen, cursor = [], None
    while True:
        params = {"model": "victim", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/inspections", params=params, headers=viewer).json()
        seen += [r["id"] for r in page["inspections"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) >= 3
    flagged = client.get("/inspections", params={"label": "true"}, headers=viewer).json()["inspections"]
    assert all(r["pred_label"] for r in flagged)
    future = client.get("/inspections", params={"since": "2999-01-01T00:00:00Z"}, headers=viewer).json()
    assert future == {"inspections": [], "next": None}
    bad = client.get("/inspections", params={"since": "yesterday"}, headers=viewer)
    assert bad.status_code == 422 and "since" in bad.json()["detail"]
    table = client.get("/inspections.csv", params={"model": "victim"}, headers=viewer)
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [int(r["id"]) for r in rows] == seen and rows[0]["model"] == "victim"
    predict(station, {"=HYPERLINK(1).png": station.normal}, query="?include=")
    table = client.get("/inspections.csv", params={"model": "victim"}, headers=viewer).text
    assert "'=HYPERLINK(1).png" in table, "file names are never formulas in a spreadsheet"


def test_records_survive_a_restart(station):
    from fastapi.testclient import TestClient

    from vandal.serve import create_app

    before = station.client.get("/inspections", headers=station.keys["viewer"]).json()["inspections"]
    again = TestClient(create_app(models=station.models, device="cpu"), base_url=BASE)
    after = again.get("/inspections", headers=station.keys["viewer"]).json()["inspections"]
    assert [r["id"] for r in after] == [r["id"] for r in before] and after


# ---------------------------------------------------------------------------- review, stats


def test_reviews_supersede_and_stats_show_them(station):
    client, keys = station.client, station.keys
    results = predict(station, {"d.png": station.defect, "n.png": station.normal}, query="?include=").json()["results"]
    flagged = next(r for r in results if r["pred_label"])["inspection_id"]
    url = f"/inspections/{flagged}/review"
    assert client.post(url, json={"verdict": "good"}, headers=keys["viewer"]).status_code == 403
    first = client.post(url, json={"verdict": "defect", "note": "scratch"}, headers=keys["inspector"])
    assert first.status_code == 201 and first.json()["key"] == "inspector-key"
    client.post(url, json={"verdict": "good", "note": "dust"}, headers=keys["inspector"])
    assert client.post(url, json={"verdict": "maybe"}, headers=keys["inspector"]).status_code == 422
    assert client.post("/inspections/999999/review", json={"verdict": "good"},
                       headers=keys["inspector"]).status_code == 404
    one = client.get(f"/inspections/{flagged}", headers=keys["viewer"]).json()
    assert one["verdict"] == "good" and [r["note"] for r in one["reviews"]] == ["scratch", "dust"]
    good = client.get("/inspections", params={"verdict": "good"}, headers=keys["viewer"]).json()["inspections"]
    assert flagged in [r["id"] for r in good]
    stats = client.get("/models/victim/stats", params={"bucket": "hour"}, headers=keys["viewer"]).json()
    assert stats["bucket"] == "hour" and stats["buckets"]
    total = stats["total"]
    assert total["scored"] >= 2 and total["flagged"] >= 1 and total["reviewed"] >= 1
    assert total["false_alarm_rate"] is not None and 0 < total["false_alarm_rate"] <= 1
    assert total["score_quantiles"]["p50"] is not None
    assert sum(stats["histogram"]["counts"]) == total["scored"]
    assert client.get("/models/victim/stats?bucket=week", headers=keys["viewer"]).status_code == 422


# ---------------------------------------------------------------------------- versions


def test_versions_references_from_reviews_and_rollback(station):
    client, keys = station.client, station.keys
    admin, viewer = keys["admin"], keys["viewer"]
    start = client.get("/models/victim", headers=viewer).json()
    results = predict(station, {"n.png": texture(60, 72), "d.png": station.defect}, query="?include=").json()["results"]
    normal_id, defect_id = results[0]["inspection_id"], results[1]["inspection_id"]
    refused = client.post("/models/victim/references", json={"inspection_ids": [normal_id]}, headers=admin)
    assert refused.status_code == 422 and "not reviewed" in refused.json()["detail"]
    client.post(f"/inspections/{defect_id}/review", json={"verdict": "defect"}, headers=keys["inspector"])
    refused = client.post("/models/victim/references", json={"inspection_ids": [defect_id]}, headers=admin)
    assert refused.status_code == 422 and "defect" in refused.json()["detail"]
    client.post(f"/inspections/{normal_id}/review", json={"verdict": "good"}, headers=keys["inspector"])
    grown = client.post("/models/victim/references", json={"inspection_ids": [normal_id]}, headers=admin)
    assert grown.status_code == 200, grown.text
    assert grown.json()["references"] == start["references"] + 1 and grown.json()["version"] == start["version"] + 1
    listed = client.get("/models/victim/versions", headers=viewer).json()["versions"]
    assert listed[0]["version"] == grown.json()["version"] and listed[0]["action"] == "references"
    assert listed[0]["by"] == "admin-key" and listed[-1]["version"] == 1 and listed[-1]["action"] == "create"
    rescored = predict(station, {"n.png": texture(60, 72)}, query="?include=").json()["results"][0]
    record = client.get(f"/inspections/{rescored['inspection_id']}", headers=viewer).json()
    assert record["version"] == grown.json()["version"], "predictions record the version that scored"

    assert client.post("/models/victim/rollback", json={"version": 1}, headers=keys["inspector"]).status_code == 403
    rolled = client.post("/models/victim/rollback", json={"version": 1}, headers=admin)
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["references"] == 3 and rolled.json()["version"] == grown.json()["version"] + 1
    back = predict(station, {"n.png": texture(60, 72)}, query="?include=").json()["results"][0]
    assert back["pred_score"] != pytest.approx(rescored["pred_score"], rel=1e-6), "the old memory scores again"
    assert client.post("/models/victim/rollback", json={"version": 99}, headers=admin).status_code == 404
    actions = [e["action"] for e in client.get("/audit", headers=admin).json()["audit"]]
    assert {"model.rollback", "model.references", "inspection.review", "model.create"} <= set(actions)


# ---------------------------------------------------------------------------- red-team inputs


def test_a_deeply_nested_bundle_is_one_models_problem(station):
    broken = station.models / "nested"
    broken.mkdir()
    (broken / "detector.json").write_text("[" * 200_000 + "]" * 200_000)
    (broken / "tensors.safetensors").write_bytes(b"")
    listed = station.client.get("/models", headers=station.keys["viewer"])
    assert listed.status_code == 200
    names = {m["name"]: m for m in listed.json()["models"]}
    assert "victim" in names and "error" not in names["victim"]
    assert "damaged" in names["nested"]["error"]
    answer = predict(station, {"n.png": station.normal}, model="nested")
    assert answer.status_code == 409 and "nested" in answer.json()["detail"]
    assert station.client.delete("/models/nested", headers=station.keys["admin"]).status_code == 204


def test_a_one_pixel_image_is_skipped_by_name(station):
    tiny = np.zeros((1, 1, 3), np.uint8)
    answer = predict(station, {"tiny.png": tiny, "n.png": station.normal}, query="?include=&skip_unreadable=true")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [r["file"] for r in body["results"]] == ["n.png"]
    assert body["errors"][0]["file"] == "tiny.png" and "tiny.png" in body["errors"][0]["detail"]


def test_a_bundle_with_an_empty_memory_is_reported_as_damaged(station):
    from safetensors.numpy import load_file, save_file

    from vandal.detector import Detector

    path = station.models / "hollow"
    Detector(image_size=64, device="cpu", progress=False).fit([texture(0, 64)]).save(str(path))
    tensors = load_file(str(path / "tensors.safetensors"))
    save_file({key: value[:0] if key.startswith("memory.") else value for key, value in tensors.items()},
              str(path / "tensors.safetensors"))
    answer = predict(station, {"n.png": station.normal}, model="hollow")
    assert answer.status_code == 409, answer.text  # the server's bundle, not the client's request
    assert "hollow" in answer.json()["detail"] and "damaged" in answer.json()["detail"]


def test_overwrite_and_delete_are_versions_and_audited(station):
    client, admin = station.client, station.keys["admin"]
    references = parts([(f"r{i}.png", png_bytes(texture(70 + i, 72))) for i in range(2)])
    first = client.post("/models/temp", files=references, data={"settings": FIT_SETTINGS}, headers=admin).json()
    second = client.post("/models/temp?overwrite=true", files=references, data={"settings": FIT_SETTINGS},
                         headers=admin)
    assert second.status_code == 201 and second.json()["version"] == first["version"] + 1
    assert client.get("/models/temp/versions", headers=admin).json()["versions"][0]["action"] == "overwrite"
    assert client.delete("/models/temp", headers=admin).status_code == 204
    assert len(client.get("/models/temp/versions", headers=admin).json()["versions"]) == 2, "history stays"
    audit = [(e["action"], e["target"], e["actor"]) for e in client.get("/audit", headers=admin).json()["audit"]]
    assert ("model.delete", "temp", "admin-key") in audit and ("model.overwrite", "temp", "admin-key") in audit


def test_the_api_docs_name_every_station_route_and_the_key(station):
    spec = station.client.get("/openapi.json").json()
    assert {"/inspections", "/inspections.csv", "/inspections/{inspection_id}", "/inspections/{inspection_id}/image",
            "/inspections/{inspection_id}/overlay", "/inspections/{inspection_id}/review", "/models/{name}/stats",
            "/models/{name}/versions", "/models/{name}/rollback", "/audit", "/me", "/keys"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    references = spec["paths"]["/models/{name}/references"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(references)


def test_a_database_that_goes_away_is_a_503_not_a_crash(tmp_path):
    from fastapi.testclient import TestClient
    from sqlalchemy.exc import OperationalError

    from vandal.serve import create_app

    app = create_app(models=tmp_path, device="cpu")
    client = TestClient(app, base_url=BASE)

    def unreachable() -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    app.state.station.db.connect = unreachable  # as a PostgreSQL server restarting would answer
    answer = client.get("/inspections")
    assert answer.status_code == 503 and "database is unavailable" in answer.json()["detail"]
    assert answer.headers["Retry-After"] == "5"
