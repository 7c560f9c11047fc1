"""Tests for imaging.dicom.deid: PS3.15 Basic Application Level Confidentiality Profile at ingest.

Real files come from the shared data set (../shared/data/dicom, see its MANIFEST.md): the MR series,
CT files, the dcmqi SEG with its 3 CT source images and the highdicom SR. Each de-identified
instance is written with save_as to memory and the bytes are searched for the original patient
name, patient ID, dates and instance UIDs. Synthetic datasets cover the rules the real files do not
exercise (curves, overlays, burned-in annotation, nested identity). Plain pytest, no Django.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import highdicom as hd
import pydicom
import pytest
from pydicom.datadict import dictionary_description, keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from imaging.dicom.deid import (
    DEIDENTIFICATION_METHOD,
    DeidConfig,
    DeidReport,
    deidentify,
    replacement_uid,
)
from imaging.dicom.deid_table import BASIC_PROFILE, CLASS_UID_TAGS, OKAPI_ADDITIONS, resolve_action

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("OKAPI_SHARED_DATA", ROOT.parent / "shared" / "data")) / "dicom"
MR_SERIES = DATA / "series" / "mr_brain_sag_mprage_siemens_skyra_192sl"
CT_J2K = DATA / "series" / "ct_body_siemens_biograph_20sl_j2k"
CT_PHILIPS = DATA / "series" / "ct_head_phantom_philips_ingenuity_28sl"
LIVER = DATA / "seg_sr" / "dcmqi_liver_ct3slice"
SR = DATA / "seg_sr" / "highdicom_small" / "sr_document.dcm"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")

CONFIG = DeidConfig(secret="okapi-test-secret")
GEOMETRY = (
    "Rows",
    "Columns",
    "PixelSpacing",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "SliceThickness",
    "WindowCenter",
    "WindowWidth",
    "RescaleSlope",
    "RescaleIntercept",
    "BitsAllocated",
    "BitsStored",
    "PhotometricInterpretation",
    "NumberOfFrames",
)


# -- helpers ----------------------------------------------------------------------------------
def _originals(ds: Dataset) -> set[str]:
    """Identifying strings of an original instance: patient name/ID, dates, instance UIDs."""
    found: set[str] = set()
    datasets = [ds] + ([ds.file_meta] if hasattr(ds, "file_meta") else [])
    for root in datasets:
        for elem in root.iterall():
            if elem.tag.is_private or elem.value in (None, ""):
                continue
            values = list(elem.value) if elem.VM > 1 else [elem.value]
            for value in (str(v).strip() for v in values):
                if elem.tag in (0x00100010, 0x00100020):
                    found.add(value)
                elif elem.VR in ("DA", "DT") and len(value) >= 8:
                    found.add(value[:8])
                elif elem.VR == "UI" and int(elem.tag) not in CLASS_UID_TAGS and not UID(value).type:
                    found.add(value)
    return {value for value in found if len(value) >= 5}


def _deid_bytes(path: Path) -> tuple[Dataset, Dataset, DeidReport, bytes]:
    """(original, de-identified, report, written bytes) for one file."""
    original = pydicom.dcmread(path)
    ds = pydicom.dcmread(path)
    report = deidentify(ds, CONFIG)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return original, ds, report, buffer.getvalue()


def _assert_clean(original: Dataset, ds: Dataset, report: DeidReport, data: bytes) -> Dataset:
    """Common checks on one de-identified instance; returns the re-read dataset."""
    for value in _originals(original):
        assert value.encode() not in data, f"original value {value!r} still in the written bytes"
    reread = pydicom.dcmread(io.BytesIO(data))
    assert not any(elem.tag.is_private for elem in reread.iterall()), "private attribute left"
    assert reread.PatientIdentityRemoved == "YES"
    method = reread[0x00120063]  # earlier de-identification steps are kept, ours is appended
    assert DEIDENTIFICATION_METHOD in (list(method.value) if method.VM > 1 else [method.value])
    codes = {
        (item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning)
        for item in reread.DeidentificationMethodCodeSequence
    }
    assert ("113100", "DCM", "Basic Application Confidentiality Profile") in codes
    assert reread.PatientName == reread.PatientID
    assert str(reread.PatientID).startswith(CONFIG.patient_id_prefix)
    assert re.fullmatch(r"OKAPI-[0-9a-f]{12}", str(reread.PatientID))
    assert reread.get("PatientBirthDate", "") == ""
    assert "PatientAge" not in reread
    assert reread.get("StudyDate", "") == ""
    for keyword in GEOMETRY:
        assert reread.get(keyword) == original.get(keyword), keyword
    if "PixelData" in original:
        assert reread.PixelData == original.PixelData
    sop = str(reread.get("SOPInstanceUID", "") or "")
    if sop:
        assert reread.file_meta.MediaStorageSOPInstanceUID == sop
    for old, new in report.uids_replaced.items():
        assert new == replacement_uid(old, CONFIG)
    return reread


# -- configuration and UID scheme ------------------------------------------------------------
def test_replacement_uid_is_deterministic_keyed_and_valid() -> None:
    uid = replacement_uid("1.2.3.4", CONFIG)
    assert uid == replacement_uid("1.2.3.4", CONFIG)
    assert uid != replacement_uid("1.2.3.5", CONFIG)
    assert uid != replacement_uid("1.2.3.4", DeidConfig(secret="another site"))
    assert uid.startswith("2.25.") and len(uid) <= 64
    assert UID(uid).is_valid
    long_root = DeidConfig(secret="s", uid_root="1.2.826.0.1.3680043.10.999.123456789.1234567.")
    other = replacement_uid("1.2.3.4", long_root)
    assert other.startswith(long_root.uid_root) and len(other) <= 64 and UID(other).is_valid
    no_dot = replacement_uid("1.2.3.4", DeidConfig(secret="s", uid_root="1.2.3"))
    assert no_dot.startswith("1.2.3.") and UID(no_dot).is_valid


def test_config_rejects_empty_secret_and_bad_root() -> None:
    with pytest.raises(ValueError):
        DeidConfig(secret="")
    with pytest.raises(ValueError):
        DeidConfig(secret="s", uid_root="2.25.x.")
    with pytest.raises(ValueError):
        DeidConfig(secret="s", uid_root="01.2.")


def test_table_matches_pydicom_dictionary() -> None:
    def normalise(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    assert len(BASIC_PROFILE) >= 300
    for tag, (action, name) in {**BASIC_PROFILE, **OKAPI_ADDITIONS}.items():
        assert keyword_for_tag(tag), f"{tag:08X} unknown to pydicom"
        assert normalise(dictionary_description(tag)) == normalise(name), f"{tag:08X} {name}"
        assert resolve_action(tag) in {"D", "Z", "X", "K", "U", "U*"}, action
    assert resolve_action(0x00100010) == "Z"  # Patient's Name (replaced by the pseudonym in code)
    assert resolve_action(0x00080022) == "X"  # Acquisition Date, X/Z
    assert resolve_action(0x00081030) == "X"  # Study Description
    assert resolve_action(0x00080023) == "D"  # Content Date, Z/D, Type 1 in SR/SEG
    assert resolve_action(0x00700084) == "Z"  # Content Creator's Name, Z/D
    assert resolve_action(0x00082112) == "U*"  # Source Image Sequence, X/Z/U*
    assert resolve_action(0x0020000D) == "U"
    assert resolve_action(0x00280030) is None  # Pixel Spacing: not in the table, kept


# -- synthetic datasets -----------------------------------------------------------------------
def _synthetic() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7.8.1"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = "HOSPITAL_PACS"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4.5.6.7.8.1"
    ds.StudyInstanceUID = "1.2.3.4.5.6.7.8.2"
    ds.SeriesInstanceUID = "1.2.3.4.5.6.7.8.3"
    ds.FrameOfReferenceUID = "1.2.840.10008.1.4.1.1"  # well-known (Talairach): kept
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-123456"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = "20240102"
    ds.InstitutionName = "General Hospital"
    ds.BurnedInAnnotation = "YES"
    ds.Rows, ds.Columns = 2, 2
    ds.PixelSpacing = [0.5, 0.5]
    ds.WindowCenter = 40
    ds.ImageComments = "patient Doe was anxious"
    ds.add_new(0x00091010, "LO", "private identity")  # private, without creator
    ds.add_new(0x50000010, "US", 2)  # curve
    ds.add_new(0x60000010, "US", 2)  # overlay rows
    ds.add_new(0x60003000, "OW", b"\x00\x01" * 2)  # overlay data
    ds.add_new(0x60004000, "LT", "overlay comment")
    ds.add_new(0x00400A25, "PN", "Safety^Net")  # a PN not in the table: dummied
    ds.add_new(0x00181200, "DA", "20240101")  # Date of Last Calibration, X
    other = Dataset()
    other.PatientID = "OTHER-99"
    other.PatientName = "Roe^Richard"
    ds.OtherPatientIDsSequence = Sequence([other])  # X
    nested = Dataset()
    nested.ReferencedSOPClassUID = "1.3.12.2.1107.5.9.1"  # private SOP class: kept
    nested.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.8.1"
    series = Dataset()
    series.SeriesInstanceUID = "1.2.3.4.5.6.7.8.3"
    series.ReferencedInstanceSequence = Sequence([nested])
    ds.ReferencedSeriesSequence = Sequence([series])
    observer = Dataset()
    observer.ValueType = "TEXT"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = (
        "121030",
        "DCM",
        "Subject ID",
    )
    observer.ConceptNameCodeSequence = Sequence([concept])
    observer.TextValue = "MRN-123456"
    person = Dataset()
    person.ValueType = "PNAME"
    person.PersonName = "Doe^Jane"
    ds.ContentSequence = Sequence([observer, person])
    return ds


def test_synthetic_rules() -> None:
    ds = _synthetic()
    report = deidentify(ds, CONFIG)
    pseudonym = ds.PatientID
    assert ds.PatientName == pseudonym == "OKAPI-" + pseudonym[6:]
    assert report.burned_in_annotation is True
    assert ds.BurnedInAnnotation == "YES"  # flagged, not cleaned
    assert ds.PatientBirthDate == "" and ds.PatientSex == "" and ds.StudyDate == ""
    for gone in ("InstitutionName", "ImageComments", "OtherPatientIDsSequence", "DateOfLastCalibration"):
        assert gone not in ds and gone in report.removed
    assert "SourceApplicationEntityTitle" not in ds.file_meta
    assert not [tag for tag in ds.keys() if tag.group in (0x0009, 0x5000, 0x6000)]
    assert "(0009,1010)" in report.removed
    assert ds[0x00400A25].value == "ANONYMIZED"
    assert ds.FrameOfReferenceUID == "1.2.840.10008.1.4.1.1"
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    new_sop = replacement_uid("1.2.3.4.5.6.7.8.1", CONFIG)
    assert ds.SOPInstanceUID == new_sop == ds.file_meta.MediaStorageSOPInstanceUID
    ref_series = ds.ReferencedSeriesSequence[0]
    assert ref_series.SeriesInstanceUID == ds.SeriesInstanceUID
    ref = ref_series.ReferencedInstanceSequence[0]
    assert ref.ReferencedSOPInstanceUID == new_sop
    assert ref.ReferencedSOPClassUID == "1.3.12.2.1107.5.9.1"
    assert ds.ContentSequence[0].TextValue == "ANONYMIZED"  # Subject ID content item
    assert ds.ContentSequence[1].PersonName == "ANONYMIZED"  # Person Name (0040,A123), D
    assert ds.Rows == 2 and ds.PixelSpacing == [0.5, 0.5] and ds.WindowCenter == 40
    assert report.uids_replaced == {
        "1.2.3.4.5.6.7.8.1": new_sop,
        "1.2.3.4.5.6.7.8.2": ds.StudyInstanceUID,
        "1.2.3.4.5.6.7.8.3": ds.SeriesInstanceUID,
    }
    buffer = io.BytesIO()
    ds.save_as(buffer)
    for original in (b"Doe^Jane", b"MRN-123456", b"19700101", b"20240102", b"HOSPITAL_PACS", b"1.2.3.4.5"):
        assert original not in buffer.getvalue()


def test_pseudonym_is_consistent_and_falls_back_without_patient_id() -> None:
    first, second = _synthetic(), _synthetic()
    deidentify(first, CONFIG)
    deidentify(second, CONFIG)
    assert first.PatientID == second.PatientID
    assert first.StudyInstanceUID == second.StudyInstanceUID
    anonymous = _synthetic()
    anonymous.PatientID = ""
    deidentify(anonymous, CONFIG)
    assert anonymous.PatientID == anonymous.PatientName != first.PatientID
    assert str(anonymous.PatientID).startswith("OKAPI-")


def test_existing_method_is_kept_and_extended() -> None:
    ds = _synthetic()
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Site scrubber v1"
    deidentify(ds, CONFIG)
    assert list(ds.DeidentificationMethod) == ["Site scrubber v1", DEIDENTIFICATION_METHOD]
    assert len(ds.DeidentificationMethodCodeSequence) == 1
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"


# -- real files -------------------------------------------------------------------------------
@needs_data
def test_mr_series_consistent_and_clean() -> None:
    files = sorted(MR_SERIES.glob("*.dcm"))
    assert len(files) == 192
    studies, series, frames, sops = set(), set(), set(), set()
    for path in files:
        original, ds, report, data = _deid_bytes(path)
        reread = _assert_clean(original, ds, report, data)
        assert reread.StudyInstanceUID == replacement_uid(original.StudyInstanceUID, CONFIG)
        studies.add(reread.StudyInstanceUID)
        series.add(reread.SeriesInstanceUID)
        frames.add(reread.FrameOfReferenceUID)
        sops.add(reread.SOPInstanceUID)
        assert report.burned_in_annotation is False
    assert len(studies) == len(series) == len(frames) == 1
    assert len(sops) == 192


@needs_data
@pytest.mark.parametrize("directory", [CT_J2K, CT_PHILIPS], ids=["ct_j2k", "ct_philips"])
def test_ct_files_clean_and_pixels_unchanged(directory: Path) -> None:
    path = sorted(p for p in directory.iterdir() if p.is_file())[0]
    original, ds, report, data = _deid_bytes(path)
    reread = _assert_clean(original, ds, report, data)
    assert (reread.pixel_array == original.pixel_array).all()
    assert reread.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID


@needs_data
def test_seg_references_follow_deidentified_ct() -> None:
    ct_uids: dict[str, str] = {}
    ct_series, ct_study, ct_frame, ct_patient = set(), set(), set(), set()
    for path in sorted((LIVER / "ct").glob("*.dcm")):
        original, ds, report, data = _deid_bytes(path)
        reread = _assert_clean(original, ds, report, data)
        ct_uids[original.SOPInstanceUID] = reread.SOPInstanceUID
        ct_series.add(reread.SeriesInstanceUID)
        ct_study.add(reread.StudyInstanceUID)
        ct_frame.add(reread.FrameOfReferenceUID)
        ct_patient.add(reread.PatientID)
    assert len(ct_series) == len(ct_study) == len(ct_frame) == len(ct_patient) == 1

    original, ds, report, data = _deid_bytes(LIVER / "liver_seg.dcm")
    seg = _assert_clean(original, ds, report, data)
    assert {seg.StudyInstanceUID} == ct_study
    assert {seg.FrameOfReferenceUID} == ct_frame
    assert {seg.PatientID} == ct_patient
    referenced = seg.ReferencedSeriesSequence[0]
    assert {referenced.SeriesInstanceUID} == ct_series
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == set(
        ct_uids.values()
    )
    for frame, original_frame in zip(
        seg.PerFrameFunctionalGroupsSequence, original.PerFrameFunctionalGroupsSequence, strict=True
    ):
        source = frame.DerivationImageSequence[0].SourceImageSequence[0]
        original_source = original_frame.DerivationImageSequence[0].SourceImageSequence[0]
        assert source.ReferencedSOPInstanceUID == ct_uids[original_source.ReferencedSOPInstanceUID]
    assert seg.ContentDate == "19000101"  # Z/D, Type 1 in SEG: dummy
    segmentation = hd.seg.segread(io.BytesIO(data))  # still a valid SEG for highdicom
    assert segmentation.number_of_segments == 1
    study, series_uid, sop = segmentation.get_source_image_uids()[0]
    assert (study, series_uid) == (next(iter(ct_study)), next(iter(ct_series)))
    assert sop in ct_uids.values()


@needs_data
def test_sr_clean_and_still_readable() -> None:
    original, ds, report, data = _deid_bytes(SR)
    reread = _assert_clean(original, ds, report, data)
    assert b"CompressedSamples^CT1" not in data and b"JFK IMAGING CENTER" not in data
    evidence = reread.PertinentOtherEvidenceSequence[0]
    assert evidence.StudyInstanceUID == reread.StudyInstanceUID
    ref = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == replacement_uid(
        original.PertinentOtherEvidenceSequence[0]
        .ReferencedSeriesSequence[0]
        .ReferencedSOPSequence[0]
        .ReferencedSOPInstanceUID,
        CONFIG,
    )
    observer_names = [
        item.TextValue
        for item in reread.ContentSequence
        if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == "121008"
    ]
    assert observer_names == ["ANONYMIZED"]
    sr = hd.sr.srread(io.BytesIO(data))
    assert len(sr.content.get_planar_roi_measurement_groups()) == 1


@needs_data
def test_every_other_shared_file_is_clean() -> None:
    """All the other shared DICOM files (codecs, big endian, multi-frame, SEG): same guarantees."""
    paths = [
        path
        for path in sorted(DATA.rglob("*"))
        if path.is_file() and path.suffix != ".md" and MR_SERIES not in path.parents
    ]
    assert len(paths) > 50
    for path in paths:
        original, ds, report, data = _deid_bytes(path)
        _assert_clean(original, ds, report, data)
