import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests' own helper modules (synthetic, clip_fixtures)
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

SHARED_BOTTLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_ad" / "bottle"


@pytest.fixture(scope="session")
def textures():
    """Two defect-free references and four test images with planted defects (+ masks)."""
    from synthetic import plant_defect, texture

    references = [texture(seed) for seed in (0, 1)]
    tests = [plant_defect(texture(10 + i), i) for i in range(4)]
    return references, tests


@pytest.fixture(scope="session")
def fitted_detector(textures):
    from vandal.detector import Detector

    references, _ = textures
    return Detector(progress=False).fit(references)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for modules of tiny ops: on a busy 2-core machine a second thread
    spin-waits and tiny ops run up to ~100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on a loopback port -> its URL. In CI (``CI=true``) the tests that
    need it must run: they fail there, and skip on a machine without the server."""
    import os

    from pg_server import Unavailable, temporary_postgres

    try:
        server = temporary_postgres()
        url = server.__enter__()
    except Unavailable as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL test server: {error}")
        pytest.skip(f"PostgreSQL test server: {error}")
    yield url
    server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium through Playwright, one for all the page tests. Skipped when playwright or the
    browser is missing, unless VANDAL_REQUIRE_BROWSER=1 (``.ci/run`` sets it): then they fail."""
    import os

    from serve_helpers import CHROMIUM, CHROMIUM_ARGS

    def unavailable(reason: str) -> None:
        if os.environ.get("VANDAL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required (VANDAL_REQUIRE_BROWSER=1) but {reason}")
        pytest.skip(reason)

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set VANDAL_CHROMIUM)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
