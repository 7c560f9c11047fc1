"""QIDO-RS with the exact queries OHIF 3.13 sends (../shared/OHIF_DICOMWEB.md §1.1, §1.2)."""

import pytest
import requests

from tests.imaging._synthetic import synthetic_study

pytestmark = pytest.mark.django_db(transaction=True)

INCLUDE = "includefield=00081030%2C00080060%2C00080090%2C00100030"
COMMON = f"limit=101&offset=0&fuzzymatching=false&{INCLUDE}"


@pytest.fixture
def studies(dicomweb, shared_data):
    source = shared_data / "dicom" / "transfer_syntaxes" / "dcm_qa_ts" / "1.dcm"
    specs = [
        ("Doe^John", "PID123", "ACC1", "20240110", "Chest CT", "CT"),
        ("Doe^Jane", "PID124", "ACC2", "20240620", "Brain MRI", "MR"),
        ("Smith^Anna", "X-9", "ACC3", "20231231", "chest follow-up", "CT"),
        ("Brown^Bob", "PID125", "B77", "20250101", "Knee", "MR"),
    ]
    made = []
    for name, pid, acc, date, desc, modality in specs:
        ds = synthetic_study(source, patient_name=name, patient_id=pid, accession=acc, study_date=date,
                             description=desc, modality=modality)
        dicomweb.store_instances([ds])
        made.append(ds)
    return made


@pytest.fixture
def get(okapi_server, admin_user, token_for):
    headers = {"Authorization": f"Bearer {token_for(admin_user)}", "Accept": "application/dicom+json"}

    def get(path: str):
        response = requests.get(f"{okapi_server}/dicomweb{path}", headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "application/dicom+json"
        return response.json()

    return get


def names(results) -> list[str]:
    return sorted(r["00100010"]["Value"][0]["Alphabetic"] for r in results)


def test_study_list_with_ohif_wildcards_and_tag_form_patient_id(studies, get):
    assert names(get(f"/studies?PatientName=*doe*&{COMMON}")) == ["Doe^Jane", "Doe^John"]
    assert names(get(f"/studies?00100020=*PID12*&{COMMON}")) == ["Brown^Bob", "Doe^Jane", "Doe^John"]
    assert names(get(f"/studies?PatientID=X-9&{COMMON}")) == ["Smith^Anna"]
    assert names(get(f"/studies?AccessionNumber=*ACC*&{COMMON}")) == ["Doe^Jane", "Doe^John", "Smith^Anna"]
    assert names(get(f"/studies?StudyDescription=*chest*&{COMMON}")) == ["Doe^John", "Smith^Anna"]


def test_study_date_ranges_and_modalities(studies, get):
    assert names(get(f"/studies?StudyDate=20240101-20241231&{COMMON}")) == ["Doe^Jane", "Doe^John"]
    assert names(get(f"/studies?StudyDate=19700102-20231231&{COMMON}")) == ["Smith^Anna"]
    assert names(get(f"/studies?StudyDate=20240601-&{COMMON}")) == ["Brown^Bob", "Doe^Jane"]
    assert names(get(f"/studies?ModalitiesInStudy=CT%2CMR&{COMMON}")) == ["Brown^Bob", "Doe^Jane", "Doe^John",
                                                                             "Smith^Anna"]
    assert names(get(f"/studies?ModalitiesInStudy=CT&{COMMON}")) == ["Doe^John", "Smith^Anna"]


def test_includefield_and_default_attributes_ohif_reads(studies, get):
    (result,) = get(f"/studies?StudyInstanceUID={studies[0].StudyInstanceUID}&{COMMON}")
    for tag in ("0020000D", "00080020", "00080050", "00100020", "00100010", "00100030", "00201208",
                "00081030", "00080061", "00201206"):
        assert tag in result, tag
    assert result["00081030"]["Value"] == ["Chest CT"]
    assert result["00201208"]["Value"] == [1]
    assert result["00080061"]["Value"] == ["CT"]


def test_several_study_uids_and_paging(studies, get):
    uids = "%5C".join(s.StudyInstanceUID for s in studies[:3])  # OHIF joins with a backslash
    assert len(get(f"/studies?StudyInstanceUID={uids}&{COMMON}")) == 3
    page1 = get("/studies?limit=2&offset=0")
    page2 = get("/studies?limit=2&offset=2")
    assert len(page1) == 2 and len(page2) == 2
    assert {r["0020000D"]["Value"][0] for r in page1}.isdisjoint({r["0020000D"]["Value"][0] for r in page2})


def test_series_and_instances_searches(studies, get):
    study = studies[0]
    series = get(f"/studies/{study.StudyInstanceUID}/series?includefield=0008103E%2C00080021")
    assert [s["0020000E"]["Value"][0] for s in series] == [study.SeriesInstanceUID]
    assert series[0]["00201209"]["Value"] == [1]
    instances = get(f"/studies/{study.StudyInstanceUID}/series/{study.SeriesInstanceUID}/instances"
                    f"?limit=1&includefield=00080018")
    assert instances[0]["00080018"]["Value"] == [study.SOPInstanceUID]
    assert len(get("/series?Modality=MR")) == 2
    assert len(get(f"/instances?StudyInstanceUID={study.StudyInstanceUID}")) == 1


def test_dicomweb_client_search_uses_repeated_includefield(studies, dicomweb):
    found = dicomweb.search_for_studies(search_filters={"PatientName": "Doe*"}, fields=["StudyDescription",
                                                                                          "00100030"])
    assert names(found) == ["Doe^Jane", "Doe^John"]


def test_bad_query_parameters_are_refused_with_the_reason(studies, okapi_server, admin_user, token_for):
    headers = {"Authorization": f"Bearer {token_for(admin_user)}"}
    response = requests.get(f"{okapi_server}/dicomweb/studies?NotAKeyword=1", headers=headers, timeout=30)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_query"
    response = requests.get(f"{okapi_server}/dicomweb/studies?limit=abc", headers=headers, timeout=30)
    assert response.status_code == 400
    # a real attribute Okapi does not match on is ignored with a Warning, as PS3.18 asks
    response = requests.get(f"{okapi_server}/dicomweb/studies?InstitutionName=x", headers=headers, timeout=30)
    assert response.status_code == 200
    assert "InstitutionName" in response.headers["Warning"]


def test_study_list_query_count_does_not_grow_with_results(studies, admin_user, token_for):
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Bearer {token_for(admin_user)}")
    client.get("/dicomweb/studies?limit=1")  # the token's first use records last_used_at once
    counts = {}
    for query in (f"PatientName=Brown*&{COMMON}", COMMON):
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(f"/dicomweb/studies?{query}")
        counts[len(response.json())] = len(ctx.captured_queries)
    assert set(counts) == {1, 4}
    assert counts[1] == counts[4]
