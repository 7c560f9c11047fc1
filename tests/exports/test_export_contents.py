"""What an export holds, built from a campaign on real DICOM: NIfTI geometry against SimpleITK's reading of
the same files, DICOM SEG that round-trips through highdicom onto the exported images, masks on the image
grid, de-identification, pseudonymous readers, tables, agreement, datasheet; and a MONAI step on its
datalist."""

import hashlib
import json

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from annotation.segmentation import sort_source_datasets
from tests.exports._util import build, source_of, unpack
from tests.exports.test_nifti_and_split import assert_same_as_simpleitk, read_itk

pytestmark = pytest.mark.django_db


def _pseudonym(kind, campaign, pk):
    from annotation.exports.selection import pseudonym

    return pseudonym(kind, campaign.project_id, pk)


def test_deidentified_export_of_a_real_campaign(make_labelled, shared_data, tmp_path):
    from annotation.models_export import Export
    from imaging.models import Study

    labelled = make_labelled(prefix="zq")  # distinctive usernames: searched for in every exported byte
    campaign = labelled.campaign
    built = build(campaign.project_id, images="both")
    export = built.export
    assert not built.reused and export.version == 1 and export.deidentified
    root = unpack(export, tmp_path / "export")

    # Content hash: SHA-256 of manifest.json, which lists every other file with its own hash.
    manifest_bytes = (root / "manifest.json").read_bytes()
    assert hashlib.sha256(manifest_bytes).hexdigest() == export.content_hash
    manifest = json.loads(manifest_bytes)
    listed = {f["path"] for f in manifest["files"]}
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"manifest.json"}
    assert listed == on_disk
    for f in manifest["files"]:
        assert hashlib.sha256((root / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    assert manifest["request"]["deidentified"] is True and manifest["schema_version"] == 1

    consensus = json.loads((root / "labels" / "consensus.json").read_text())
    assert len(consensus) == 6  # the tied ultrasound case waits for adjudication
    converted = 0
    for case in consensus:
        source = source_of(shared_data, case["study_uid"], campaign)
        for series in case["series"]:
            if series["image"] is None:
                continue
            converted += 1
            assert_same_as_simpleitk(root / series["image"], read_itk(source))
    assert converted == 5
    reasons = {r["case"]: r.get("not_converted", {}).get("code") for r in manifest["series"]}
    assert sorted(c for c in reasons.values() if c) == ["no_geometry"]  # the stripped enhanced MR
    assert "no_geometry" in (root / "README.md").read_text()

    # The consensus SEG round-trips through highdicom onto the exported (de-identified) DICOM images, and
    # agrees with the NIfTI mask, which lies on the image's grid.
    liver = next(c for c in consensus if source_of(shared_data, c["study_uid"], campaign).name == "ct")
    series = liver["series"][0]
    images = sort_source_datasets([pydicom.dcmread(p) for p in sorted((root / series["image"]).parent.glob(
        "dicom/*.dcm"))])
    seg = hd.seg.segread(root / series["consensus_seg"])
    assert seg.SeriesInstanceUID != "" and seg.FrameOfReferenceUID == images[0].FrameOfReferenceUID
    assert {s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence} == {images[0].SeriesInstanceUID}
    pixels = seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in images], segment_numbers=[1])
    mask = nib.load(root / series["consensus_mask"])
    image = nib.load(root / series["image"])
    assert np.array_equal(mask.affine, image.affine) and mask.shape == image.shape
    lesion = np.asanyarray(mask.dataobj).transpose(2, 1, 0) == 1
    assert np.array_equal(pixels[..., 0].astype(bool), lesion)
    both = np.logical_and(labelled.masks[0], labelled.masks[1]).astype(bool)
    assert lesion[both].all() and not lesion[~np.logical_or(labelled.masks[0], labelled.masks[1])].any()
    assert str(seg.ContentCreatorName) == "consensus"

    # Each reader's read: by pseudonym, with their own mask and SEG.
    names = {_pseudonym("reader", campaign, r.pk): r for r in campaign.readers[:2]}
    for pseudonym_, reader in names.items():
        files = series["reads"][pseudonym_]
        drawn = np.asanyarray(nib.load(root / files["mask"]).dataobj).transpose(2, 1, 0) == 1
        assert np.array_equal(drawn, labelled.masks[campaign.readers.index(reader)].astype(bool))
        assert str(pydicom.dcmread(root / files["seg"]).ContentCreatorName) == pseudonym_
    reads = json.loads((root / "reads" / "reads.json").read_text())
    assert len(reads) == 12 and {r["reader"] for r in reads} == set(names)
    assert all("free_text" not in r and "submitted_at" not in r for r in reads)
    csv_rows = (root / "reads" / "reads.csv").read_text().splitlines()
    assert csv_rows[0].startswith("case,reader,version,schema_version") and len(csv_rows) == 13

    # De-identified: no patient data, no usernames, no original UIDs anywhere in the archive's bytes.
    studies = Study.objects.filter(study_uid__in=campaign.study_uids)
    secrets = {u.username for u in [campaign.lead, *campaign.readers]}
    secrets |= {s.patient_identifier for s in studies if len(s.patient_identifier) > 4
                and not s.patient_identifier.isdigit()}  # "0010" or "99000" could be any number's digits
    secrets |= {part for s in studies for part in s.patient_name.split("^") if len(part) > 4}
    secrets |= set(campaign.study_uids)
    assert {"JANCT000", "crlab", "CompressedSamples"} <= secrets
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaked = [s for s in secrets if s.encode() in data]
            assert not leaked, (path, leaked)
    for path in root.rglob("*.dcm"):
        assert pydicom.dcmread(path, stop_before_pixels=True).PatientIdentityRemoved == "YES"

    # Tables, agreement and datasheet.
    rows = (root / "labels" / "consensus.csv").read_text().splitlines()
    assert rows[0].split(",")[:9] == ["case", "split", "class", "state", "consensus_source", "agreement", "reads",
                                      "series", "study_uid"] and "patient_id" not in rows[0]
    agreement = json.loads((root / "agreement.json").read_text())
    assert agreement["cases"] == 6 and agreement["readers"] == sorted(names)
    assert agreement["questions"]["finding"]["percent_agreement"]["value"] == 1.0
    assert agreement["masks"]["Lesion"][0]["dice_mean"] == pytest.approx(
        2 * both.sum() / (labelled.masks[0].sum() + labelled.masks[1].sum()), abs=1e-3)
    sheet = (root / "README.md").read_text()
    for needed in ("## Source", "## Label schema", "Consensus of `finding`", "| A | 3 |", "| B | 3 |",
                   "Readers (pseudonyms)", "## Agreement", "## De-identification", "PS3.15", "## Licence"):
        assert needed in sheet, needed
    assert Export.objects.count() == 1 and export.summary["counts"]["series_converted"] == 5


def test_monai_loads_the_datalist_and_trains_one_step(make_labelled, tmp_path):
    from monai.data import DataLoader, Dataset, load_decathlon_datalist
    from monai.networks.nets import UNet
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Resized, ScaleIntensityd

    labelled = make_labelled(studies=5)  # all but the 28-slice CT and one MR slice: quicker
    root = unpack(build(labelled.campaign.project_id, split={"validation": 0.0, "test": 0.0, "seed": 3}).export,
                  tmp_path / "export")
    items = load_decathlon_datalist(root / "datalist.json", is_segmentation=False, data_list_key="training")
    assert len(items) == 3 and all((root / i["image"]).exists() for i in items)  # MR2, eCT, liver CT
    assert {i["label"] for i in items} <= {0, 1, 2}
    assert json.loads((root / "datalist.json").read_text())["labels"] == {"0": "A", "1": "B", "2": "C"}
    transform = Compose([LoadImaged(keys="image"), EnsureChannelFirstd(keys="image"), ScaleIntensityd(keys="image"),
                         Resized(keys="image", spatial_size=(16, 16, 4))])
    batch = next(iter(DataLoader(Dataset(items, transform), batch_size=len(items))))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool3d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 3))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    before = [p.detach().clone() for p in net.parameters()]
    loss = torch.nn.functional.cross_entropy(net(batch["image"].float()), batch["label"].long())
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))

    seg_items = load_decathlon_datalist(root / "datalist_segmentation.json", is_segmentation=True,
                                        data_list_key="training")
    assert len(seg_items) == 1
    keys = ["image", "label"]
    seg_batch = next(iter(DataLoader(Dataset(seg_items, Compose([
        LoadImaged(keys=keys), EnsureChannelFirstd(keys=keys), ScaleIntensityd(keys="image"),
        Resized(keys=keys, spatial_size=(32, 32, 4), mode=("trilinear", "nearest"))])), batch_size=1)))
    assert np.array_equal(seg_batch["image"].affine, seg_batch["label"].affine)
    assert set(np.unique(seg_batch["label"].numpy()).tolist()) <= {0.0, 1.0}
    unet = UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,), num_res_units=0)
    loss = torch.nn.functional.cross_entropy(unet(seg_batch["image"].float()), seg_batch["label"][:, 0].long())
    loss.backward()
    assert torch.isfinite(loss)
