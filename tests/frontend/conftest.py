"""Browser tests of the pages: static files collected before the live server starts, Debian's Chromium with
software WebGL for the OHIF viewer, and a screenshot of every open page when a test fails
(``tests/frontend/artifacts/``, ignored by git)."""

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1280, "height": 800}
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
VIEWER_INDEX = Path(__file__).resolve().parents[2] / "frontend" / "ohif" / "site" / "index.html"
# Software WebGL (SwiftShader): headless Chromium has no GPU, and cornerstone3D renders through WebGL.
GL_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--use-gl=angle", "--use-angle=swiftshader",
           "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]


def pytest_configure(config):
    """Collect the static files now, while pytest collects: WhiteNoise indexes STATIC_ROOT once, when the live
    server (tests/conftest.py ``okapi_server``) builds its WSGI application, which may be before any test here."""
    from django.conf import settings
    from django.core.management import call_command

    source = Path(__file__).resolve().parents[2] / "frontend" / "static"
    collected = Path(settings.STATIC_ROOT)
    stale = [p for p in source.rglob("*") if p.is_file() and (
        not (collected / p.relative_to(source)).exists()
        or (collected / p.relative_to(source)).stat().st_mtime < p.stat().st_mtime)]
    if stale:
        call_command("collectstatic", interactive=False, verbosity=0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so that fixtures know in their teardown whether it failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def viewer_browser():
    """One headless Chromium (Debian's, never a downloaded one) with software WebGL, for the session."""
    from playwright.sync_api import sync_playwright

    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium)")
    if not VIEWER_INDEX.is_file():
        pytest.fail(f"the OHIF viewer is not built ({VIEWER_INDEX} is missing): run `make install`")
    # Playwright's sync API runs an event loop in this thread; the tests' own ORM calls stay synchronous.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=GL_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class ReaderPages:
    """The pages of one test, each in its own browser context (its own login session), 1280x800."""

    def __init__(self, browser, base_url: str):
        self.browser, self.base_url = browser, base_url
        self.contexts, self.pages, self.errors, self.console = [], [], [], []

    def new(self):
        context = self.browser.new_context(viewport=VIEWPORT, base_url=self.base_url)
        context.set_default_timeout(30_000)
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        self.contexts.append(context)
        self.pages.append(page)
        return page

    def close(self):
        for context in self.contexts:
            context.close()


def save_failure_artifacts(test_name: str, opened: ReaderPages) -> None:
    """Each open page's screenshot and HTML (every frame's), and the console, into ARTIFACTS."""
    ARTIFACTS.mkdir(exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", test_name)
    for i, page in enumerate(opened.pages):
        try:
            page.screenshot(path=str(ARTIFACTS / f"{stem}-{i}.png"))
            (ARTIFACTS / f"{stem}-{i}.html").write_text(
                "\n<!-- frame -->\n".join(frame.content() for frame in page.frames))
        except Exception as exc:  # noqa: BLE001 - a closed page must not hide the test's own failure
            print(f"no screenshot of page {i}: {exc}")
    (ARTIFACTS / f"{stem}-console.txt").write_text("\n".join(opened.console))
    print(f"screenshots of the failure: {ARTIFACTS}/{stem}-*.png")


@pytest.fixture
def reader_pages(viewer_browser, okapi_server, request):
    """Open pages with ``reader_pages.new()``; when the test fails, each one's screenshot, HTML and the console
    go to tests/frontend/artifacts/."""
    opened = ReaderPages(viewer_browser, okapi_server)
    yield opened
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        save_failure_artifacts(request.node.name, opened)
    opened.close()


def log_in(page, username: str, password: str = "s3cret-pass", next_url: str = "/reading/") -> None:
    """The login form, with the keyboard."""
    page.goto(f"/accounts/login/?next={next_url}")
    page.locator("#id_username").focus()  # autofocus may not have happened yet when typing starts
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: urlsplit(url).path == next_url)
