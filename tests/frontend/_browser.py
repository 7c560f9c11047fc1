"""Browser fixtures for the campaign pages: Debian's Chromium driven by Playwright (never a downloaded browser),
1280x800 pages, each page's screenshot, HTML and console kept in tests/frontend/artifacts/ when a test fails,
and uncaught script errors failing the test."""

import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 800}
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # as the reading tests keep theirs


@pytest.fixture(scope="module")
def chromium(request):
    """A headless Chromium for this module's tests.

    Playwright's sync API allows one instance per thread. When another module's session browser is already
    running (tests/frontend/conftest.py ``viewer_browser``, if the reading tests ran first), it is shared;
    otherwise this module starts its own and stops it when the module is done, before the next one starts."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    try:
        asyncio.get_running_loop()
        shared = True
    except RuntimeError:  # no running loop: no other Playwright in this thread
        shared = False
    if shared:
        yield request.getfixturevalue("viewer_browser")
        return
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are still synchronous.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Pages:
    """Pages of one test: ``new()`` opens a 1280x800 page in a fresh browser context (its own session)."""

    def __init__(self, browser, base_url: str):
        self.browser, self.base_url = browser, base_url
        self.contexts, self.pages, self.errors, self.console = [], [], [], []

    def new(self):
        context = self.browser.new_context(viewport=VIEWPORT, base_url=self.base_url)
        context.set_default_timeout(20_000)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        page.on("console", lambda msg: self.console.append(f"{page.url} {msg.type}: {msg.text}"))
        self.contexts.append(context)
        self.pages.append(page)
        return page

    def close(self):
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(chromium, okapi_server, request):
    """Open pages with ``pages.new()``; on failure each page's screenshot and HTML go to ARTIFACTS."""
    failed_before = request.session.testsfailed
    opened = Pages(chromium, okapi_server)
    yield opened
    if request.session.testsfailed > failed_before:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
        for i, page in enumerate(opened.pages):
            try:
                page.screenshot(path=str(ARTIFACTS / f"{stem}-{i}.png"), full_page=True)
                (ARTIFACTS / f"{stem}-{i}.html").write_text(page.content())
            except Exception as exc:  # noqa: BLE001 - a closed page must not hide the test's own failure
                print(f"no screenshot of page {i}: {exc}")
        (ARTIFACTS / f"{stem}-console.txt").write_text("\n".join(opened.console))
        print(f"browser screenshots of the failure: {ARTIFACTS}/{stem}-*.png")
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
