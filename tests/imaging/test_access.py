"""Who sees what: strangers get 401/404, the access hook grants, every retrieve is audited, CORS as configured."""

import pydicom
import pytest
import requests
from django.db.models import Q

from core.audit import audit_flush
from core.auth import token_revoke
from core.models import ApiToken, AuditEvent
from imaging import access
from tests.imaging._util import multipart_body

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stored(dicomweb, shared_data):
    """One real MR slice stored by the admin."""
    ds = pydicom.dcmread(shared_data / "dicom" / "transfer_syntaxes" / "dcm_qa_ts" / "1.dcm")
    dicomweb.store_instances([ds])
    return ds


def _urls(base: str, ds) -> list[str]:
    study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    instance = f"{base}/dicomweb/studies/{study}/series/{series}/instances/{sop}"
    return [f"{base}/dicomweb/studies/{study}/metadata", f"{base}/dicomweb/studies/{study}/series/{series}/metadata",
            f"{instance}/metadata", f"{instance}/frames/1", instance, f"{instance}/rendered",
            f"{base}/dicomweb/studies/{study}/thumbnail", f"{base}/dicomweb/studies/{study}/series",
            f"{instance}/bulk/7FE00010"]


def test_no_token_or_a_bad_token_is_401(stored, okapi_server):
    for url in _urls(okapi_server, stored) + [f"{okapi_server}/dicomweb/studies"]:
        assert requests.get(url, timeout=30).status_code == 401, url
        response = requests.get(url, headers={"Authorization": "Bearer okp_not-a-token"}, timeout=30)
        assert response.status_code == 401, url
        assert response.json()["code"] == "not_authenticated"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_token_is_refused_at_once(stored, okapi_server, make_user, token_for):
    user = make_user("admin")
    raw = token_for(user)
    headers = {"Authorization": f"Bearer {raw}"}
    assert requests.get(f"{okapi_server}/dicomweb/studies", headers=headers, timeout=30).status_code == 200
    token_revoke(token=ApiToken.objects.get(user=user))
    assert requests.get(f"{okapi_server}/dicomweb/studies", headers=headers, timeout=30).status_code == 401


def test_a_strangers_token_sees_nothing_and_gets_404(stored, okapi_server, make_user, token_for):
    headers = {"Authorization": f"Bearer {token_for(make_user('radiologist'))}"}
    assert requests.get(f"{okapi_server}/dicomweb/studies", headers=headers, timeout=30).json() == []
    for url in _urls(okapi_server, stored):
        response = requests.get(url, headers=headers, timeout=30)
        assert response.status_code == 404, url
        assert "Doe" not in response.text and str(stored.PatientName) not in response.text
    # nor can they add to it
    body, content_type = multipart_body([open(stored.filename, "rb").read()])
    response = requests.post(f"{okapi_server}/dicomweb/studies", data=body, timeout=30,
                             headers=headers | {"Content-Type": content_type})
    assert response.status_code == 409


def test_a_radiologist_cannot_create_studies_but_a_lead_can_and_only_the_lead_sees_them(
        shared_data, okapi_server, make_user, token_for):
    ds_path = shared_data / "dicom" / "transfer_syntaxes" / "dcm_qa_ts" / "2.dcm"
    body, content_type = multipart_body([open(ds_path, "rb").read()])

    def post(user):
        return requests.post(f"{okapi_server}/dicomweb/studies", data=body, timeout=30,
                             headers={"Authorization": f"Bearer {token_for(user)}", "Content-Type": content_type})

    radiologist, lead, other_lead = make_user("radiologist"), make_user("lead"), make_user("lead")
    refused = post(radiologist)
    assert refused.status_code == 409 and "project leads" in refused.headers["Warning"]
    assert post(lead).status_code == 200

    def visible(user):
        return requests.get(f"{okapi_server}/dicomweb/studies", timeout=30,
                            headers={"Authorization": f"Bearer {token_for(user)}"}).json()

    assert len(visible(lead)) == 1
    assert visible(other_lead) == []


def test_the_access_hook_grants_what_a_provider_names(stored, okapi_server, make_user, token_for):
    reader = make_user("radiologist")

    def grant(user):  # what annotation's project membership will register
        return Q(study_uid=stored.StudyInstanceUID) if user.pk == reader.pk else Q(pk__in=[])

    access.register_study_access(grant)
    try:
        headers = {"Authorization": f"Bearer {token_for(reader)}"}
        assert len(requests.get(f"{okapi_server}/dicomweb/studies", headers=headers, timeout=30).json()) == 1
        for url in _urls(okapi_server, stored):
            assert requests.get(url, headers=headers, timeout=30).status_code == 200, url
    finally:
        access._providers.remove(grant)


def test_every_retrieve_is_audited_with_who_and_where(stored, okapi_server, admin_user, token_for):
    headers = {"Authorization": f"Bearer {token_for(admin_user)}", "User-Agent": "audit-test"}
    urls = _urls(okapi_server, stored)
    before = AuditEvent.objects.count()
    for url in urls:
        assert requests.get(url, headers=headers, timeout=30).status_code == 200, url
    audit_flush()  # retrieves are audited through the deferred writer
    events = list(AuditEvent.objects.order_by("id"))[before:]
    assert len(events) == len(urls)
    assert {e.action for e in events} >= {"retrieve_metadata", "retrieve_frames", "retrieve_instances",
                                          "retrieve_rendered", "retrieve_bulkdata", "search"}
    assert all(e.user == admin_user and e.ip == "127.0.0.1" and e.user_agent == "audit-test" for e in events)
    assert all(e.study_uid == stored.StudyInstanceUID for e in events)


def test_audit_rows_cannot_be_changed(stored):
    from django.db import connection, transaction

    event = AuditEvent.objects.first()
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    if connection.vendor == "postgresql":  # and not even with raw SQL
        with pytest.raises(Exception, match="append-only"), transaction.atomic():
            AuditEvent.objects.filter(pk=event.pk).update(action="tampered")


def test_cors_preflight_allows_authorization_only_for_configured_origins(okapi_server, settings):
    settings.CORS_ALLOWED_ORIGINS = ["http://viewer.example.org"]
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization,accept"}
    response = requests.options(f"{okapi_server}/dicomweb/studies", timeout=30,
                                headers=preflight | {"Origin": "http://viewer.example.org"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://viewer.example.org"
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
    response = requests.options(f"{okapi_server}/dicomweb/studies", timeout=30,
                                headers=preflight | {"Origin": "http://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_bulk_data_path_into_a_plain_value_is_404_not_500(stored, okapi_server, admin_user, token_for):
    instance = (f"{okapi_server}/dicomweb/studies/{stored.StudyInstanceUID}/series/{stored.SeriesInstanceUID}"
                f"/instances/{stored.SOPInstanceUID}")
    headers = {"Authorization": f"Bearer {token_for(admin_user)}"}
    for path in ("00100010/0/00100020", "zz", "00100010/x/1"):
        assert requests.get(f"{instance}/bulk/{path}", headers=headers, timeout=30).status_code == 404, path
