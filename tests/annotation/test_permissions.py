"""Object-level permissions as a matrix: each role against each endpoint, own project vs another project.

Rows are endpoints; columns are who asks. "outsider" is a radiologist of another project, "stranger_lead" a
lead of another project, "other_reader" a reader of this project who has not been given the case. Anything a
user may not see is 404 (no existence leak); what they may see but not do is 403.
"""

import pytest

from tests.annotation.conftest import api_client

WHO = ("lead", "reader", "other_reader", "adjudicator", "scientist", "outsider", "stranger_lead", "admin")


def _matrix(p: int, case: int, read: int, open_case: int) -> list[tuple[str, str, dict | None, dict[str, int]]]:
    """(method, url, body, expected status per asker)."""
    every = dict.fromkeys(WHO, 200) | {"outsider": 404, "stranger_lead": 404}
    lead_only = {"lead": 0, "reader": 403, "other_reader": 403, "adjudicator": 403, "scientist": 403,
                 "outsider": 404, "stranger_lead": 404, "admin": 0}
    oversee = every | {"reader": 403, "other_reader": 403}
    return [
        ("get", f"/api/v1/projects/{p}", None, every),
        ("patch", f"/api/v1/projects/{p}", {"description": "x"}, lead_only | {"lead": 200, "admin": 200}),
        ("get", f"/api/v1/projects/{p}/members", None, every),
        ("post", f"/api/v1/projects/{p}/members", {"username": "newbie", "role": "data_scientist"},
         lead_only | {"lead": 201, "admin": 201}),
        ("get", f"/api/v1/projects/{p}/schema", None, every),
        ("get", f"/api/v1/projects/{p}/schema/versions", None, every),
        ("post", f"/api/v1/projects/{p}/schema", {"definition": {"questions": [
            {"key": "q", "type": "yes_no"}]}}, lead_only | {"lead": 201, "admin": 201}),
        ("get", f"/api/v1/projects/{p}/cases", None, every),
        ("post", f"/api/v1/projects/{p}/cases", {"study_uids": ["1.2.3.4.5.6.7.8.9"]},
         lead_only | {"lead": 404, "admin": 404}),  # unknown study: 404 naming it, for those allowed to add
        ("post", f"/api/v1/projects/{p}/assignments", {"case": open_case, "reader": "nobody"},
         lead_only | {"lead": 400, "admin": 400}),
        ("get", f"/api/v1/projects/{p}/progress", None, oversee),
        ("get", f"/api/v1/projects/{p}/agreement", None, oversee),
        ("get", f"/api/v1/projects/{p}/adjudication-queue", None, oversee | {"scientist": 403}),
        ("get", f"/api/v1/cases/{case}", None, every | {"other_reader": 404}),
        ("get", f"/api/v1/cases/{case}/reads", None, every | {"other_reader": 404}),
        ("get", f"/api/v1/cases/{case}/read", None,
         every | {"other_reader": 404, "lead": 404, "adjudicator": 404, "scientist": 404, "admin": 404}),
        ("post", f"/api/v1/cases/{case}/read", {"answers": {"finding": "A"}, "base_version": 0},
         every | {"reader": 409, "other_reader": 404, "lead": 403, "adjudicator": 403, "scientist": 403,
                  "admin": 403}),  # the reader's read is at version 1 already: a stale base is refused
        ("post", f"/api/v1/cases/{case}/adjudication", {"answers": {"finding": "A", "likelihood": 1}},
         every | {"lead": 409, "adjudicator": 409, "admin": 409, "reader": 403, "other_reader": 404,
                  "scientist": 403}),  # allowed roles get 409: the case has 1 of its 3 reads
        ("get", f"/api/v1/reads/{read}", None,
         every | {"other_reader": 404, "scientist": 404}),
        ("get", f"/api/v1/reads/{read}/versions", None, every | {"other_reader": 404, "scientist": 404}),
        # last: it gives other_reader a case (perhaps this one), which would change the rows above
        ("post", f"/api/v1/projects/{p}/next-case", None,
         every | {"lead": 403, "adjudicator": 403, "scientist": 403, "admin": 403}),
    ]


@pytest.mark.django_db
def test_permission_matrix(make_campaign, make_user, token_for):
    own = make_campaign(k=3, studies=2)
    other = make_campaign(k=3, studies=1, prefix="x_", first_study=2)
    admin = make_user("admin", "root")
    make_user("data_scientist", "newbie")
    clients = {
        "lead": own.client(own.lead), "reader": own.client(own.readers[0]),
        "other_reader": own.client(own.readers[1]), "adjudicator": own.client(own.adjudicator),
        "scientist": own.client(own.scientist), "outsider": other.client(other.readers[0]),
        "stranger_lead": other.client(other.lead), "admin": api_client(token_for(admin)),
    }
    p = own.project_id
    claim = clients["reader"].post(f"/api/v1/projects/{p}/next-case").json()
    case = claim["case"]["id"]
    saved = clients["reader"].post(f"/api/v1/cases/{case}/read", {"answers": {"finding": "B"}, "base_version": 0},
                                   format="json")
    assert saved.status_code == 201
    read = saved.json()["id"]
    open_case = next(c["id"] for c in clients["lead"].get(f"/api/v1/projects/{p}/cases").json() if c["id"] != case)

    mismatches = []
    for method, url, body, expected in _matrix(p, case, read, open_case):
        for who in WHO:
            resp = getattr(clients[who], method)(url, body, format="json") if body is not None else \
                getattr(clients[who], method)(url)
            if resp.status_code != expected[who]:
                mismatches.append(f"{method.upper()} {url} as {who}: {resp.status_code} (expected {expected[who]}) "
                                  f"{resp.content[:160]!r}")
            if resp.status_code >= 400:
                assert set(resp.json()) >= {"code", "message"}, (url, who, resp.content)
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.django_db
def test_a_reader_never_sees_another_readers_read_of_an_open_case(make_campaign):
    campaign = make_campaign(k=3, studies=1)
    a, b = (campaign.client(r) for r in campaign.readers[:2])
    p = campaign.project_id
    case = a.post(f"/api/v1/projects/{p}/next-case").json()["case"]["id"]
    assert b.post(f"/api/v1/projects/{p}/next-case").json()["case"]["id"] == case
    ra = a.post(f"/api/v1/cases/{case}/read", {"answers": {"finding": "A", "likelihood": 2}, "confidence": 3,
                                                "submit": True, "base_version": 0}, format="json").json()
    # b has the case too, but sees only their own (none yet) of its reads, and not a's read by id.
    assert b.get(f"/api/v1/cases/{case}/reads").json() == []
    assert b.get(f"/api/v1/reads/{ra['id']}").status_code == 404
    assert b.get(f"/api/v1/reads/{ra['id']}/versions").status_code == 404
    case_view = b.get(f"/api/v1/cases/{case}").json()
    assert "consensus" not in case_view and "agreement" not in case_view
    # the lead and the adjudicator see it
    assert campaign.client(campaign.lead).get(f"/api/v1/reads/{ra['id']}").json()["answers"]["finding"] == "A"
    assert len(campaign.client(campaign.adjudicator).get(f"/api/v1/cases/{case}/reads").json()) == 1


@pytest.mark.django_db
def test_membership_grants_the_projects_studies_and_only_those(make_campaign, ingest_studies, make_user):
    from imaging.selectors import studies_for

    campaign = make_campaign(k=3, studies=2)
    other_lead = make_user("lead", "elsewhere")
    foreign = ingest_studies(other_lead, 1, 2)[0]  # a study in no project of theirs
    for user in (*campaign.readers, campaign.adjudicator, campaign.scientist):
        assert set(studies_for(user).values_list("study_uid", flat=True)) == set(campaign.study_uids)
        assert foreign not in set(studies_for(user).values_list("study_uid", flat=True))
    assert not studies_for(campaign.outsider).exists()


@pytest.mark.django_db
def test_read_validation_names_each_field(make_campaign):
    campaign = make_campaign(k=3, studies=1)
    reader = campaign.client(campaign.readers[0])
    case = reader.post(f"/api/v1/projects/{campaign.project_id}/next-case").json()["case"]["id"]
    resp = reader.post(f"/api/v1/cases/{case}/read", {
        "answers": {"finding": "Z", "likelihood": 9, "signs": ["nodule", "tumour"], "contrast": "maybe",
                    "colour": "red"}, "confidence": 7, "submit": True, "base_version": 0}, format="json")
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_read"
    detail = resp.json()["detail"]
    assert set(detail) == {"answers.finding", "answers.likelihood", "answers.signs", "answers.contrast",
                           "answers.colour", "confidence"}
    assert "A, B, C" in detail["answers.finding"] and "1 to 5" in detail["answers.likelihood"]
    assert "tumour" in detail["answers.signs"]
    missing = reader.post(f"/api/v1/cases/{case}/read", {"answers": {"finding": "A"}, "submit": True,
                                                          "base_version": 0}, format="json")
    assert missing.status_code == 400 and set(missing.json()["detail"]) == {"answers.likelihood", "confidence"}
    # a draft may be partial
    draft = reader.post(f"/api/v1/cases/{case}/read", {"answers": {"finding": "A"}, "base_version": 0},
                        format="json")
    assert draft.status_code == 201 and draft.json()["state"] == "draft"


@pytest.mark.django_db
def test_concurrent_edits_of_one_read_are_detected_and_versions_kept(make_campaign):
    from annotation.models import ReadVersion

    campaign = make_campaign(k=3, studies=1)
    reader = campaign.client(campaign.readers[0])
    case = reader.post(f"/api/v1/projects/{campaign.project_id}/next-case").json()["case"]["id"]
    first = reader.post(f"/api/v1/cases/{case}/read", {"answers": {"finding": "A"}, "base_version": 0},
                        format="json").json()
    tab1 = reader.post(f"/api/v1/cases/{case}/read", {"answers": {"finding": "B"}, "base_version": 1},
                       format="json")
    tab2 = reader.post(f"/api/v1/cases/{case}/read", {"answers": {"finding": "C"}, "base_version": 1},
                       format="json")
    assert tab1.status_code == 201 and tab2.status_code == 409
    assert tab2.json()["code"] == "version_conflict" and tab2.json()["detail"] == {"current_version": 2}
    versions = reader.get(f"/api/v1/reads/{first['id']}/versions").json()
    assert [(v["version"], v["answers"]["finding"]) for v in versions] == [(1, "A"), (2, "B")]
    assert ReadVersion.objects.filter(read_id=first["id"]).count() == 2


@pytest.mark.django_db
def test_schema_versions_and_refusals(make_campaign):
    campaign = make_campaign(k=3, studies=1)
    lead = campaign.client(campaign.lead)
    p = campaign.project_id
    bad = lead.post(f"/api/v1/projects/{p}/schema", {"definition": {
        "questions": [{"key": "Bad Key", "type": "single_choice", "options": ["x"]},
                      {"key": "s", "type": "ordinal", "min": 5, "max": 1, "labels": ["low", "high"]}],
        "segments": [{"name": "Lesion", "color": "red"}]}}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_schema"
    assert set(bad.json()["detail"]) == {"questions[0].key", "questions[0].options", "questions[1].min",
                                         "questions[1].labels", "segments[0].color"}
    good = lead.post(f"/api/v1/projects/{p}/schema", {"definition": {"questions": [
        {"key": "finding", "type": "yes_no"}]}}, format="json")
    assert good.status_code == 201 and good.json()["version"] == 2
    versions = lead.get(f"/api/v1/projects/{p}/schema/versions").json()
    assert [v["version"] for v in versions] == [2, 1]


@pytest.mark.django_db
def test_manual_assignment_and_expired_claims_return_to_the_pool(make_campaign):
    from datetime import timedelta

    from django.utils import timezone

    from annotation.models import Assignment

    campaign = make_campaign(k=1, studies=2)
    lead = campaign.client(campaign.lead)
    p = campaign.project_id
    cases = [c["id"] for c in lead.get(f"/api/v1/projects/{p}/cases").json()]
    r = lead.post(f"/api/v1/projects/{p}/assignments", {"case": cases[0], "reader": campaign.readers[1].username},
                  format="json")
    assert r.status_code == 201 and r.json()["expires_at"] is None
    again = lead.post(f"/api/v1/projects/{p}/assignments", {"case": cases[0], "reader": campaign.readers[2].username},
                      format="json")
    assert again.status_code == 409  # k=1: its only slot is taken
    a = campaign.client(campaign.readers[0])
    assert a.post(f"/api/v1/projects/{p}/next-case").json()["case"]["id"] == cases[1]
    # a abandons it: once the claim expires, another reader gets the case, and a can no longer submit
    Assignment.objects.filter(case_id=cases[1], reader=campaign.readers[0]).update(
        expires_at=timezone.now() - timedelta(seconds=1))
    c = campaign.client(campaign.readers[2])
    assert c.post(f"/api/v1/projects/{p}/next-case").json()["case"]["id"] == cases[1]
    late = a.post(f"/api/v1/cases/{cases[1]}/read", {"answers": {"finding": "A", "likelihood": 1}, "confidence": 2,
                                                      "submit": True, "base_version": 0}, format="json")
    assert late.status_code == 409 and late.json()["code"] == "claim_expired"
    assert a.post(f"/api/v1/projects/{p}/next-case").status_code == 204
