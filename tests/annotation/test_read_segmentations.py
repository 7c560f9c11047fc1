"""Segmentations of reads on a real CT series: mask upload -> DICOM SEG in the archive linked to the read,
hidden from other readers until consensus, compared (Dice) and merged into a consensus SEG."""

import io

import numpy as np
import pydicom
import pytest

from tests.annotation.conftest import npz

LIVER_CT = 4  # index in STUDY_SOURCES: 3 real CT slices of 512x512 (dcmqi)


def _box(z: slice, y: slice, x: slice) -> np.ndarray:
    mask = np.zeros((3, 512, 512), dtype=np.uint8)
    mask[z, y, x] = 1
    return mask


def _series_uids(user, study_uid: str) -> set[str]:
    from imaging.selectors import series_for

    return set(series_for(user).filter(study__study_uid=study_uid).values_list("series_uid", flat=True))


@pytest.mark.django_db
def test_mask_upload_becomes_a_seg_linked_to_the_read_and_blinded_until_consensus(make_campaign):
    from annotation.models import Case, ReadVersion
    from annotation.segmentation import seg_to_masks, sort_source_datasets
    from imaging import storage
    from imaging.models import Instance
    from imaging.selectors import get_frame_source_for

    campaign = make_campaign(k=2, studies=1, first_study=LIVER_CT)
    a, b = campaign.readers[:2]
    ca, cb = campaign.client(a), campaign.client(b)
    p, study = campaign.project_id, campaign.study_uids[0]
    case = ca.post(f"/api/v1/projects/{p}/next-case").json()["case"]["id"]
    assert cb.post(f"/api/v1/projects/{p}/next-case").json()["case"]["id"] == case
    images = _series_uids(a, study)

    lesion_a = _box(slice(0, 3), slice(100, 140), slice(100, 140))
    up = ca.post(f"/api/v1/cases/{case}/read/segmentation", {"file": npz(Lesion=lesion_a), "base_version": 0},
                 format="multipart")
    assert up.status_code == 201, up.content
    read = up.json()
    assert read["version"] == 1 and read["segmentation"]["study_uid"] == study
    seg_series = read["segmentation"]["series_uid"]
    seg_instance = Instance.objects.get(sop_uid=read["segmentation"]["sop_instance_uid"])
    assert seg_instance.sop_class_uid == "1.2.840.10008.5.1.4.1.1.66.4"
    assert ReadVersion.objects.get(read_id=read["id"], version=1).segmentation_id == seg_instance.pk
    with storage.open_file(seg_instance.file) as fh:
        seg = pydicom.dcmread(fh)
    sources = []
    for inst in Instance.objects.filter(series__series_uid__in=images):
        with storage.open_file(inst.file) as fh:
            sources.append(pydicom.dcmread(fh, stop_before_pixels=True))
    assert np.array_equal(seg_to_masks(seg, sort_source_datasets(sources))[1], lesion_a.astype(bool))
    assert seg.SegmentSequence[0].SegmentLabel == "Lesion"

    # Blinding: b does not see a's SEG series (search or frames); a and the lead do.
    assert seg_series not in _series_uids(b, study) and _series_uids(b, study) == images
    assert seg_series in _series_uids(a, study) and seg_series in _series_uids(campaign.lead, study)
    meta = cb.get(f"/dicomweb/studies/{study}/series/{seg_series}/metadata")
    assert meta.status_code == 404
    assert ca.get(f"/dicomweb/studies/{study}/series/{seg_series}/metadata").status_code == 200
    from core.errors import NotFound

    with pytest.raises(NotFound):
        get_frame_source_for(b, study, seg_series, seg_instance.sop_uid)

    # A broken upload is refused with its reason and changes nothing.
    before = Instance.objects.count()
    junk = io.BytesIO(b"not dicom at all")
    junk.name = "seg.dcm"
    bad = ca.post(f"/api/v1/cases/{case}/read/segmentation", {"file": junk, "base_version": 1}, format="multipart")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_segmentation"
    wrong = ca.post(f"/api/v1/cases/{case}/read/segmentation",
                    {"file": npz(Lesion=np.ones((2, 512, 512), np.uint8)), "base_version": 1}, format="multipart")
    assert wrong.status_code == 400 and "shape" in wrong.json()["message"].lower()
    unknown = ca.post(f"/api/v1/cases/{case}/read/segmentation", {"file": npz(Tumour=lesion_a), "base_version": 1},
                      format="multipart")
    assert unknown.status_code == 400 and "Tumour" in unknown.json()["message"]
    assert Instance.objects.count() == before
    assert ca.get(f"/api/v1/cases/{case}/read").json()["version"] == 1

    # b draws an overlapping box; both submit the same findings: consensus, with Dice between the masks.
    lesion_b = _box(slice(0, 3), slice(100, 140), slice(120, 160))
    up_b = cb.post(f"/api/v1/cases/{case}/read/segmentation", {"file": npz(Lesion=lesion_b), "base_version": 0},
                   format="multipart")
    assert up_b.status_code == 201, up_b.content
    for client, version in ((ca, 1), (cb, 1)):
        r = client.post(f"/api/v1/cases/{case}/read", {"answers": {"finding": "B", "likelihood": 4},
                                                        "confidence": 4, "submit": True, "base_version": version},
                        format="json")
        assert r.status_code == 201, r.content
        assert r.json()["segmentation"] is not None  # the segmentation carries over to the submitted version
    done = Case.objects.get(pk=case)
    assert done.state == "consensus"
    pair = done.consensus_detail["masks"]["segments"]["Lesion"]["pairs"]
    (dice_ab,) = [v["dice"] for v in pair.values()]
    overlap = np.logical_and(lesion_a, lesion_b).sum()
    assert dice_ab == pytest.approx(2 * overlap / (lesion_a.sum() + lesion_b.sum()), abs=1e-6)  # 0.5 here
    consensus_seg = Instance.objects.get(sop_uid=done.consensus["segmentation"])
    with storage.open_file(consensus_seg.file) as fh:
        merged = seg_to_masks(pydicom.dcmread(fh), sort_source_datasets(sources))[1]
    # two readers: STAPLE keeps where both agree, and nothing outside either box
    assert merged[np.logical_and(lesion_a, lesion_b).astype(bool)].all()
    assert not merged[~np.logical_or(lesion_a, lesion_b).astype(bool)].any()
    # After consensus, the readers' segmentations are no longer hidden from each other.
    assert seg_series in _series_uids(b, study)
    stats = campaign.client(campaign.lead).get(f"/api/v1/projects/{p}/agreement").json()
    assert stats["masks"]["Lesion"][0]["dice_mean"] == pytest.approx(dice_ab, abs=1e-4)
