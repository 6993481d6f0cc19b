"""The browser harness itself: Chromium renders a local page and takes a screenshot."""

from __future__ import annotations

from tests.support.browser import artifacts_dir, chromium_page


def test_chromium_renders_a_page_and_screenshots_it() -> None:
    with chromium_page() as page:
        page.set_content("<html><body><h1 id='t'>fer-bias-warehouse</h1></body></html>")
        assert page.inner_text("#t") == "fer-bias-warehouse"
        shot = artifacts_dir("browser_support") / "hello.png"
        page.screenshot(path=str(shot))
    assert shot.stat().st_size > 1000
