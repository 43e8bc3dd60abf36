"""The headless Chromium of the browser tests: a module-scoped `browser` fixture (registered in conftest's
pytest_plugins). Skips locally when Chromium or playwright is missing; fails in CI, where both must exist."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--no-first-run", "--disable-component-update"]


def require_browser():
    """playwright's sync_playwright, or skip (fail in CI) saying what is missing."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing, sync_playwright = "the playwright package is not installed", None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is not installed (apt-get install chromium)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run in CI: {missing}")
        pytest.skip(missing)
    return sync_playwright


@pytest.fixture(scope="module")
def browser():
    sync_playwright = require_browser()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
