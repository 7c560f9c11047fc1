"""Live campaign events over websockets on the real channel layer (Redis): leads hear of reads, consensus and
adjudication as they happen; readers cannot subscribe (blinding), strangers learn nothing."""

import json

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

pytestmark = pytest.mark.django_db(transaction=True)


def _events_until(ws, wanted: str, limit: int = 50) -> list[dict]:
    events = []
    for _ in range(limit):
        event = json.loads(ws.recv(timeout=30))
        events.append(event)
        if event["type"] == wanted:
            return events
    raise AssertionError(f"no {wanted} event in {events}")


def test_lead_sees_reads_consensus_and_adjudication_live(okapi_server, make_campaign, token_for, settings):
    from django.conf import settings as live

    assert "redis" in live.CHANNEL_LAYERS["default"]["BACKEND"].lower()  # the real layer, not in-memory
    campaign = make_campaign(k=2, studies=1, threshold=0.9)
    p = campaign.project_id
    base = okapi_server.replace("http", "ws") + f"/ws/projects/{p}?token="
    with connect(base + token_for(campaign.lead), origin=okapi_server, open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30)) == {"type": "subscribed", "project": p}
        a, b = (campaign.client(r) for r in campaign.readers[:2])
        case = a.post(f"/api/v1/projects/{p}/next-case").json()["case"]["id"]
        assert _events_until(ws, "claim")[-1] == {"type": "claim", "case": case, "reader": "reader_a"}
        a.post(f"/api/v1/cases/{case}/read", {"answers": {"finding": "A", "likelihood": 1}, "confidence": 3,
                                               "submit": True, "base_version": 0}, format="json")
        read_event = _events_until(ws, "read")[-1]
        assert read_event["reader"] == "reader_a" and read_event["state"] == "submitted"
        assert "answers" not in read_event  # what a read says is fetched through the API, by who may see it
        b.post(f"/api/v1/projects/{p}/next-case")
        b.post(f"/api/v1/cases/{case}/read", {"answers": {"finding": "B", "likelihood": 1}, "confidence": 3,
                                               "submit": True, "base_version": 0}, format="json")
        needed = _events_until(ws, "adjudication_needed")[-1]
        assert needed["case"] == case and any("tie" in r for r in needed["reasons"])
        campaign.client(campaign.adjudicator).post(f"/api/v1/cases/{case}/adjudication",
                                                   {"answers": {"finding": "B", "likelihood": 1}}, format="json")
        assert _events_until(ws, "adjudicated")[-1] == {"type": "adjudicated", "case": case,
                                                        "adjudicator": "adjudicator"}


def test_readers_and_strangers_cannot_subscribe(okapi_server, make_campaign, token_for):
    campaign = make_campaign(k=2, studies=1)
    base = okapi_server.replace("http", "ws") + f"/ws/projects/{campaign.project_id}?token="
    for who in (campaign.readers[0], campaign.outsider):
        with pytest.raises(InvalidStatus) as refused:
            connect(base + token_for(who), origin=okapi_server, open_timeout=10)
        assert refused.value.response.status_code == 403
    with connect(base + token_for(campaign.scientist), origin=okapi_server, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
