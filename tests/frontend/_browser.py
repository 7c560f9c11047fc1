"""Browser fixtures for the campaign pages: Debian's Chromium driven by Playwright (never a downloaded browser),
1280x800 pages, each page's screenshot, HTML and console kept in tests/frontend/artifacts/ when a test fails,
and uncaught script errors failing the test."""

import pytest

from tests.frontend.conftest import VIEWPORT, ReaderPages, save_failure_artifacts


@pytest.fixture
def pages(viewer_browser, okapi_server, request):
    """Open pages with ``pages.new()`` (the session's one Chromium, tests/frontend/conftest.py); on failure
    their screenshots and HTML go to ARTIFACTS; an uncaught script error fails the test."""
    opened = ReaderPages(viewer_browser, okapi_server)
    yield opened
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        save_failure_artifacts(request.node.name, opened)
    opened.close()
    assert not opened.errors, f"uncaught script errors: {opened.errors}"


def log_in(page, username: str, password: str) -> None:
    """The login form, with the keyboard: the username field has the focus; Tab, then Enter submits."""
    from playwright.sync_api import expect

    page.goto("/accounts/login/")
    expect(page.locator("#id_username")).to_be_focused()  # autofocus lands once the page has rendered
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: "/accounts/login" not in url)


def no_horizontal_scroll(page) -> None:
    """The page fits the 1280-pixel-wide window."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= VIEWPORT["width"], f"{page.url} is {width} px wide"
