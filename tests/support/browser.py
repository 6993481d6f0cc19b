"""Headless Chromium for browser tests: Python Playwright driving Debian's `chromium`.

`playwright install` cannot download a browser on these machines, so the tests launch the
system Chromium by path (`FER_CHROMIUM`, else `chromium` / `chromium-browser` on PATH).
`.ci/run` installs it with apt; elsewhere the tests skip and say how to install it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Flags the machine needs: no sandbox as root, no GPU, and no background connections
# (the closed network refuses them and Chromium retries them at every start).
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
SKIP_REASON = (
    "no Chromium found (set FER_CHROMIUM or install Debian's `chromium`: "
    "`apt-get install chromium`; .ci/run does this in CI)"
)


def chromium_path() -> str | None:
    """The system Chromium to drive, or None when this machine has none."""
    configured = os.environ.get("FER_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def chromium_page(viewport: tuple[int, int] = (1400, 900)) -> Iterator[object]:
    """A Playwright page in headless Chromium; skips the test when no browser exists."""
    executable = chromium_path()
    if executable is None:
        pytest.skip(SKIP_REASON)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            yield page
        finally:
            browser.close()


def artifacts_dir(name: str) -> Path:
    """Where a browser test keeps its screenshots: `test-artifacts/<name>/` in the checkout
    (`FER_TEST_ARTIFACTS` overrides), kept after the run for a person to look at."""
    root = Path(os.environ.get("FER_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
