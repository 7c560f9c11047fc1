"""The reading pages and the viewer's files without a browser: what Django serves, to whom, and how."""

import re

import pytest

pytestmark = pytest.mark.django_db

from tests.annotation import conftest as campaigns  # noqa: E402

study_paths = campaigns.study_paths
ingest_studies = campaigns.ingest_studies
make_campaign = campaigns.make_campaign


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A stand-in for the built viewer (frontend/ohif/site), so that these tests need no npm."""
    from frontend import views_reading

    (tmp_path / "index.html").write_text('<!doctype html><script src="/viewer/app-config.js"></script>')
    (tmp_path / "app.bundle.0123456789abcdef.js").write_text("console.log('ohif');" * 100)
    (tmp_path / "app.bundle.0123456789abcdef.js.gz").write_bytes(b"\x1f\x8bgzipped")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "logo.svg").write_text("<svg/>")
    monkeypatch.setattr(views_reading, "VIEWER_DIR", tmp_path)
    return tmp_path


def test_the_viewer_config_carries_the_readers_own_token_and_okapis_dicomweb(client, make_user):
    from core.auth import user_for_token

    client.get("/viewer/app-config.js")
    anonymous = client.get("/viewer/app-config.js")
    assert anonymous["Cache-Control"] == "no-store" and "token: null" in anonymous.content.decode()

    reader = make_user("radiologist", "reader")
    client.force_login(reader)
    first = client.get("/viewer/app-config.js")
    body = first.content.decode()
    assert first["Cache-Control"] == "no-store" and first["Content-Type"].startswith("text/javascript")
    token = re.search(r'token: "(okp_[^"]+)"', body).group(1)
    assert user_for_token(token) == reader
    assert 'dicomweb: "http://testserver/dicomweb"' in body and "qidoRoot: okapi.dicomweb" in body
    assert "wadoRoot: okapi.dicomweb" in body and "imageRendering: 'wadors'" in body
    assert "thumbnailRendering: 'wadors'" in body and "enableStudyLazyLoad: true" in body
    assert "supportsFuzzyMatching: false" in body and "dicomUploadEnabled: false" in body
    assert 'routerBasename: "/viewer"' in body
    # One token per login session, not one per page load.
    assert re.search(r'token: "(okp_[^"]+)"', client.get("/viewer/app-config.js").content.decode()).group(1) == token


def test_logging_out_revokes_the_viewers_token(client, make_user):
    from core.auth import user_for_token
    from core.models import ApiToken

    reader = make_user("radiologist", "reader")
    client.force_login(reader)
    token = re.search(r'token: "(okp_[^"]+)"', client.get("/viewer/app-config.js").content.decode()).group(1)
    other = make_user("radiologist", "other")
    from core.auth import token_create

    _, own_script_token = token_create(user=reader, name="a script")  # tokens made by hand are not touched
    assert client.get("/dicomweb/studies", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    client.post("/accounts/logout/")
    assert user_for_token(token) is None
    assert client.get("/dicomweb/studies", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    assert user_for_token(own_script_token) == reader
    assert ApiToken.objects.filter(user=reader, name="viewer (browser session)", revoked_at__isnull=False).count() == 1
    assert not ApiToken.objects.filter(user=other).exists()


def test_the_viewer_files_and_ohifs_routes(client, make_user, site):
    reader = make_user("radiologist", "reader")
    route = "/viewer/segmentation?StudyInstanceUIDs=1.2.3"
    assert client.get(route)["Location"] == "/accounts/login/?next=/viewer/segmentation%3FStudyInstanceUIDs%3D1.2.3"
    client.force_login(reader)
    page = client.get(route)
    assert page.status_code == 200 and b"app-config.js" in page.content
    assert page["X-Frame-Options"] == "SAMEORIGIN" and page["Cache-Control"] == "no-cache"

    bundle = client.get("/viewer/app.bundle.0123456789abcdef.js", HTTP_ACCEPT_ENCODING="gzip, br")
    assert bundle["Content-Encoding"] == "gzip" and b"".join(bundle.streaming_content) == b"\x1f\x8bgzipped"
    assert bundle["Cache-Control"] == "public, max-age=31536000, immutable" and bundle["Vary"] == "Accept-Encoding"
    assert bundle["Content-Type"] == "text/javascript" and "Content-Disposition" not in bundle
    plain = client.get("/viewer/app.bundle.0123456789abcdef.js")
    assert "Content-Encoding" not in plain and b"".join(plain.streaming_content).startswith(b"console.log")
    logo = client.get("/viewer/assets/logo.svg")
    assert logo.status_code == 200 and logo["Cache-Control"] == "no-cache"
    assert client.get("/viewer/assets/logo.svg", HTTP_IF_MODIFIED_SINCE=logo["Last-Modified"]).status_code == 304
    assert client.get("/viewer/missing.bundle.js").status_code == 404
    (site.parent / "outside.txt").write_text("not the viewer's")  # exists, one level above the viewer's files
    assert client.get("/viewer/../outside.txt").status_code == 404
    assert client.post("/viewer/app.bundle.0123456789abcdef.js").status_code == 405


def test_the_worklist_counts_in_a_fixed_number_of_queries(client, make_campaign, django_assert_max_num_queries):
    campaign = make_campaign(k=2, studies=3, first_study=4)
    reader = campaign.readers[0]
    client.force_login(reader)
    page = client.get("/reading/")
    assert page.status_code == 200 and b"Waiting for a reader" in page.content
    assert re.search(rb'data-count="available">3<', page.content)
    for _ in range(2):
        assert campaign.client(reader).post(f"/api/v1/projects/{campaign.project_id}/next-case").status_code == 200
        campaign.client(reader).post(f"/api/v1/cases/{_open_case(reader)}/read",
                                     {"answers": {"finding": "A", "likelihood": 2}, "confidence": 3, "submit": True,
                                      "base_version": 0}, format="json")
    campaign.client(reader).post(f"/api/v1/projects/{campaign.project_id}/next-case")
    with django_assert_max_num_queries(12):
        page = client.get("/reading/")
    html = page.content.decode()
    assert re.search(r'data-count="open">1<', html) and re.search(r'data-count="submitted">2<', html)
    assert re.search(r'data-count="available">0<', html) and "Continue" in html


def _open_case(reader) -> int:
    from annotation.models import Assignment

    return Assignment.objects.filter(reader=reader, state="claimed").values_list("case_id", flat=True).first()


def test_the_reading_page_shows_only_cases_you_may_see(client, make_campaign, make_user):
    campaign = make_campaign(k=2, studies=1, first_study=4)
    reader = campaign.readers[0]
    case_id = campaign.client(reader).post(f"/api/v1/projects/{campaign.project_id}/next-case").json()["case"]["id"]
    client.force_login(reader)
    page = client.get(f"/reading/cases/{case_id}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert f'src="/viewer/segmentation?StudyInstanceUIDs={campaign.study_uids[0]}"' in html
    assert 'data-digit="2"' in html and 'name="q-finding"' in html and 'name="confidence"' in html
    assert "token=" not in html  # the viewer on Okapi's own origin gets its token from app-config.js
    client.force_login(campaign.outsider)
    assert client.get(f"/reading/cases/{case_id}/").status_code == 404
