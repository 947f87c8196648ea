"""The inspection page in a real browser: Playwright driving Debian's Chromium against a real server.

The ``browser`` fixture (conftest.py) skips when playwright or the browser is missing, unless
VANDAL_REQUIRE_BROWSER=1 (``.ci/run`` sets it), which turns the skip into a failure.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest

from serve_helpers import running_server, save_pngs
from synthetic import plant_defect, texture

pytestmark = pytest.mark.usefixtures("one_thread")
SCREENSHOTS = Path(os.environ.get("VANDAL_SCREENSHOTS", "")) if os.environ.get("VANDAL_SCREENSHOTS") else None


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("page")
    references = save_pngs(root / "good", {f"good{i}.png": texture(i, 96) for i in range(3)})
    defects = {f"defect{i}.png": plant_defect(texture(20 + i, 96), i, radius=12)[0] for i in range(2)}
    normals = {f"normal{i}.png": texture(40 + i, 96) for i in range(2)}
    tests = save_pngs(root / "test", {**defects, **normals})
    junk = root / "test" / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    return {"references": references, "tests": tests, "junk": junk}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from vandal.serve import create_app

    app = create_app(models=tmp_path_factory.mktemp("models"), device="cpu")
    with running_server(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def page(browser, server, files):
    """One page through the whole flow: created from the page, then reused by the later tests."""
    url, app = server
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    violations: list[str] = []  # the server's Content-Security-Policy refused something the page does
    tab.on("console", lambda message: violations.append(message.text)
           if "Content Security Policy" in message.text else None)
    tab.goto(url + "/")
    tab.get_by_test_id("model-name").fill("page-model")
    tab.get_by_test_id("reference-files").set_input_files([str(p) for p in files["references"]])
    tab.get_by_test_id("create-model").click()
    tab.get_by_test_id("test-files").wait_for(state="attached")
    tab.wait_for_function("() => !document.getElementById('test-panel').hidden", timeout=60_000)
    yield tab
    context.close()
    assert not violations, violations


def cards(tab) -> list[dict]:
    return tab.eval_on_selector_all('[data-testid="result-card"]', """cards => cards.map(card => ({
        file: card.dataset.file, score: Number(card.dataset.score), label: card.dataset.label}))""")


def test_create_a_model_from_the_page(page, server):
    url, app = server
    assert "page-model" in app.state.store.names()
    summary = app.state.store.summary("page-model")
    assert summary["references"] == 3
    assert page.locator("#model-select").input_value() == "page-model"
    assert page.get_by_test_id("test-files").is_enabled()


def test_score_files_shows_sorted_cards_with_the_service_verdicts(page, files, server):
    _, app = server
    page.get_by_test_id("test-files").set_input_files([str(p) for p in files["tests"]])
    page.wait_for_function("() => document.querySelectorAll('[data-testid=result-card]').length === 4",
                           timeout=60_000)
    shown = cards(page)
    assert [c["score"] for c in shown] == sorted((c["score"] for c in shown), reverse=True)
    assert {c["file"] for c in shown} == {p.name for p in files["tests"]}
    detector = app.state.store.detector("page-model")
    from vandal.data.images import load_image

    expected = {p.name: detector.predict([load_image(p)])[0] for p in files["tests"]}
    for card in shown:
        assert card["score"] == pytest.approx(expected[card["file"]].pred_score, rel=1e-6)
        assert card["label"] == str(bool(expected[card["file"]].pred_label)).lower()
    assert {c["file"] for c in shown if c["label"] == "true"} == {"defect0.png", "defect1.png"}
    if SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "page-results.png"), full_page=True)


def test_the_threshold_slider_relabels_without_asking_the_server(page):
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    slider = page.get_by_test_id("threshold")
    shown = cards(page)
    middle = (shown[1]["score"] + shown[2]["score"]) / 2  # between the 2nd and 3rd highest scores

    def move(value: float) -> None:
        slider.evaluate("(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', {bubbles: true})); }",
                        value)

    move(float(slider.get_attribute("max")))
    assert all(c["label"] == "false" for c in cards(page))
    move(0)
    assert all(c["label"] == "true" for c in cards(page))
    move(middle)
    labels = [c["label"] for c in cards(page)]
    assert labels == ["true", "true", "false", "false"]
    assert "2 anomalous, 2 normal of 4" in page.get_by_test_id("counts").inner_text()
    assert not [u for u in requests if "/predict" in u], "relabelling is done in the browser"
    move(0.5)


def test_viewer_toggles_original_heat_map_and_mask(page):
    page.get_by_test_id("result-card").first.click()
    viewer, image = page.get_by_test_id("viewer"), page.get_by_test_id("viewer-image")
    assert viewer.is_visible()
    sources = {}
    for view in ("original", "overlay", "map", "mask"):
        page.locator(f'.tabs button[data-view="{view}"]').click()
        sources[view] = image.get_attribute("src")
    assert sources["original"].startswith("blob:") and len(set(sources.values())) == 4
    assert all(sources[v].startswith("data:image/png;base64,") for v in ("overlay", "map", "mask"))
    assert image.evaluate("el => el.naturalWidth") == 96, "full size: the image's own pixels"
    page.locator("#viewer-close").click()
    assert not viewer.is_visible()


def test_csv_download_lists_what_is_shown(page):
    with page.expect_download() as download:
        page.get_by_test_id("download-csv").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["file"] for r in rows] == [c["file"] for c in cards(page)]
    assert [r["pred_label"] for r in rows] == [c["label"] for c in cards(page)]
    assert {r["model"] for r in rows} == {"page-model"}


def test_a_corrupt_file_is_reported_by_name_and_the_rest_scored(page, files):
    page.locator("#clear-results").click()
    page.get_by_test_id("test-files").set_input_files([str(files["junk"]), str(files["tests"][0])])
    page.wait_for_function("() => document.querySelector('[data-testid=error]').textContent.includes('junk.png')",
                           timeout=60_000)
    page.wait_for_function("() => document.querySelectorAll('[data-testid=result-card]').length === 1",
                           timeout=60_000)
    assert "cannot decode" in page.get_by_test_id("error").inner_text()
    assert [c["file"] for c in cards(page)] == [files["tests"][0].name]


def test_a_folder_is_scored_and_its_non_images_ignored(page, files, tmp_path):
    folder = tmp_path / "batch"
    save_pngs(folder / "inner", {"nested.png": texture(60, 96)})
    save_pngs(folder, {"top.png": texture(61, 96)})
    (folder / "notes.txt").write_text("not an image")
    page.locator("#clear-results").click()
    page.locator("#test-folder").set_input_files(str(folder))
    page.wait_for_function("() => document.querySelectorAll('[data-testid=result-card]').length === 2",
                           timeout=60_000)
    assert sorted(c["file"] for c in cards(page)) == ["batch/inner/nested.png", "batch/top.png"]
    assert "ignored 1 file(s)" in page.get_by_test_id("error").inner_text()


def test_a_bad_model_name_is_refused_on_the_page(page, server):
    _, app = server
    page.locator("#create-panel").evaluate("el => el.open = true")
    page.get_by_test_id("model-name").fill("../escape")
    page.get_by_test_id("create-model").click()
    assert "not allowed" in page.get_by_test_id("error").inner_text()
    assert app.state.store.names() == ["page-model"]
