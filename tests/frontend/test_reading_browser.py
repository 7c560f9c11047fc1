"""The radiologist's path in a real browser (Debian's Chromium, 1280x800) against the live server: log in, the
worklist, "next case", the real study drawn by OHIF inside the reading page (its canvas pixels read back), the
schema's form answered with the keyboard, a draft, a submission, the next case; three readers in turn. Then what
the server says when a read is refused (field errors, a conflict between two windows), a segmentation painted
with OHIF's brush and saved by OHIF's SEG export arriving in the archive as a DICOM SEG linked to the read, and
the same viewer served from another origin reading Okapi through CORS."""

import http.server
import importlib.util
import re
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.annotation import conftest as campaigns
from tests.frontend.conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

# The campaign factory of the annotation tests (real studies from ../shared/data through the API).
study_paths = campaigns.study_paths
ingest_studies = campaigns.ingest_studies
make_campaign = campaigns.make_campaign

LIVER_CT = 4  # STUDY_SOURCES[4:7]: a 3-slice CT (dcmqi), a single-file study, a 28-slice head CT phantom
READING_URL = re.compile(r"/reading/cases/(\d+)/$")

# The pixels of the viewport canvas: drawn once they vary (a blank or uniform canvas has one value).
CANVAS_STATS = """() => {
  // The viewport's canvas is the largest one (the study browser's thumbnails are 256 px canvases).
  const canvases = Array.from(document.querySelectorAll('canvas'))
    .filter((c) => c.width >= 64 && c.height >= 64)
    .sort((a, b) => b.width * b.height - a.width * a.height);
  const canvas = canvases[0];
  if (!canvas) return null;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  if (!ctx) return {width: canvas.width, height: canvas.height, levels: 0, std: 0, lit: 0, context: 'not 2d'};
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const levels = new Set();
  let sum = 0, sum2 = 0, n = 0, lit = 0;
  for (let i = 0; i < data.length; i += 4 * 7) {
    const v = (data[i] + data[i + 1] + data[i + 2]) / 3;
    levels.add(data[i] << 16 | data[i + 1] << 8 | data[i + 2]);
    sum += v; sum2 += v * v; n += 1; if (v > 8) lit += 1;
  }
  const mean = sum / n, std = Math.sqrt(Math.max(0, sum2 / n - mean * mean));
  return {width: canvas.width, height: canvas.height, levels: levels.size, std: std, lit: lit / n,
          css: canvas.className, shown: canvas.getBoundingClientRect().width};
}"""


def viewer_frame(page):
    handle = page.wait_for_selector("iframe#viewer")
    frame = handle.content_frame()
    assert frame is not None
    return frame


def wait_for_image(page, timeout: float = 120.0, *, anatomy: bool = True) -> dict:
    """Wait until OHIF has drawn the study in its viewport: the canvas holds many grey levels with real spread
    (``anatomy``: a body section such as the liver CT's; otherwise any real image, e.g. a phantom's slice that is
    mostly air)."""
    frame = viewer_frame(page)
    levels, spread, lit = (32, 10, 0.05) if anatomy else (4, 3, 0.005)
    deadline, stats = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        stats = frame.evaluate(CANVAS_STATS)
        if (stats and stats["width"] >= 300 and stats["levels"] >= levels and stats["std"] >= spread
                and stats["lit"] >= lit):
            return stats
        time.sleep(0.5)
    raise AssertionError(f"the viewer drew no image within {timeout} s: last canvas statistics {stats}")


def take_next_case(page) -> int:
    """From the worklist: focus the project's "Next case" button and press n."""
    page.goto("/reading/")
    expect(page.get_by_role("heading", name="My worklist")).to_be_visible()
    page.get_by_role("button", name=re.compile("Next case")).first.focus()
    page.keyboard.press("n")
    page.wait_for_url(READING_URL)
    return int(READING_URL.search(page.url).group(1))


def answer_with_keyboard(page) -> None:
    """The schema of the annotation tests: finding (3 options), likelihood 1-5, signs (several), contrast
    (yes/no), confidence 1-5, notes. Digits choose; a single choice moves on to the next question."""
    page.locator('fieldset[data-key="finding"] input').first.focus()
    page.keyboard.press("2")          # finding: Abnormal (B); the focus goes to likelihood
    page.keyboard.press("4")          # likelihood 4; on to signs
    page.keyboard.press("1")          # signs: nodule (a checkbox: the focus stays)
    page.keyboard.press("3")          # signs: mass
    page.keyboard.press("Tab")        # to contrast
    page.keyboard.press("1")          # contrast: yes; on to confidence
    page.keyboard.press("4")          # confidence 4; on to the submit button
    page.locator("#free-text").focus()
    page.keyboard.type("nodule and mass in the left lobe")


def test_three_readers_read_with_the_keyboard_and_see_the_real_images(reader_pages, make_campaign):
    from annotation.models import Read

    campaign = make_campaign(k=3, studies=3, first_study=LIVER_CT)
    for n, reader in enumerate(campaign.readers):
        page = reader_pages.new()
        log_in(page, reader.username)
        expect(page.locator(".wl-counts dd[data-count=available]")).to_have_text("3")
        case_id = take_next_case(page)

        # The study is drawn by OHIF inside the reading page: real pixels in its viewport canvas.
        stats = wait_for_image(page)
        assert stats["height"] >= 400, stats
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        frame_box = page.locator("iframe#viewer").bounding_box()
        assert frame_box["width"] >= 800 and frame_box["height"] >= 700, frame_box

        answer_with_keyboard(page)
        expect(page).to_have_title(re.compile("^• "))             # unsaved changes are marked
        page.locator(".rd-status").click()                         # out of the notes: s is a shortcut again
        page.keyboard.press("s")
        expect(page.locator("#status")).to_contain_text("Draft saved · version 1")
        page.keyboard.press("Control+Enter")
        expect(page.locator("#status")).to_contain_text("Submitted · version 2")
        expect(page.locator("#banner")).to_contain_text("Read submitted")

        read = Read.objects.get(case_id=case_id, reader=reader)
        assert read.state == "submitted" and read.version == 2
        assert read.answers == {"finding": "B", "likelihood": 4, "signs": ["nodule", "mass"], "contrast": True}
        assert (read.confidence, read.free_text) == (4, "nodule and mass in the left lobe")
        assert read.time_spent_seconds > 1, read.time_spent_seconds

        page.keyboard.press("n")                                   # the next case, straight from the page
        page.wait_for_url(lambda url, done=case_id: bool(READING_URL.search(url))
                          and int(READING_URL.search(url).group(1)) != done)
        if n == 0:
            wait_for_image(page, anatomy=False)                    # the second study is drawn too
        expect(page.locator("#status")).to_contain_text("Not saved yet")
    assert reader_pages.errors == [], reader_pages.errors
    assert Read.objects.filter(state="submitted").count() == 3


def test_the_servers_refusals_are_shown_as_they_are(reader_pages, make_campaign):
    campaign = make_campaign(k=2, studies=1, first_study=LIVER_CT)
    reader = campaign.readers[0]
    page = reader_pages.new()
    log_in(page, reader.username)
    case_id = take_next_case(page)

    # Submitting an empty form: the server's field errors appear beside their questions.
    page.locator('fieldset[data-key="finding"] input').first.focus()
    page.keyboard.press("Control+Enter")
    error = page.locator('[id="err-answers.finding"]')
    expect(error).to_have_text("required")
    expect(page.locator('fieldset[data-key="finding"]')).to_have_class(re.compile("invalid"))
    expect(page.locator("#banner")).to_contain_text("the read does not match the project's label schema")
    expect(page.locator('[id="err-confidence"]')).to_have_text("required")

    # A draft here, then another window saves the same read: this page's next save is refused with the
    # server's message and offers to reload.
    page.keyboard.press("1")
    page.locator(".rd-status").click()
    page.keyboard.press("s")
    expect(page.locator("#status")).to_contain_text("Draft saved · version 1")
    other = campaign.client(reader).post(f"/api/v1/cases/{case_id}/read",
                                         {"answers": {"finding": "C"}, "base_version": 1}, format="json")
    assert other.status_code == 201
    page.keyboard.press("2")
    page.keyboard.press("s")
    banner = page.locator("#banner")
    expect(banner).to_contain_text("this read was saved elsewhere meanwhile")
    expect(banner).to_contain_text("version_conflict")
    page.once("dialog", lambda dialog: dialog.accept())
    banner.get_by_role("button", name="Reload the saved read").click()
    expect(page.locator("#status")).to_contain_text("version 2")
    expect(page.locator('fieldset[data-key="finding"] input[value="C"]')).to_be_checked()


def paint_in_viewer(page) -> None:
    """Choose OHIF's Brush in its toolbox and paint a stroke across the middle of the displayed slice."""
    frame = viewer_frame(page)
    frame.locator('[data-cy="Brush-btn"]').first.click()
    outer = page.locator("iframe#viewer").bounding_box()
    inner = frame.evaluate("""() => {
      const c = Array.from(document.querySelectorAll('canvas')).sort((a, b) => b.width * b.height - a.width * a.height)[0];
      const r = c.getBoundingClientRect();
      return {x: r.x, y: r.y, w: r.width, h: r.height};
    }""")
    x, y = outer["x"] + inner["x"] + inner["w"] * 0.45, outer["y"] + inner["y"] + inner["h"] * 0.45
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(25):
        page.mouse.move(x + 3 * i, y + 2 * (i % 8), steps=2)
    page.mouse.up()


def test_a_segmentation_painted_in_the_viewer_arrives_as_a_seg_linked_to_the_read(reader_pages, make_campaign,
                                                                                  token_for):
    import io

    import numpy as np
    import pydicom
    import requests

    from annotation.models import Read, ReadVersion
    from annotation.segmentation import seg_segments, seg_to_masks, sort_source_datasets
    from imaging import storage
    from imaging.models import Instance

    campaign = make_campaign(k=2, studies=1, first_study=LIVER_CT)
    a, b = campaign.readers[:2]
    study = campaign.study_uids[0]
    page = reader_pages.new()
    log_in(page, a.username)
    case_id = take_next_case(page)
    wait_for_image(page)
    page.wait_for_function("() => window.OkapiViewer && window.OkapiViewer.ready()")

    # The schema's labels set up in OHIF from the panel, a stroke of OHIF's brush, OHIF's SEG export and STOW.
    page.get_by_role("button", name="Set up labels").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#seg-status")).to_contain_text("Labels ready in the viewer")
    paint_in_viewer(page)
    page.get_by_role("button", name="Save segmentation").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#seg-status")).to_contain_text("attached to this read", timeout=60_000)
    expect(page.locator("#status")).to_contain_text("version 1")

    read = Read.objects.select_related("segmentation__series").get(case_id=case_id, reader=a)
    seg_instance = read.segmentation
    assert seg_instance is not None and seg_instance.sop_class_uid == "1.2.840.10008.5.1.4.1.1.66.4"
    assert ReadVersion.objects.get(read=read, version=1).segmentation_id == seg_instance.pk
    with storage.open_file(seg_instance.file) as fh:
        seg = pydicom.dcmread(io.BytesIO(fh.read()))
    assert "Lesion" in {s.label for s in seg_segments(seg)}
    sources = []
    for inst in Instance.objects.filter(series__study__study_uid=study).exclude(series__modality="SEG"):
        with storage.open_file(inst.file) as fh:
            sources.append(pydicom.dcmread(io.BytesIO(fh.read()), stop_before_pixels=True))
    lesion = seg_to_masks(seg, sort_source_datasets(sources))[1]
    assert 200 < int(np.count_nonzero(lesion)) < lesion.size // 4, np.count_nonzero(lesion)

    # The read goes on from there: answered with the keyboard and submitted, the segmentation stays.
    answer_with_keyboard(page)
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_contain_text("Submitted · version 2")
    read.refresh_from_db()
    assert read.state == "submitted" and read.segmentation_id == seg_instance.pk

    # Blinding: the second reader's viewer and searches do not show the first reader's SEG series.
    seg_series = seg_instance.series.series_uid
    other = reader_pages.new()
    log_in(other, b.username)
    assert take_next_case(other) == case_id
    wait_for_image(other)
    assert viewer_frame(other).get_by_text("Okapi read segmentation").count() == 0
    listed = requests.get(f"{reader_pages.base_url}/dicomweb/studies/{study}/series", timeout=30,
                          headers={"Authorization": f"Bearer {token_for(b)}"}).json()
    assert seg_series not in {item["0020000E"]["Value"][0] for item in listed}
    mine = requests.get(f"{reader_pages.base_url}/dicomweb/studies/{study}/series", timeout=30,
                        headers={"Authorization": f"Bearer {token_for(a)}"}).json()
    assert seg_series in {item["0020000E"]["Value"][0] for item in mine}
    assert reader_pages.errors == [], reader_pages.errors


SITE = Path(__file__).resolve().parents[2] / "frontend" / "ohif" / "site"


@pytest.fixture
def viewer_elsewhere(okapi_server):
    """The built viewer served by a plain static file server on another port (another origin), with the static
    app-config.js of frontend/ohif/build.py --dicomweb pointing at the live server."""
    spec = importlib.util.spec_from_file_location("ohif_build", SITE.parent / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    config = build.static_app_config(f"{okapi_server}/dicomweb").encode()

    class Static(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(SITE), **kwargs)

        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802 - http.server's name
            path = urlsplit(self.path).path
            if path == "/viewer/app-config.js":
                self.send_response(200)
                self.send_header("Content-Type", "text/javascript")
                self.send_header("Content-Length", str(len(config)))
                self.end_headers()
                self.wfile.write(config)
                return
            rel = path.removeprefix("/viewer/")
            self.path = "/" + rel if rel and (SITE / rel).is_file() else "/index.html"  # OHIF's routes
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Static)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_viewer_on_another_origin_reads_okapi_through_cors(reader_pages, make_campaign, viewer_elsewhere,
                                                           settings):
    settings.CORS_ALLOWED_ORIGINS = [viewer_elsewhere]
    settings.OKAPI_VIEWER_URL = f"{viewer_elsewhere}/viewer/"
    campaign = make_campaign(k=1, studies=1, first_study=LIVER_CT)
    reader = campaign.readers[0]
    page = reader_pages.new()
    answers = []
    page.on("response", lambda r: "/dicomweb/" in r.url and answers.append(
        (r.request.method, r.status, r.headers.get("access-control-allow-origin"))))
    log_in(page, reader.username)
    take_next_case(page)

    # The reading page frames the viewer of the other origin, the token on its URL (OHIF takes it off).
    frame_url = page.locator("iframe#viewer").get_attribute("src")
    assert frame_url.startswith(f"{viewer_elsewhere}/viewer/segmentation?StudyInstanceUIDs=")
    assert "&token=okp_" in frame_url
    wait_for_image(page)
    assert "token=" not in viewer_frame(page).url
    gets = [a for a in answers if a[0] == "GET"]
    assert gets and all(status == 200 and origin == viewer_elsewhere for _, status, origin in gets), answers[:10]
