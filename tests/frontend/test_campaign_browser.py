"""The lead's and the data scientist's pages in a real browser (Chromium, 1280x800) against the live server:
creating a campaign with the keyboard, the dashboard following reads live over the websocket, adjudication
of a disputed case, and the data page."""

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.annotation import conftest as campaigns
from tests.frontend import _browser
from tests.frontend._browser import log_in, no_horizontal_scroll

pytestmark = pytest.mark.django_db(transaction=True)

# Fixtures shared with the other modules: the browser, and the campaign factory of the annotation tests.
pages = _browser.pages
study_paths = campaigns.study_paths
ingest_studies = campaigns.ingest_studies
make_campaign = campaigns.make_campaign

SHOULDER_MR = "multiframe_and_codecs_pydicom_data/MR2_J2KR.dcm"  # StudyDescription SHOULDER
UPLOADED_MR = "multiframe_and_codecs_pydicom_data/emri_small_jpeg_2k_lossless.dcm"

# The keyboard path through the new-campaign form, in order (other stops may come between).
FORM_TAB_ORDER = ["f-name", "f-description", "f-k", "f-threshold", "f-ordinal", "f-mask", "f-claim", "q0-label",
                  "q0-key", "q0-type", "q0-required", "q0-options", "add-question", "add-segment", "f-free-text",
                  "f-confidence", "study-q", "study-search", "upload-files", "m0-user", "m0-role", "add-member",
                  "create-submit"]


def _focused(page) -> str:
    return page.evaluate("document.activeElement.id || document.activeElement.tagName")


def _type_into(page, selector: str, text: str) -> None:
    """Focus a field and replace its content by typing, as a keyboard user would."""
    page.focus(selector)
    page.keyboard.press("Control+A")
    page.keyboard.type(text)


def test_lead_creates_a_campaign_with_the_keyboard(pages, make_user, shared_data):
    from annotation.models import Case, LabelSchema, Membership, Project
    from imaging.services.ingest import ingest_file

    lead = make_user("lead", "lead")
    make_user("radiologist", "reader_x")
    make_user("radiologist", "reader_y")
    shoulder = ingest_file(str(shared_data / "dicom" / SHOULDER_MR), user=lead, source="test").study_uid

    page = pages.new()
    log_in(page, "lead", "s3cret-pass")
    page.goto("/campaigns/")
    expect(page.locator("#no-campaigns")).to_be_visible()
    page.get_by_role("link", name="New campaign").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/campaigns/new")
    expect(page.locator("#q0-label")).to_have_value("Finding")
    expect(page.locator("#study-results table")).to_be_visible()  # the newest studies, before any search

    # Tab walks the whole form in reading order, with a visible focus ring, and reaches the submit button.
    page.focus("#f-name")
    seen = [_focused(page)]
    for _ in range(60):
        page.keyboard.press("Tab")
        seen.append(_focused(page))
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none", f"no visible focus on {seen[-1]}"
        if seen[-1] == "create-submit":
            break
    stops = [s for s in seen if s in FORM_TAB_ORDER]
    assert stops == FORM_TAB_ORDER, seen

    # Settings and schema by keyboard; a choice question with one option is refused beside its field.
    _type_into(page, "#f-name", "Rare lung study")
    page.keyboard.press("Tab")
    page.keyboard.type("Keyboard-made campaign")
    page.keyboard.press("Tab")
    page.keyboard.press("Control+A")
    page.keyboard.type("2")
    page.keyboard.press("Tab")
    page.keyboard.press("Control+A")
    page.keyboard.type("0.8")
    _type_into(page, "#q0-options", "normal")
    page.focus("#f-name")
    page.keyboard.press("Enter")
    error = page.locator("#q0-options-error")
    expect(error).to_have_text(re.compile("a list of 2 to 100 options"))
    expect(page.locator(".error-summary")).to_be_focused()
    expect(page.locator("#q0-options")).to_have_attribute("aria-invalid", "true")
    assert Project.objects.count() == 0

    _type_into(page, "#q0-options", "normal\nabnormal | Abnormal finding")
    page.focus("#add-question")
    page.keyboard.press("Enter")
    expect(page.locator("#q1-label")).to_be_focused()
    page.keyboard.type("Likelihood of disease")
    expect(page.locator("#q1-key")).to_have_value("likelihood_of_disease")
    page.select_option("#q1-type", "ordinal")
    page.focus("#add-segment")
    page.keyboard.press("Enter")
    expect(page.locator("#s0-name")).to_be_focused()
    page.keyboard.type("Lesion")
    _type_into(page, "#s0-code", "52988006")
    page.focus("#f-confidence")
    page.keyboard.press("Space")
    schema_json = page.locator("#schema-json").input_value()
    assert '"likelihood_of_disease"' in schema_json and '"52988006"' in schema_json

    # Studies: search (Enter searches, it does not submit), tick with Space; upload one more with progress.
    page.focus("#study-q")
    page.keyboard.type("shoulder")
    page.keyboard.press("Enter")
    box = page.locator(f'#study-results input[data-uid="{shoulder}"]')
    expect(page.locator("#study-results tbody tr")).to_have_count(1)
    box.focus()
    page.keyboard.press("Space")
    expect(page.locator("#selected-count")).to_have_text("1")
    page.set_input_files("#upload-files", str(shared_data / "dicom" / UPLOADED_MR))
    expect(page.locator("#upload-status")).to_contain_text("Stored 1", timeout=30_000)
    expect(page.locator("#upload-progress")).to_have_attribute("value", "100")
    expect(page.locator("#selected-count")).to_have_text("2")

    no_horizontal_scroll(page)

    # Readers: two radiologists and a name that does not exist.
    _type_into(page, "#m0-user", "reader_x")
    for name in ("reader_y", "ghost"):
        page.focus("#add-member")
        page.keyboard.press("Enter")
        page.keyboard.type(name)
    page.focus("#f-claim")  # Enter in any text field submits the form
    page.keyboard.press("Enter")

    # The campaign is made; the unknown user is refused beside its row, the rest was added.
    expect(page.locator("#m2-user-error")).to_contain_text("no active user ghost")
    expect(page.locator("#create-submit")).to_have_text("Finish setup")
    project = Project.objects.get()
    assert (project.name, project.reads_per_case, project.agreement_threshold) == ("Rare lung study", 2, 0.8)
    definition = LabelSchema.objects.get(project=project).definition
    assert [q["key"] for q in definition["questions"]] == ["finding", "likelihood_of_disease"]
    assert definition["questions"][0]["options"][1] == {"value": "abnormal", "label": "Abnormal finding"}
    assert definition["segments"][0]["code"]["value"] == "52988006"
    assert definition["confidence"] == {"min": 1, "max": 5}
    assert sorted(Membership.objects.filter(project=project, role="radiologist")
                  .values_list("user__username", flat=True)) == ["reader_x", "reader_y"]
    cases = list(Case.objects.filter(project=project).order_by("priority").values_list("study__study_uid", flat=True))
    assert cases[0] == shoulder and len(cases) == 2  # in the order picked: searched, then uploaded

    page.locator("#members tbody tr").nth(2).get_by_role("button", name=re.compile("Remove")).focus()
    page.keyboard.press("Enter")
    page.focus("#create-submit")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/campaigns/{project.pk}/")
    expect(page.locator("#count-total")).to_have_text("2")
    expect(page.locator("#count-open")).to_have_text("2")
    expect(page.locator("#members-table tbody tr")).to_have_count(3)  # the lead and two readers
    no_horizontal_scroll(page)


def _submit(base: str, token: str, case: int, answers: dict) -> None:
    resp = requests.post(f"{base}/api/v1/cases/{case}/read", headers={"Authorization": f"Bearer {token}"},
                         json={"answers": answers, "confidence": 3, "submit": True, "base_version": 0}, timeout=30)
    assert resp.status_code == 201, resp.text


def test_dashboard_follows_reads_live_and_the_lead_adjudicates(pages, make_campaign, token_for, okapi_server):
    campaign = make_campaign(k=2, studies=2, threshold=0.9)
    pid = campaign.project_id
    lead_token = token_for(campaign.lead)
    a, b = campaign.readers[:2]
    tokens = {r.username: token_for(r) for r in (a, b)}
    cases = [c["id"] for c in requests.get(f"{okapi_server}/api/v1/projects/{pid}/cases", timeout=30,
                                           headers={"Authorization": f"Bearer {lead_token}"}).json()]
    for case in cases:
        for reader in (a, b):
            resp = requests.post(f"{okapi_server}/api/v1/projects/{pid}/assignments", timeout=30,
                                 headers={"Authorization": f"Bearer {lead_token}"},
                                 json={"case": case, "reader": reader.username})
            assert resp.status_code == 201, resp.text

    dashboard = pages.new()
    log_in(dashboard, "lead", "s3cret-pass")
    dashboard.goto(f"/campaigns/{pid}/")
    expect(dashboard.locator("#live")).to_have_attribute("data-state", "live")
    expect(dashboard.locator("#count-open")).to_have_text("2")
    expect(dashboard.locator("#agreement-empty")).to_be_visible()
    expect(dashboard.locator("#queue-empty")).to_be_visible()

    # Both readers agree on the first case: consensus, and the first agreement figures, without a reload.
    _submit(okapi_server, tokens[a.username], cases[0], {"finding": "A", "likelihood": 2})
    expect(dashboard.locator("#readers tr[data-reader=reader_a] .submitted")).to_have_text("1")
    _submit(okapi_server, tokens[b.username], cases[0], {"finding": "A", "likelihood": 2})
    expect(dashboard.locator("#count-consensus")).to_have_text("1")
    cell = dashboard.locator('#kappa-heatmap g.cell[data-pair="reader_a|reader_b"]')
    expect(cell).to_have_attribute("data-value", "")  # one case: kappa is undefined, shown as n/a
    expect(cell).to_contain_text("n/a")
    expect(dashboard.locator("#consensus-bars g.bar")).to_have_count(2)
    expect(dashboard.locator("#last-event")).to_contain_text(re.compile(f"case {cases[0]} reached consensus|Reconnected"))

    # They disagree on the second: a tie, so it waits for adjudication; kappa now has two cases.
    _submit(okapi_server, tokens[a.username], cases[1], {"finding": "A", "likelihood": 1})
    _submit(okapi_server, tokens[b.username], cases[1], {"finding": "B", "likelihood": 1})
    expect(dashboard.locator("#count-adjudication")).to_have_text("1")
    expect(cell).to_have_attribute("data-value", "0")
    expect(cell).to_contain_text("0.00")
    link = dashboard.locator(f'#queue-table tr[data-case="{cases[1]}"] a')
    expect(link).to_have_text(f"Adjudicate case {cases[1]}")
    no_horizontal_scroll(dashboard)

    # The lead opens the case (keyboard: the queue's link) in a second window; the dashboard stays open.
    adjudication = pages.new()
    log_in(adjudication, "lead", "s3cret-pass")
    adjudication.goto(link.get_attribute("href"))
    columns = adjudication.locator("#reads article.read-col")
    expect(columns).to_have_count(2)
    expect(columns.nth(0).locator("h3")).to_have_text("reader_a")
    expect(columns.nth(0).locator('dd[data-question="finding"]')).to_have_text("Normal")
    expect(columns.nth(1).locator('dd[data-question="finding"]')).to_have_text("Abnormal")
    expect(adjudication.locator('#votes tr[data-question="finding"]')).to_contain_text("tie")
    expect(adjudication.locator("#case-state")).to_have_text("adjudication")
    no_horizontal_scroll(adjudication)

    # Deciding nothing, then answers that leave the tied question open: the server's reasons, where they belong.
    adjudication.focus("#decision-submit")
    adjudication.keyboard.press("Enter")
    expect(adjudication.locator(".error-summary")).to_contain_text("give either the decided answers or the read")
    adjudication.focus("#decision-own")
    adjudication.keyboard.press("Space")
    expect(adjudication.locator("#own-answers")).to_be_visible()
    expect(adjudication.locator("#answer-likelihood-1")).to_be_checked()  # the readers' unanimous answer
    adjudication.focus("#decision-submit")
    adjudication.keyboard.press("Enter")
    expect(adjudication.locator("#answers-finding .field-error")).to_have_text("required")

    # Adopt reader_b's read from its column, with a note.
    columns.nth(1).get_by_role("button", name="Adopt reader_b's read").focus()
    adjudication.keyboard.press("Enter")
    expect(adjudication.locator(f"#read-{columns.nth(1).get_attribute('data-read')}")).to_be_checked()
    expect(adjudication.locator("#own-answers")).to_be_hidden()
    adjudication.focus("#decision-note")
    adjudication.keyboard.type("Consolidation is visible")
    adjudication.focus("#decision-submit")
    adjudication.keyboard.press("Enter")
    expect(adjudication.locator("#decision-recorded")).to_contain_text("now has its consensus (adjudication)")
    expect(adjudication.locator("#case-state")).to_have_text("consensus")

    # The dashboard heard it.
    expect(dashboard.locator("#count-consensus")).to_have_text("2")
    expect(dashboard.locator("#count-adjudication")).to_have_text("0")
    expect(dashboard.locator("#queue-empty")).to_be_visible()
    # (the event itself is named unless the socket dropped meanwhile: a busy Redis can time a consumer out, and
    # the page then refetches everything on reconnecting, which is what the counts above saw)
    expect(dashboard.locator("#last-event")).to_contain_text(
        re.compile(f"lead adjudicated case {cases[1]}|Reconnected"))

    from annotation.models import Case

    case = Case.objects.get(pk=cases[1])
    assert (case.state, case.consensus_source, case.consensus["answers"]["finding"]) == ("consensus", "adjudication",
                                                                                       "B")
    assert case.adjudications.get().note == "Consolidation is visible"


def test_data_page_and_start_page(pages, make_campaign, token_for, okapi_server, settings):
    import json
    from pathlib import Path

    campaign = make_campaign(k=2, studies=1)
    pid = campaign.project_id
    for reader in campaign.readers[:2]:
        headers = {"Authorization": f"Bearer {token_for(reader)}"}
        case = requests.post(f"{okapi_server}/api/v1/projects/{pid}/next-case", headers=headers, timeout=30)
        _submit(okapi_server, token_for(reader), case.json()["case"]["id"], {"finding": "B", "likelihood": 4})

    demo = Path(settings.DATA_DIR) / "demo_users.json"
    demo.write_text(json.dumps([{"role": "lead", "username": "lead", "password": "okapi-lead"}]))
    try:
        page = pages.new()
        page.goto("/")
        expect(page.locator("#demo-users")).to_contain_text("okapi-lead")
        for name, href in (("Worklist", "/reading/"), ("Campaigns", "/campaigns/"), ("Data", "/data/"),
                           ("API docs", "/api/docs/")):
            expect(page.locator("#where").get_by_role("link", name=name, exact=True).first).to_have_attribute(
                "href", href)
    finally:
        demo.unlink()

    log_in(page, "scientist", "s3cret-pass")
    expect(page.locator("#you-are")).to_contain_text("the data page")
    page.goto("/data/")
    section = page.locator(f'section.data-project[data-project="{pid}"]')
    expect(section.locator(f"#consensus-summary-{pid}")).to_contain_text("1 of 1 cases have a consensus")
    expect(section.locator('table[data-question="finding"] tbody tr').nth(1)).to_contain_text("Abnormal")
    expect(section.locator('table[data-question="finding"] tbody tr').nth(1).locator("td.n")).to_have_text("1")
    expect(section.locator(".exports")).to_have_attribute("data-state", re.compile("unavailable|empty"))
    expect(section.locator(".exports")).to_contain_text(re.compile("Not available on this server yet|No exports yet"))
    if section.locator(".exports").get_attribute("data-state") == "empty":  # the exports API is installed
        expect(section.locator("form.export-request")).to_be_visible()
    expect(section.locator(".models")).to_have_attribute("data-state", re.compile("unavailable|empty"))
    expect(page.locator("#api-docs-link")).to_have_attribute("href", "/api/docs/")
    expect(page.locator("#api-schema-link")).to_have_attribute("href", "/api/schema/")
    section.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(section.locator("pre.snippet").first).to_contain_text(f"/api/v1/projects/{pid}/cases?state=consensus")
    no_horizontal_scroll(page)
    page.get_by_role("link", name="interactive API docs").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/api/docs/")


def test_campaign_list_and_data_page_cost_the_same_queries_for_more_campaigns(make_campaign, client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from annotation.services.projects import cases_add, project_create

    campaign = make_campaign(k=2, studies=2)
    client.force_login(campaign.lead)

    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    one = {url: queries(url) for url in ("/campaigns/", "/data/")}
    for n in range(3):
        project = project_create(user=campaign.lead, name=f"More {n}", schema=campaigns.SCHEMA)
        cases_add(project=project, user=campaign.lead, study_uids=campaign.study_uids)
    assert {url: queries(url) for url in one} == one
    page = client.get("/campaigns/").content.decode()
    assert page.count('<tr data-project="') == 4
