"""Browser fixtures for the campaign pages: Debian's Chromium driven by Playwright (never a downloaded browser),
1280x800 pages, each page's screenshot, HTML and console kept in tests/frontend/artifacts/ when a test fails,
and uncaught script errors failing the test."""

import pytest

from tests.frontend.conftest import VIEWPORT


@pytest.fixture
def pages(reader_pages):
    """``reader_pages`` (tests/frontend/conftest.py: the session's one Chromium, artifacts on failure), and an
    uncaught script error on any page fails the test."""
    yield reader_pages
    assert not reader_pages.errors, f"uncaught script errors: {reader_pages.errors}"


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
