"""The browser for tests of what people see (the reviewer console): Debian's chromium, driven by
Playwright, and a screenshot of the page when such a test fails."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}


def launch(playwright: Playwright) -> Browser:
    """Headless Debian chromium (not a browser Playwright downloads); fails the test in one
    line, never skips it, when it is not installed."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"no chromium at {CHROMIUM} for the browser tests (fix: apt-get install -y chromium)",
            pytrace=False,
        )
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)


def artifacts_dir() -> Path:
    """Where failing browser tests leave their screenshots ($OPSGATE_TEST_ARTIFACTS)."""
    return Path(os.environ.get("OPSGATE_TEST_ARTIFACTS", "/tmp/opsgate-test-artifacts"))


def save_screenshot(page: Page, test_id: str) -> Path:
    """A full-page screenshot named for the test, under `artifacts_dir()`; returns its path."""
    folder = artifacts_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", test_id).strip("_") + ".png")
    page.screenshot(path=str(path), full_page=True)
    return path
