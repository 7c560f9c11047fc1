"""Export fixtures: a campaign on real DICOM from ../shared/data (tests/annotation's fixtures), read by two
readers through the API, with mask segmentations on the real 3-slice liver CT."""

from dataclasses import dataclass

import numpy as np
import pytest

from tests.annotation import conftest as annotation_fixtures
from tests.annotation.conftest import STUDY_SOURCES, npz

# The campaign fixtures of tests/annotation, used here by name.
study_paths = annotation_fixtures.study_paths
ingest_studies = annotation_fixtures.ingest_studies
make_campaign = annotation_fixtures.make_campaign

LIVER_CT = STUDY_SOURCES.index("seg_sr/dcmqi_liver_ct3slice/ct")
# (reader a, reader b) findings per study (index in STUDY_SOURCES): the ultrasound case ties, so it waits for
# adjudication; the others reach consensus.
FINDINGS = [("A", "A"), ("A", "C"), ("B", "B"), ("A", "A"), ("B", "B"), ("A", "A"), ("B", "B")]


def box(z: slice, y: slice, x: slice) -> np.ndarray:
    mask = np.zeros((3, 512, 512), dtype=np.uint8)
    mask[z, y, x] = 1
    return mask


@dataclass
class Labelled:
    campaign: object
    masks: dict  # reader index -> Lesion mask on the liver CT


def read_everything(campaign, masks: dict, first: int = 0) -> None:
    """Both readers pull every case and submit; on the liver CT each uploads a Lesion mask first."""
    for r, reader in enumerate(campaign.readers[:2]):
        client = campaign.client(reader)
        while True:
            resp = client.post(f"/api/v1/projects/{campaign.project_id}/next-case")
            if resp.status_code == 204:
                break
            assert resp.status_code == 200, resp.content
            case = resp.json()["case"]
            i = first + campaign.study_uids.index(case["study_uid"])
            base = 0
            if i == LIVER_CT:
                up = client.post(f"/api/v1/cases/{case['id']}/read/segmentation",
                                 {"file": npz(Lesion=masks[r]), "base_version": 0}, format="multipart")
                assert up.status_code == 201, up.content
                base = up.json()["version"]
            sub = client.post(f"/api/v1/cases/{case['id']}/read",
                              {"answers": {"finding": FINDINGS[i][r], "likelihood": 3 + (i == LIVER_CT) * r,
                                           "signs": ["nodule"]},
                               "confidence": 4, "free_text": f"note by {reader.username}", "submit": True,
                               "time_spent_seconds": 30, "base_version": base}, format="json")
            assert sub.status_code == 201, sub.content


READER_MASKS = {0: box(slice(0, 3), slice(100, 140), slice(100, 140)),
                1: box(slice(0, 2), slice(100, 140), slice(110, 150))}


@pytest.fixture
def make_labelled(make_campaign, settings):
    """Real studies (STUDY_SOURCES[first:first + studies]) read by two readers: every case but the ultrasound
    one reaches consensus, the liver CT with a consensus SEG merged from the readers' Lesion masks."""
    settings.OKAPI_CLAIM_TOP_FEW = 1

    def make(*, studies: int = len(STUDY_SOURCES), first: int = 0, prefix: str = "") -> Labelled:
        campaign = make_campaign(k=2, threshold=0.3, studies=studies, first_study=first, prefix=prefix)
        read_everything(campaign, READER_MASKS, first)
        return Labelled(campaign, READER_MASKS)

    return make


@pytest.fixture
def export_worker(start_worker):
    """`okapi worker --queues export` as its own process, on the test database and the test Redis."""
    return start_worker("export")
