"""The station page in a real browser: Playwright driving Debian's Chromium against a real server
with API keys and an SQLite record. Sign-in and roles, the review queue by keyboard, the model's
plots with the threshold line, learning from reviews and rolling back.

The ``browser`` fixture (conftest.py) skips when playwright or the browser is missing, unless
VANDAL_REQUIRE_BROWSER=1 (``.ci/run`` sets it), which turns the skip into a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from serve_helpers import FIT_SETTINGS, parts, png_bytes, running_server
from synthetic import plant_defect, texture

httpx = pytest.importorskip("httpx")
pytestmark = pytest.mark.usefixtures("one_thread")
SCREENSHOTS = Path(os.environ["VANDAL_SCREENSHOTS"]) if os.environ.get("VANDAL_SCREENSHOTS") else None
ROLES = ("viewer", "inspector", "admin")
MODEL = "line"


def client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    """A server with a key per role, one model and six inspections: two planted defects, four normals."""
    from vandal.serve import create_app
    from vandal.serve.db.keys import add_key

    app = create_app(models=tmp_path_factory.mktemp("station"), device="cpu")
    with app.state.station.db.begin() as conn:
        keys = {role: add_key(conn, f"{role}-1", role)[1] for role in ROLES}
    references = [(f"good{i}.png", png_bytes(texture(i, 96))) for i in range(3)]
    defects = [(f"defect{i}.png", png_bytes(plant_defect(texture(20 + i, 96), i, radius=12)[0])) for i in range(2)]
    normals = [(f"normal{i}.png", png_bytes(texture(40 + i, 96))) for i in range(4)]
    with running_server(app) as url:
        admin, inspector = client(url, keys["admin"]), client(url, keys["inspector"])
        created = admin.post(f"/models/{MODEL}", files=parts(references), data={"settings": FIT_SETTINGS})
        assert created.status_code == 201, created.text
        scored = inspector.post(f"/models/{MODEL}/predict?include=overlay_png", files=parts(defects + normals))
        assert scored.status_code == 200, scored.text
        results = {r["file"]: r for r in scored.json()["results"]}
        assert {results[f"defect{i}.png"]["pred_label"] for i in range(2)} == {True}
        yield SimpleNamespace(url=url, app=app, keys=keys, admin=admin, inspector=inspector,
                              ids={name: r["inspection_id"] for name, r in results.items()})
        admin.close()
        inspector.close()


@contextmanager
def signed_in(browser, station, role: str | None) -> Iterator:
    """A fresh tab on the page, signed in with ``role``'s key (None: not signed in); fails on any
    Content-Security-Policy violation (the server sends a strict policy)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    violations: list[str] = []
    tab.on("console", lambda message: violations.append(message.text)
           if "Content Security Policy" in message.text else None)
    tab.on("pageerror", lambda error: violations.append(f"page error: {error}"))
    tab.on("dialog", lambda dialog: dialog.accept())  # confirm() before rollback and new references
    tab.goto(station.url + "/")
    if role is not None:
        sign_in(tab, station.keys[role])
        tab.get_by_test_id("role").wait_for(state="visible")
    try:
        yield tab
    finally:
        context.close()
    assert not violations, violations


def sign_in(tab, key: str) -> None:
    tab.get_by_test_id("signin-key").fill(key)
    tab.get_by_test_id("signin-submit").click()


def shot(tab, name: str) -> None:
    if SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def rows(tab) -> list[dict]:
    return tab.eval_on_selector_all('[data-testid="inspection-row"]', """rows => rows.map(row => ({
        id: Number(row.dataset.id), verdict: row.dataset.verdict, selected: row.classList.contains("selected")}))""")


def test_sign_in_asks_for_a_key_and_offers_only_what_the_role_may_do(browser, station):
    policy = station.inspector.get("/").headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy and "script-src 'self'" in policy
    with signed_in(browser, station, None) as tab:
        tab.get_by_test_id("signin-key").wait_for(state="visible")  # the page's modules show it once loaded
        assert not tab.locator("#app").is_visible()
        sign_in(tab, "vandal_000000000000_not-a-key-of-this-station")
        tab.wait_for_function("() => document.getElementById('signin-status').textContent.includes('refused')")
        shot(tab, "station-signin")
        sign_in(tab, station.keys["viewer"])
        tab.get_by_test_id("role").wait_for(state="visible")
        assert tab.get_by_test_id("role").inner_text().lower() == "viewer"
        assert "viewer-1" in tab.get_by_test_id("who").inner_text()
        for hidden in ("#test-panel", "#delete-model", "#create-panel"):
            assert not tab.locator(hidden).is_visible(), f"{hidden} is offered to a viewer"
        # A viewer starts on the inspections (it cannot score), and cannot review them.
        tab.wait_for_function("() => document.querySelectorAll('[data-testid=inspection-row]').length > 0")
        assert tab.get_by_test_id("record").is_visible() and not tab.get_by_test_id("review-good").is_visible()
        tab.locator("#tab-score").click()
        tab.locator("#score-denied").wait_for(state="visible")
        tab.reload()  # the key stays for this tab (sessionStorage)
        tab.get_by_test_id("role").wait_for(state="visible")
        assert not tab.get_by_test_id("signin-key").is_visible()
        tab.locator("#sign-out").click()
        tab.get_by_test_id("signin-key").wait_for(state="visible")
        made = station.admin.post("/keys", json={"name": "shift-2", "role": "inspector"})
        assert made.status_code == 201, made.text
        sign_in(tab, made.json()["key"])
        tab.get_by_test_id("role").wait_for(state="visible")
        assert station.admin.delete("/keys/shift-2").status_code == 204
        tab.locator("#refresh-models").click()  # the next request with the revoked key asks for a new one
        tab.get_by_test_id("signin-key").wait_for(state="visible")
        assert "refused" in tab.get_by_test_id("signin-status").inner_text()
        sign_in(tab, station.keys["viewer"])  # another key: the page follows its role
        tab.wait_for_function("() => document.getElementById('who-role').textContent === 'viewer'")
        assert not tab.locator("#test-panel").is_visible()
        tab.goto(station.url + "/docs")  # the API docs page runs under the same policy
        tab.wait_for_function("() => document.querySelectorAll('#operations .op').length > 10")


def test_the_review_queue_by_keyboard(browser, station):
    with signed_in(browser, station, "inspector") as tab:
        tab.get_by_test_id("tab-inspections").click()
        tab.wait_for_function("() => document.querySelectorAll('[data-testid=inspection-row]').length === 6")
        queue = rows(tab)
        defects = {station.ids["defect0.png"], station.ids["defect1.png"]}
        assert {r["id"] for r in queue[:2]} == defects, "flagged first"
        assert "g good" in tab.get_by_test_id("shortcuts").inner_text()
        order = tab.evaluate("""() => import("./static/inspections.js").then(({queueOrder}) => queueOrder([
            {id: 1, pred_score: 0.1, pred_label: false, image_threshold: 0.5},
            {id: 2, pred_score: 9.0, pred_label: true, image_threshold: 0.5},
            {id: 3, pred_score: 0.45, pred_label: false, image_threshold: 0.5},
            {id: 4, pred_score: 0.55, pred_label: true, image_threshold: 0.5}]).map(r => r.id))""")
        assert order == [4, 2, 3, 1], "flagged first, then near the threshold; the least certain first"
        assert queue[0]["selected"]
        tab.keyboard.press("j")
        assert rows(tab)[1]["selected"]
        tab.keyboard.press("k")
        reviewed = {}
        for position, key, verdict in ((0, "d", "defect"), (1, "d", "defect"), (2, "g", "good")):
            assert rows(tab)[position]["selected"], "each review moves on to the next record"
            tab.keyboard.press(key)
            reviewed[queue[position]["id"]] = verdict
            tab.wait_for_function("([id, verdict]) => document.querySelector(`[data-id='${id}']`).dataset.verdict"
                                  " === verdict", arg=[queue[position]["id"], verdict])
        shot(tab, "station-review")
        for inspection, verdict in reviewed.items():
            record = station.inspector.get(f"/inspections/{inspection}").json()
            assert record["verdict"] == verdict
            assert record["reviews"][-1]["key"] == "inspector-1"
        assert tab.get_by_test_id("record-image").evaluate("el => el.naturalWidth") == 96


def test_plots_draw_the_scores_against_the_threshold_line(browser, station):
    missed = station.ids["normal3.png"]
    assert station.inspector.post(f"/inspections/{missed}/review", json={"verdict": "defect"}).status_code == 201
    threshold = station.admin.get(f"/models/{MODEL}").json()["image_threshold"]
    with signed_in(browser, station, "viewer") as tab:
        tab.get_by_test_id("tab-model").click()
        line = tab.get_by_test_id("threshold-line")
        line.wait_for(state="attached")
        assert float(line.get_attribute("data-threshold")) == pytest.approx(threshold)
        x = float(line.get_attribute("x1"))
        histogram = tab.get_by_test_id("plot-histogram")
        flagged = histogram.locator("rect.bar-flagged").evaluate_all("bars => bars.map(b => Number(b.getAttribute('x')))")
        normal = histogram.locator("rect.bar-normal").evaluate_all("bars => bars.map(b => Number(b.getAttribute('x')))")
        assert flagged and normal and min(flagged) >= x - 1 > max(normal), "bins on their side of the line"
        shares = tab.get_by_test_id("plot-flagged").locator("rect").evaluate_all(
            "bars => bars.map(b => Number(b.dataset.share))")
        buckets = station.admin.get(f"/models/{MODEL}/stats?bucket=day").json()["buckets"]
        assert shares == [pytest.approx(b["flagged"] / b["scored"]) for b in buckets] and buckets[-1]["flagged"] >= 2
        tab.get_by_test_id("plot-outcomes").locator("rect.bar-miss").first.wait_for(state="attached")
        assert "1 miss" in tab.get_by_test_id("stats-summary").inner_text()
        shot(tab, "station-plots")


def test_reviewed_good_images_become_references_and_a_rollback_restores(browser, station):
    for name in ("normal0.png", "normal1.png"):
        answer = station.inspector.post(f"/inspections/{station.ids[name]}/review", json={"verdict": "good"})
        assert answer.status_code == 201
    before = station.admin.get(f"/models/{MODEL}").json()
    with signed_in(browser, station, "admin") as tab:
        tab.get_by_test_id("tab-model").click()
        tab.wait_for_function("() => !document.querySelector('[data-testid=teach]').disabled")
        good = len(station.admin.get(f"/inspections?model={MODEL}&verdict=good").json()["inspections"])
        assert f"{good} inspection(s)" in tab.get_by_test_id("teach-count").inner_text()
        tab.get_by_test_id("teach").click()
        tab.wait_for_function("() => document.querySelector('[data-testid=teach-status]').textContent.includes('now')")
        after = station.admin.get(f"/models/{MODEL}").json()
        assert after["references"] == before["references"] + good and after["version"] > before["version"]
        tab.wait_for_function("n => document.querySelectorAll('[data-testid=version-row]').length === n",
                              arg=len(station.admin.get(f"/models/{MODEL}/versions").json()["versions"]))
        shot(tab, "station-versions")
        tab.locator(f'[data-testid=version-row][data-version="{before["version"]}"] button').click()
        tab.wait_for_function("v => document.getElementById('model-info').textContent.includes(`version ${v}`)",
                              arg=after["version"] + 1)
        restored = station.admin.get(f"/models/{MODEL}").json()
        assert restored["references"] == before["references"]
