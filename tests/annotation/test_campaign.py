"""A whole campaign on real DICOM through the API: three readers, k=3, disagreements, adjudication, consensus,
and agreement figures checked against values computed by hand (below)."""

import krippendorff
import numpy as np
import pytest

# Finding (single choice) and likelihood (1-5) per case, for reader_a, reader_b, reader_c.
FINDING = [("A", "A", "A"), ("A", "A", "B"), ("B", "B", "B"), ("A", "B", "C"), ("B", "B", "A"),
           ("A", "A", "A"), ("A", "B", "A")]
LIKELIHOOD = [(1, 1, 1), (2, 2, 2), (4, 5, 4), (3, 3, 3), (4, 4, 4), (1, 2, 1), (1, 3, 5)]

# By hand, finding:
#  per-case share of agreeing reader pairs: 1, 1/3, 1, 0, 1/3, 1, 1/3 -> percent agreement 4/7
#  Fleiss: P-bar = 4/7; category totals A 12, B 8, C 1 of 21 -> Pe = 209/441; kappa = 43/232
#  Cohen reader_a vs reader_b: po = 5/7, pe = (5*3 + 2*4)/49 = 23/49 -> kappa = 12/26
# Case agreement = mean over the two questions of the pair share (likelihood pairs: 1,1,1/3,1,1,1/3,0):
#  case 1: 1; 2: 2/3; 3: 2/3; 4: 1/2 but a tie on finding; 5: 2/3; 6: 2/3; 7: 1/6 -> with threshold 0.6,
#  cases 4 (tie) and 7 (1/6) go to adjudication, the others reach consensus by majority (likelihood: median).
EXPECTED_AGREEMENT = [1, 2 / 3, 2 / 3, 1 / 2, 2 / 3, 2 / 3, 1 / 6]
EXPECTED_CONSENSUS = {0: ("A", 1), 1: ("A", 2), 2: ("B", 4), 4: ("B", 4), 5: ("A", 1)}


def _read_all(campaign, reader_index: int) -> list[int]:
    """The reader pulls "next case" until none is left, answering from the tables; returns case order."""
    reader = campaign.readers[reader_index]
    client = campaign.client(reader)
    order = []
    while True:
        resp = client.post(f"/api/v1/projects/{campaign.project_id}/next-case")
        if resp.status_code == 204:
            return order
        assert resp.status_code == 200, resp.content
        case = resp.json()["case"]
        i = campaign.study_uids.index(case["study_uid"])
        order.append(i)
        assert "consensus" not in case and "agreement" not in case  # blinded
        answers = {"finding": FINDING[i][reader_index], "likelihood": LIKELIHOOD[i][reader_index]}
        draft = client.post(f"/api/v1/cases/{case['id']}/read", {"answers": {"finding": answers["finding"]},
                                                                  "time_spent_seconds": 10, "base_version": 0},
                            format="json")
        assert draft.status_code == 201, draft.content
        sub = client.post(f"/api/v1/cases/{case['id']}/read",
                          {"answers": answers, "confidence": 4, "submit": True, "time_spent_seconds": 20 + i,
                           "base_version": draft.json()["version"]}, format="json")
        assert sub.status_code == 201, sub.content
        assert sub.json()["state"] == "submitted" and sub.json()["version"] == 2


@pytest.mark.django_db
def test_whole_campaign_with_adjudication_and_hand_computed_agreement(make_campaign, settings):
    settings.OKAPI_CLAIM_TOP_FEW = 1  # readers here pull seconds apart: no spreading over the top few
    campaign = make_campaign(k=3, threshold=0.6)
    lead = campaign.client(campaign.lead)
    pid = campaign.project_id

    # Each reader gets the cases in upload order, and each case exactly once.
    for r in range(3):
        assert _read_all(campaign, r) == list(range(7))

    cases = {c["study_uid"]: c for c in lead.get(f"/api/v1/projects/{pid}/cases").json()}
    by_index = [cases[u] for u in campaign.study_uids]
    for i, case in enumerate(by_index):
        assert case["reads_submitted"] == 3
        assert case["agreement"] == pytest.approx(EXPECTED_AGREEMENT[i], abs=1e-6)
        if i in EXPECTED_CONSENSUS:
            assert case["state"] == "consensus" and case["consensus_source"] == "majority"
            finding, likelihood = EXPECTED_CONSENSUS[i]
            assert case["consensus"]["answers"] == {"finding": finding, "likelihood": likelihood}
        else:
            assert case["state"] == "adjudication" and case["consensus"] is None
    assert by_index[3]["consensus_detail"]["questions"]["finding"]["tie"] is True
    assert by_index[3]["consensus_detail"]["questions"]["finding"]["votes"] == {"A": 1, "B": 1, "C": 1}

    # Adjudication queue: lowest agreement first.
    queue = campaign.client(campaign.adjudicator).get(f"/api/v1/projects/{pid}/adjudication-queue").json()
    assert [c["id"] for c in queue] == [by_index[6]["id"], by_index[3]["id"]]

    adj = campaign.client(campaign.adjudicator)
    reads = adj.get(f"/api/v1/cases/{by_index[3]['id']}/reads").json()
    assert len(reads) == 3  # the adjudicator sees every read
    reader_c_read = next(r for r in reads if r["reader"] == campaign.readers[2].username)
    r = adj.post(f"/api/v1/cases/{by_index[3]['id']}/adjudication", {"chosen_read": reader_c_read["id"],
                                                                      "note": "C is right"}, format="json")
    assert r.status_code == 201, r.content
    bad = adj.post(f"/api/v1/cases/{by_index[6]['id']}/adjudication", {"answers": {"finding": "Z"}}, format="json")
    assert bad.status_code == 400 and "answers.finding" in bad.json()["detail"]
    r = adj.post(f"/api/v1/cases/{by_index[6]['id']}/adjudication",
                 {"answers": {"finding": "A", "likelihood": 3}}, format="json")
    assert r.status_code == 201, r.content

    case4 = lead.get(f"/api/v1/cases/{by_index[3]['id']}").json()
    assert case4["state"] == "consensus" and case4["consensus_source"] == "adjudication"
    assert case4["consensus"]["answers"] == {"finding": "C", "likelihood": 3}
    case7 = lead.get(f"/api/v1/cases/{by_index[6]['id']}").json()
    assert case7["consensus"]["answers"] == {"finding": "A", "likelihood": 3}

    # A read can no longer change once its case has its consensus.
    reader_a = campaign.client(campaign.readers[0])
    late = reader_a.post(f"/api/v1/cases/{by_index[0]['id']}/read",
                         {"answers": {"finding": "B", "likelihood": 1}, "confidence": 3, "submit": True,
                          "base_version": 2}, format="json")
    assert late.status_code == 409 and late.json()["code"] == "case_closed"

    stats = lead.get(f"/api/v1/projects/{pid}/agreement").json()
    names = [u.username for u in campaign.readers]
    assert stats["cases"] == 7 and stats["readers"] == names
    finding = stats["questions"]["finding"]
    assert finding["percent_agreement"]["value"] == pytest.approx(4 / 7, abs=1e-4)
    assert finding["fleiss_kappa"]["value"] == pytest.approx(43 / 232, abs=1e-4)
    pair_ab = next(p for p in finding["cohen_kappa"] if p["readers"] == names[:2])
    assert pair_ab["value"] == pytest.approx(12 / 26, abs=1e-4)
    assert pair_ab["ci_low"] < pair_ab["value"] < pair_ab["ci_high"]
    codes = {"A": 0, "B": 1, "C": 2}
    reliability = np.array([[codes[f[r]] for f in FINDING] for r in range(3)], dtype=float)
    expected_alpha = krippendorff.alpha(reliability_data=reliability, level_of_measurement="nominal")
    assert finding["krippendorff_alpha_nominal"]["value"] == pytest.approx(expected_alpha, abs=1e-4)
    ordinal = krippendorff.alpha(reliability_data=np.array(LIKELIHOOD, dtype=float).T, level_of_measurement="ordinal")
    assert stats["questions"]["likelihood"]["krippendorff_alpha_ordinal"]["value"] == pytest.approx(ordinal, abs=1e-4)
    # Reader vs consensus (A,A,B,C,B,A,A): reader_a 6/7, reader_b 5/7, reader_c 5/7.
    vs = {row["reader"]: row["agreement"]["value"] for row in finding["reader_vs_consensus"]}
    assert vs == pytest.approx({names[0]: 6 / 7, names[1]: 5 / 7, names[2]: 5 / 7}, abs=1e-4)

    progress = lead.get(f"/api/v1/projects/{pid}/progress").json()
    assert progress["cases"] == {"open": 0, "adjudication": 0, "consensus": 7, "total": 7}
    assert progress["reads"]["submitted"] == 21 and progress["reads"]["fraction_done"] == 1.0
    assert [(r["reader"], r["submitted"]) for r in progress["readers"]] == [(n, 7) for n in names]
    # Time per read is the sum over versions: 10 (draft) + 20 + case index.
    assert progress["median_seconds_per_read"] == 33.0


@pytest.mark.django_db
def test_progress_is_a_bounded_number_of_queries(make_campaign, django_assert_max_num_queries):
    from annotation.models import Project
    from annotation.progress import project_progress

    campaign = make_campaign(k=2, studies=3)
    for r in range(2):
        _read_all(campaign, r)
    project = Project.objects.get(pk=campaign.project_id)
    with django_assert_max_num_queries(4):
        summary = project_progress(project)
    assert summary["cases"]["consensus"] + summary["cases"]["adjudication"] == 3
