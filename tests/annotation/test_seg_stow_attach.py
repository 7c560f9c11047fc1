"""A reader's DICOM SEG stored by STOW-RS (as OHIF saves one) joins their read, in the same transaction, and stays
hidden from the other readers; a SEG that cannot join a read is refused with its reason and nothing is kept."""

import io

import numpy as np
import pydicom
import pytest
import requests

from tests.imaging._util import multipart_body

pytestmark = pytest.mark.django_db(transaction=True)

LIVER_CT = 4  # index in STUDY_SOURCES: 3 real CT slices of 512x512 (dcmqi)


def _seg_bytes(study_uid: str, labels=("Lesion",)) -> tuple[bytes, np.ndarray]:
    """A binary SEG drawn on the study's CT series (highdicom, through annotation.segmentation)."""
    from annotation.segmentation import SegmentSpec, masks_to_seg
    from imaging import storage
    from imaging.models import Instance

    sources = []
    for inst in Instance.objects.filter(series__study__study_uid=study_uid).exclude(series__modality="SEG"):
        with storage.open_file(inst.file) as fh:
            sources.append(pydicom.dcmread(fh, stop_before_pixels=True))
    mask = np.zeros((3, 512, 512), dtype=np.uint8)
    mask[1, 200:260, 180:250] = 1
    specs = SegmentSpec.from_schema([{"name": name, "color": "#e6194b"} for name in labels])
    seg = masks_to_seg(sources, {spec.number: mask for spec in specs}, specs, content_creator="OHIF^Reader")
    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), mask


def _extra_image(study_uid: str) -> bytes:
    """One of the study's CT slices again, as a new instance of a new series of the same study."""
    from pydicom.uid import generate_uid

    from imaging import storage
    from imaging.models import Instance

    inst = Instance.objects.filter(series__study__study_uid=study_uid, series__modality="CT").first()
    with storage.open_file(inst.file) as fh:
        ds = pydicom.dcmread(fh)
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _stow(server: str, token: str, part: bytes) -> requests.Response:
    body, content_type = multipart_body([part])
    return requests.post(f"{server}/dicomweb/studies", data=body, timeout=60,
                         headers={"Authorization": f"Bearer {token}", "Content-Type": content_type,
                                  "Accept": "application/dicom+json"})


def _series(server: str, token: str, study_uid: str) -> set[str]:
    r = requests.get(f"{server}/dicomweb/studies/{study_uid}/series", timeout=30,
                     headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return {item["0020000E"]["Value"][0] for item in r.json()}


def test_a_readers_stowed_seg_becomes_a_version_of_their_read_hidden_from_other_readers(
        okapi_server, make_campaign, token_for):
    from annotation.models import Read, ReadVersion
    from imaging.models import Instance

    campaign = make_campaign(k=2, studies=1, first_study=LIVER_CT)
    a, b = campaign.readers[:2]
    ca, cb = campaign.client(a), campaign.client(b)
    p, study = campaign.project_id, campaign.study_uids[0]
    case = ca.post(f"/api/v1/projects/{p}/next-case").json()["case"]["id"]
    assert cb.post(f"/api/v1/projects/{p}/next-case").json()["case"]["id"] == case
    draft = ca.post(f"/api/v1/cases/{case}/read", {"answers": {"finding": "B"}, "confidence": 4,
                                                   "free_text": "left lobe", "base_version": 0}, format="json")
    assert draft.status_code == 201, draft.content
    token_a, token_b = token_for(a), token_for(b)
    before = _series(okapi_server, token_b, study)

    part, _mask = _seg_bytes(study)
    sop_uid = pydicom.dcmread(io.BytesIO(part)).SOPInstanceUID
    stored = _stow(okapi_server, token_a, part)
    assert stored.status_code == 200, (stored.status_code, stored.text, stored.headers.get("Warning"))

    seg = Instance.objects.select_related("series").get(sop_uid=sop_uid)
    read = Read.objects.get(case_id=case, reader=a)
    assert read.version == 2 and read.segmentation_id == seg.pk
    v2 = ReadVersion.objects.get(read=read, version=2)
    assert v2.segmentation_id == seg.pk and v2.state == "draft"
    assert (v2.answers, v2.confidence, v2.free_text) == ({"finding": "B"}, 4, "left lobe")
    mine = ca.get(f"/api/v1/cases/{case}/read").json()
    assert mine["version"] == 2 and mine["segmentation"]["sop_instance_uid"] == sop_uid

    # Blinding: reader b does not see the SEG series, in QIDO or by its metadata; reader a and the lead do.
    seg_series = seg.series.series_uid
    assert _series(okapi_server, token_b, study) == before and seg_series not in before
    assert seg_series in _series(okapi_server, token_a, study)
    assert seg_series in _series(okapi_server, token_for(campaign.lead), study)
    hidden = requests.get(f"{okapi_server}/dicomweb/studies/{study}/series/{seg_series}/metadata", timeout=30,
                          headers={"Authorization": f"Bearer {token_b}"})
    assert hidden.status_code == 404

    # The page's next save, made from version 2, keeps the segmentation.
    submit = ca.post(f"/api/v1/cases/{case}/read", {"answers": {"finding": "B", "likelihood": 4}, "confidence": 4,
                                                    "submit": True, "base_version": 2}, format="json")
    assert submit.status_code == 201, submit.content
    assert submit.json()["segmentation"]["sop_instance_uid"] == sop_uid


def test_a_seg_that_cannot_join_a_read_is_refused_and_nothing_is_kept(okapi_server, make_campaign, token_for):
    from annotation.models import Read
    from imaging.models import Instance

    campaign = make_campaign(k=2, studies=1, first_study=LIVER_CT)
    a, c = campaign.readers[0], campaign.readers[2]
    p, study = campaign.project_id, campaign.study_uids[0]
    campaign.client(a).post(f"/api/v1/projects/{p}/next-case")
    count = Instance.objects.count()

    # A reader of the project without a claim on the case: refused (unattached, it would escape blinding).
    part, _ = _seg_bytes(study)
    refused = _stow(okapi_server, token_for(c), part)
    assert refused.status_code == 409, refused.text
    assert "no open claim" in refused.headers["Warning"]
    # Segment labels the schema does not have: refused with the allowed ones named.
    wrong, _ = _seg_bytes(study, labels=("Segment 1",))
    refused = _stow(okapi_server, token_for(a), wrong)
    assert refused.status_code == 409 and "Segment 1" in refused.headers["Warning"], refused.headers
    assert Instance.objects.count() == count and not Read.objects.filter(reader=a).exists()
    # Anything but a segmentation from a reader (an extra image, a report): refused, it would change the case
    # for every reader or show one reader's findings to the others.
    refused = _stow(okapi_server, token_for(a), _extra_image(study))
    assert refused.status_code == 409 and "readers store segmentations" in refused.headers["Warning"], refused.text
    assert Instance.objects.count() == count

    # The project lead's SEG (say, an import of reference segmentations) is stored as it is, attached to nothing.
    lead_part, _ = _seg_bytes(study)
    stored = _stow(okapi_server, token_for(campaign.lead), lead_part)
    assert stored.status_code == 200, stored.headers.get("Warning")
    assert Instance.objects.count() == count + 1 and not Read.objects.exists()
