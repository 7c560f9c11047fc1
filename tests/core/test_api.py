"""Core REST API: health, tokens, users, jobs, audit, the error shape and the OpenAPI schema."""

import pytest
from rest_framework.test import APIClient

from core.jobs import job_create
from core.models import ApiToken, AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return APIClient()


def bearer(api, token):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


def test_health_reports_database_broker_and_storage(api):
    response = api.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {body[p]["status"] for p in ("database", "broker", "storage")} == {"ok"}
    assert body["database"]["engine"] in {"postgresql", "sqlite"}


def test_health_says_which_part_is_down(api, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = api.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["broker"]["status"] == "error"
    assert response.json()["database"]["status"] == "ok"


def test_tokens_are_created_listed_and_revoked(api, make_user):
    user = make_user("data_scientist")
    api.force_authenticate(user)
    created = api.post("/api/v1/tokens", {"name": "laptop"}, format="json")
    assert created.status_code == 201
    raw = created.json()["token"]
    assert raw.startswith("okp_")
    assert ApiToken.objects.get().digest != raw  # only a digest is stored
    api.force_authenticate(None)
    assert bearer(api, raw).get("/api/v1/me").json()["username"] == user.username
    listed = api.get("/api/v1/tokens").json()
    assert [t["name"] for t in listed] == ["laptop"] and "token" not in listed[0]
    assert api.delete(f"/api/v1/tokens/{listed[0]['id']}").status_code == 200
    response = api.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json() == {"code": "authentication_failed", "message": "invalid, expired or revoked token",
                               "detail": {}}


def test_nobody_revokes_someone_elses_token(api, make_user, token_for):
    alice, bob = make_user(), make_user()
    token_for(alice)
    api.force_authenticate(bob)
    assert api.delete(f"/api/v1/tokens/{ApiToken.objects.get(user=alice).pk}").status_code == 404


def test_errors_have_one_shape(api, make_user):
    assert api.get("/api/v1/me").json()["code"] == "not_authenticated"
    api.force_authenticate(make_user("radiologist"))
    response = api.get("/api/v1/users")
    assert response.status_code == 403 and set(response.json()) == {"code", "message", "detail"}
    api.force_authenticate(make_user("admin"))
    response = api.post("/api/v1/users", {"username": "x", "role": "wizard", "password": "longenough"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid" and "role" in response.json()["detail"]
    assert api.get("/api/v1/audit?since=yesterday").json()["code"] == "invalid"


def test_admin_creates_users_with_roles(api, make_user):
    api.force_authenticate(make_user("admin"))
    response = api.post("/api/v1/users", {"username": "reader", "role": "radiologist", "password": "long-password"},
                        format="json")
    assert response.status_code == 201 and response.json()["role"] == "radiologist"


def test_jobs_are_visible_to_their_creator_and_admins_only(api, make_user):
    owner, other = make_user("data_scientist"), make_user("data_scientist")
    job = job_create(kind="export", user=owner)
    api.force_authenticate(owner)
    assert api.get(f"/api/v1/jobs/{job.pk}").json()["state"] == "queued"
    api.force_authenticate(other)
    assert api.get(f"/api/v1/jobs/{job.pk}").status_code == 404
    api.force_authenticate(make_user("admin"))
    assert api.get(f"/api/v1/jobs/{job.pk}").status_code == 200


def test_audit_log_is_for_admins_and_filterable(api, make_user):
    from core.audit import audit_record

    admin = make_user("admin")
    audit_record(user=admin, action="retrieve_frames", object_type="instance", object_id="1.2", study_uid="1.2.3")
    audit_record(user=admin, action="store", object_type="instance", object_id="1.3", study_uid="9.9")
    api.force_authenticate(make_user("lead"))
    assert api.get("/api/v1/audit").status_code == 403
    api.force_authenticate(admin)
    rows = api.get("/api/v1/audit?study_uid=1.2.3").json()["results"]
    assert [r["action"] for r in rows] == ["retrieve_frames"]
    # (only this test's rows: a live-server test before it may still be flushing its deferred audit rows)
    assert AuditEvent.objects.filter(study_uid__in=["1.2.3", "9.9"]).count() == 2


def test_openapi_schema_describes_the_api(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/v1/health", "/api/v1/tokens", "/api/v1/imaging/uploads", "/api/v1/jobs/{job_id}"):
        assert path in paths, path
    assert api.get("/api/docs/").status_code == 200


def test_deferred_audit_events_are_written_by_the_flush(make_user):
    from core.audit import audit_flush, audit_record

    user = make_user("radiologist")
    for n in range(3):
        audit_record(user=user, action="retrieve_frames", object_type="instance", object_id=f"1.2.{n}",
                     study_uid="1.2", detail={"frames": [1]}, defer=True)
    audit_flush()
    rows = AuditEvent.objects.filter(action="retrieve_frames").order_by("object_id")
    assert [r.object_id for r in rows] == ["1.2.0", "1.2.1", "1.2.2"]
    assert all(r.user == user and r.detail == {"frames": [1]} for r in rows)


@pytest.mark.django_db(transaction=True)
def test_a_user_with_audit_history_can_be_deleted_and_the_history_stays(make_user):
    from core.audit import audit_flush, audit_record

    gone, stays = make_user("radiologist"), make_user("radiologist")
    audit_record(user=gone, action="search", object_type="studies", defer=True)
    audit_record(user=stays, action="search", object_type="studies", defer=True)
    gone_pk = gone.pk
    gone.delete()
    audit_flush()
    rows = {r.username: r.user_id for r in AuditEvent.objects.filter(action="search")}
    assert rows == {gone.username: gone_pk, stays.username: stays.pk}
