"""Webhooks against a real HTTP receiver on loopback: signed deliveries, retries with backoff, failures
visible over the API, only_flagged, and a receiver that hangs never slowing a prediction."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading

import pytest

from vandal.detector import Detector
from vandal.serve.errors import ServiceError
from vandal.serve.store import SERVICE_DIR
from vandal.serve.webhooks import WebhookRegistry, check_url, public, sign

from serve_helpers import Receiver, free_port, running_server, score_texture, wait_for
from synthetic import texture

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fitted_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    Detector(image_size=64, device="cpu", progress=False).fit([texture(0, 64)]).save(str(folder / "line"))
    return folder


@pytest.fixture
def model_folder(fitted_folder):
    """The module's model, with no webhooks (each test adds its own)."""
    yield fitted_folder
    (fitted_folder / SERVICE_DIR / "webhooks.json").unlink(missing_ok=True)


def serve(folder, **options):
    from vandal.serve import create_app

    options = {"webhook_backoff": 0.05, "webhook_timeout": 2.0, **options}
    return running_server(create_app(models=folder, device="cpu", **options))


def predict(url: str, seed: int = 5, threshold: float | None = None) -> dict:
    return score_texture(url, seed, "part", threshold)


def hooks(url: str) -> list[dict]:
    answer = httpx.get(f"{url}/models/line/webhooks", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["webhooks"]


def test_deliveries_are_signed_and_retried_with_backoff(model_folder):
    with Receiver(fail_first=2) as receiver, serve(model_folder) as url:
        created = httpx.post(f"{url}/models/line/webhooks", json={"url": receiver.url}, timeout=10)
        assert created.status_code == 201, created.text
        hook = created.json()
        secret = hook["secret"]
        assert len(secret) >= 32 and hook["only_flagged"] is False
        result = predict(url)
        wait_for(lambda: hooks(url)[0]["deliveries"]["delivered"] == 1, what="the delivery after two 503s")
        listed = hooks(url)
        assert "secret" not in listed[0], "the secret is shown once, at creation"
        deliveries = listed[0]["deliveries"]
        assert deliveries["retried"] == 2 and deliveries["failed"] == 0 and deliveries["pending"] == 0
        assert deliveries["last_status"] == 200 and deliveries["last_error"] is None
        httpx.delete(f"{url}/models/line/webhooks/{hook['id']}", timeout=10).raise_for_status()
        assert hooks(url) == []
    assert len(receiver.requests) == 3
    bodies = {body for _, body in receiver.requests}
    assert len(bodies) == 1, "every attempt carries the same body"
    headers, body = receiver.requests[-1]
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Vandal-Signature"] == expected
    assert [h["X-Vandal-Attempt"] for h, _ in receiver.requests] == ["1", "2", "3"]
    assert len({h["X-Vandal-Delivery"] for h, _ in receiver.requests}) == 1, "a retry is the same delivery"
    event = json.loads(body)
    assert event["event"] == "inspection" and event["model"] == "line" and event["source"] == "api"
    assert event["file"] == "part5.png" and event["pred_score"] == result["pred_score"]
    assert event["id"] == result["inspection_id"] and len(event["sha256"]) == 64 and event["version"] >= 1
    assert not any(key.endswith("_png") for key in event)


def test_failures_are_visible_and_only_flagged_filters(model_folder):
    dead = f"http://127.0.0.1:{free_port()}/nobody"  # nothing listens there
    with Receiver() as receiver, serve(model_folder, webhook_attempts=2) as url:
        for target, only_flagged in ((dead, False), (receiver.url, True)):
            answer = httpx.post(f"{url}/models/line/webhooks", json={"url": target, "only_flagged": only_flagged},
                                timeout=10)
            assert answer.status_code == 201, answer.text
        assert predict(url, seed=6, threshold=1e6)["pred_label"] is False  # passed: not for the flagged-only hook
        assert predict(url, seed=7, threshold=1e-6)["pred_label"] is True
        wait_for(lambda: hooks(url)[0]["deliveries"]["failed"] == 2, what="both deliveries to the dead URL to fail")
        wait_for(lambda: hooks(url)[1]["deliveries"]["delivered"] == 1, what="the flagged delivery")
        dead_hook, flagged_hook = hooks(url)
    failed = dead_hook["deliveries"]
    assert failed["delivered"] == 0 and failed["retried"] == 2 and failed["last_status"] is None
    assert "Connection" in failed["last_error"] or "refused" in failed["last_error"]
    assert flagged_hook["deliveries"]["delivered"] == 1 and flagged_hook["deliveries"]["failed"] == 0
    assert [json.loads(body)["file"] for _, body in receiver.requests] == ["part7.png"]


def test_a_hanging_receiver_never_slows_predict(model_folder):
    gate = threading.Event()
    with Receiver(gate=gate) as receiver, serve(model_folder, webhook_timeout=30.0) as url:
        httpx.post(f"{url}/models/line/webhooks", json={"url": receiver.url}, timeout=10).raise_for_status()
        for seed in range(3):  # answered while the receiver holds the first delivery open
            predict(url, seed=20 + seed)
        assert receiver.requests == [] and not gate.is_set()
        gate.set()
        wait_for(lambda: hooks(url)[0]["deliveries"]["delivered"] == 3, what="the held deliveries")


def test_webhook_requests_are_checked(model_folder):
    with serve(model_folder) as url:
        for body, fragment in (({"url": "ftp://example.org/x"}, "http:// or https://"), ({}, "url"),
                               ({"url": "http://h/x", "only_flagged": "maybe"}, "only_flagged")):
            answer = httpx.post(f"{url}/models/line/webhooks", json=body, timeout=10)
            assert answer.status_code == 422 and fragment in answer.json()["detail"], answer.text
        missing = httpx.post(f"{url}/models/nope/webhooks", json={"url": "http://h/x"}, timeout=10)
        assert missing.status_code == 404
        gone = httpx.delete(f"{url}/models/line/webhooks/abc", timeout=10)
        assert gone.status_code == 404 and "GET /models/line/webhooks" in gone.json()["detail"]
        assert httpx.get(f"{url}/line", timeout=10).json() == {"webhook_deliveries_queued": 0, "mqtt": None,
                                                               "watch": []}
        assert "vandal_webhook_deliveries_queued 0" in httpx.get(f"{url}/metrics", timeout=10).text


def test_the_registry_persists_and_is_shared(tmp_path):
    first, second = WebhookRegistry(tmp_path), WebhookRegistry(tmp_path)
    hook = first.add("m", "https://receiver.example/hook", only_flagged=True)
    assert [public(h) for h in second.of("m")] == [public(hook)], "another process reads it"
    assert (tmp_path / "webhooks.json").stat().st_mode & 0o777 == 0o600, "secrets: the server's user alone"
    assert second.of("m")[0]["secret"] == hook["secret"] and second.of("other") == []
    second.remove("m", hook["id"])
    assert first.of("m") == []
    first.add("m", "http://a/b")
    first.remove_model("m")
    assert WebhookRegistry(tmp_path).of("m") == []
    with pytest.raises(ServiceError, match="no webhook"):
        first.remove("m", "missing")
    (tmp_path / "webhooks.json").write_text("{broken")
    with pytest.raises(ServiceError, match="damaged"):
        WebhookRegistry(tmp_path).of("m")


def test_signature_and_url_rules():
    assert sign("k", b"body") == "sha256=" + hmac.new(b"k", b"body", hashlib.sha256).hexdigest()
    assert check_url("http://127.0.0.1:9/x") == "http://127.0.0.1:9/x"
    for bad in ("", "http://", "http://h:99999/", "file:///etc/passwd", "http://h/a b", None):
        with pytest.raises(ServiceError):
            check_url(bad)


def test_webhooks_are_for_admins_and_audited(fitted_folder, tmp_path):
    import shutil

    from fastapi.testclient import TestClient

    from vandal.serve import create_app
    from vandal.serve.db import keys

    shutil.copytree(fitted_folder / "line", tmp_path / "line")  # keys of its own: the other tests stay open
    app = create_app(models=tmp_path, device="cpu")
    client = TestClient(app, base_url="http://127.0.0.1")
    with app.state.station.db.begin() as conn:
        headers = {role: {"Authorization": f"Bearer {keys.add_key(conn, f'{role}-hooks', role)[1]}"}
                   for role in keys.ROLES}
    body = {"url": "http://127.0.0.1:9/hook"}
    assert client.post("/models/line/webhooks", json=body).status_code == 401
    for role in ("viewer", "inspector"):
        assert client.post("/models/line/webhooks", json=body, headers=headers[role]).status_code == 403
        assert client.get("/models/line/webhooks", headers=headers[role]).status_code == 403
    assert client.get("/line").status_code == 401 and client.get("/line", headers=headers["viewer"]).status_code == 200
    made = client.post("/models/line/webhooks", json=body, headers=headers["admin"])
    assert made.status_code == 201, made.text
    gone = client.delete(f"/models/line/webhooks/{made.json()['id']}", headers=headers["admin"])
    assert gone.status_code == 204
    client.post("/models/line/webhooks", json=body, headers=headers["admin"]).raise_for_status()
    assert client.delete("/models/line", headers=headers["admin"]).status_code == 204
    assert app.state.line.webhooks.of("line") == [], "a deleted model's webhooks go with it"
    audit = client.get("/audit", headers=headers["admin"]).json()["audit"]
    assert {(e["action"], e["target"], e["actor"]) for e in audit} >= {("webhook.add", "line", "admin-hooks"),
                                                                       ("webhook.delete", "line", "admin-hooks")}
