"""Campaign fixtures: real studies from ../shared/data, a lead, readers, an adjudicator, a data scientist."""

import io
from dataclasses import dataclass, field

import numpy as np
import pytest
from rest_framework.test import APIClient

# One study each: small real files of varied kinds (and one real 28-slice CT series for segmentations).
STUDY_SOURCES = [
    "multiframe_and_codecs_pydicom_data/MR2_J2KR.dcm",
    "multiframe_and_codecs_pydicom_data/OBXXXX1A_rle_2frame.dcm",
    "multiframe_and_codecs_pydicom_data/emri_small_jpeg_2k_lossless.dcm",
    "multiframe_and_codecs_pydicom_data/eCT_Supplemental.dcm",
    "seg_sr/dcmqi_liver_ct3slice/ct",
    "transfer_syntaxes/dcm_qa_ts/1.dcm",
    "series/ct_head_phantom_philips_ingenuity_28sl",
]

SCHEMA = {
    "questions": [
        {"key": "finding", "label": "Finding", "type": "single_choice",
         "options": [{"value": "A", "label": "Normal"}, {"value": "B", "label": "Abnormal"},
                     {"value": "C", "label": "Uncertain"}]},
        {"key": "likelihood", "label": "Likelihood of disease", "type": "ordinal", "min": 1, "max": 5},
        {"key": "signs", "type": "multiple_choice", "options": ["nodule", "effusion", "mass"], "required": False},
        {"key": "contrast", "type": "yes_no", "required": False},
    ],
    "segments": [
        {"name": "Lesion", "color": "#e6194b", "code": {"scheme": "SCT", "value": "52988006", "meaning": "Lesion"}},
        {"name": "Organ", "color": "#3cb44b"},
    ],
    "free_text": True,
    "confidence": {"min": 1, "max": 5},
}


def npz(**masks) -> io.BytesIO:
    """Binary masks named by segmentation label, as the mask upload takes them (an .npz file)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **masks)
    buf.seek(0)
    buf.name = "masks.npz"
    return buf


def api_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@dataclass
class Campaign:
    project_id: int
    lead: object
    readers: list
    adjudicator: object
    scientist: object
    outsider: object
    study_uids: list[str]
    clients: dict = field(default_factory=dict)

    def client(self, who) -> APIClient:
        return self.clients[who.username]


@pytest.fixture(scope="session")
def study_paths(shared_data):
    from pathlib import Path

    out = []
    for rel in STUDY_SOURCES:
        p = Path(shared_data) / "dicom" / rel
        out.append(sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else [p])
    return out


@pytest.fixture
def ingest_studies(db, study_paths):
    """Store the real studies as ``owner`` (a lead's upload); return their StudyInstanceUIDs in order."""
    from imaging.services.ingest import ingest_file

    def run(owner, count: int = len(STUDY_SOURCES), first: int = 0) -> list[str]:
        uids = []
        for paths in study_paths[first:first + count]:
            results = [ingest_file(str(p), user=owner, source="test") for p in paths]
            assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
            uids.append(results[0].study_uid)
        return uids

    return run


@pytest.fixture
def make_campaign(make_user, token_for, ingest_studies):
    """A campaign through the API: lead creates it, adds three readers, an adjudicator and a data scientist,
    and the studies as cases in order."""

    def make(*, k: int = 3, threshold: float = 0.6, studies: int = len(STUDY_SOURCES), schema=None,
             prefix: str = "", first_study: int = 0) -> Campaign:
        lead = make_user("lead", f"{prefix}lead")
        readers = [make_user("radiologist", f"{prefix}reader_{c}") for c in "abc"]
        adjudicator = make_user("radiologist", f"{prefix}adjudicator")
        scientist = make_user("data_scientist", f"{prefix}scientist")
        outsider = make_user("radiologist", f"{prefix}outsider")
        people = [lead, *readers, adjudicator, scientist, outsider]
        clients = {u.username: api_client(token_for(u)) for u in people}
        uids = ingest_studies(lead, studies, first_study)
        lc = clients[lead.username]
        resp = lc.post("/api/v1/projects", {"name": f"{prefix}Rare lung campaign", "reads_per_case": k,
                                            "agreement_threshold": threshold, "schema": schema or SCHEMA},
                       format="json")
        assert resp.status_code == 201, resp.content
        pid = resp.json()["id"]
        for user, role in [*((r, "radiologist") for r in readers), (adjudicator, "adjudicator"),
                           (scientist, "data_scientist")]:
            r = lc.post(f"/api/v1/projects/{pid}/members", {"username": user.username, "role": role}, format="json")
            assert r.status_code == 201, r.content
        r = lc.post(f"/api/v1/projects/{pid}/cases", {"study_uids": uids}, format="json")
        assert r.status_code == 201 and r.json() == {"added": len(uids), "skipped": 0}, r.content
        return Campaign(pid, lead, readers, adjudicator, scientist, outsider, uids, clients)

    return make
