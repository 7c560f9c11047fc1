"""The archive end to end over real HTTP with dicomweb-client: every file of ../shared/data/dicom is stored,
found, and served back with pixels equal to pydicom's decoding of the original."""

from collections import defaultdict

import numpy as np
import pydicom
import pytest
import requests
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian

from imaging.dicom.instance import NATIVE_SYNTAXES
from imaging.models import Instance, Study

pytestmark = pytest.mark.django_db(transaction=True)

PIXEL_MODULE = ["SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored",
                "HighBit", "PixelRepresentation", "PlanarConfiguration"]


def decode_served_frame(original: pydicom.Dataset, frame: bytes | bytearray, syntax: str) -> np.ndarray:
    """Decode one served frame the way a viewer would: a one-frame dataset in the announced syntax."""
    frame = bytes(frame)
    ds = pydicom.Dataset()
    for keyword in PIXEL_MODULE:
        if keyword in original:
            setattr(ds, keyword, original[keyword].value)
    ds.NumberOfFrames = 1
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    if syntax == ExplicitVRLittleEndian:
        ds.add_new(0x7FE00010, "OW" if original.BitsAllocated > 8 else "OB", frame)
    else:
        ds.add_new(0x7FE00010, "OB", encapsulate([frame]))
    return ds.pixel_array


def original_frame(path, index: int) -> np.ndarray:
    return pydicom.pixels.pixel_array(str(path), index=index)


def store_all(client, files) -> dict:
    by_folder = defaultdict(list)
    for path in files:
        by_folder[path.parent].append(path)
    stored = {}
    for paths in by_folder.values():
        for start in range(0, len(paths), 20):
            batch = paths[start:start + 20]
            response = client.store_instances([pydicom.dcmread(p) for p in batch])
            refs = response.get("ReferencedSOPSequence", [])
            assert "FailedSOPSequence" not in response, response
            assert len(refs) == len(batch)
    for instance in Instance.objects.select_related("series__study"):
        stored[instance.sop_uid] = instance
    return stored


def test_every_shared_file_stores_and_serves_identical_pixels(dicomweb, dicom_files):
    stored = store_all(dicomweb, dicom_files)
    assert len(stored) == len(dicom_files)
    assert not Study.objects.filter(study_uid="").exists()

    originals = {}
    for path in dicom_files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uid = str(ds.SOPInstanceUID) or str(ds.file_meta.MediaStorageSOPInstanceUID)
        originals[uid] = (path, ds)
    assert set(originals) == set(stored)

    checked_frames = 0
    for uid, instance in stored.items():
        path, ds = originals[uid]
        study, series = instance.series.study.study_uid, instance.series.series_uid
        meta = dicomweb.retrieve_instance_metadata(study, series, uid)
        assert meta["00080018"]["Value"] == [uid]
        if not instance.number_of_frames:
            assert "PixelData" not in ds
            continue
        assert meta["7FE00010"]["BulkDataURI"].startswith("http://127.0.0.1")
        numbers = list(range(1, instance.number_of_frames + 1))
        if len(numbers) > 12:  # long multi-frame: first, middle, last
            numbers = [1, len(numbers) // 2, len(numbers)]
        frames = dicomweb.retrieve_instance_frames(
            study, series, uid, numbers, media_types=(("application/octet-stream", "*"),))
        syntax = meta["00083002"]["Value"][0]
        stored_syntax = str(ds.file_meta.TransferSyntaxUID)
        assert syntax == (ExplicitVRLittleEndian if stored_syntax in NATIVE_SYNTAXES else stored_syntax)
        for number, frame in zip(numbers, frames, strict=True):
            served = decode_served_frame(ds, frame, syntax)
            expected = original_frame(path, number - 1)
            np.testing.assert_array_equal(served.reshape(expected.shape), expected, err_msg=f"{path} frame {number}")
            checked_frames += 1
    assert checked_frames > 240  # every image instance, several frames of each multi-frame


def test_compressed_frames_are_decoded_when_the_client_asks_for_native(dicomweb, shared_data):
    ts_dir = shared_data / "dicom" / "transfer_syntaxes" / "dcm_qa_ts"
    native = pydicom.dcmread(ts_dir / "1.dcm")
    for name in ("4.dcm", "5.dcm", "7.dcm", "9.dcm"):  # RLE, JPEG lossless, JPEG-LS, JPEG 2000
        ds = pydicom.dcmread(ts_dir / name)
        dicomweb.store_instances([ds])
        (frame,) = dicomweb.retrieve_instance_frames(ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                                     ds.SOPInstanceUID, [1],
                                                     media_types=(("application/octet-stream", ExplicitVRLittleEndian),))
        array = np.frombuffer(frame, dtype=native.pixel_array.dtype).reshape(native.Rows, native.Columns)
        np.testing.assert_array_equal(array, native.pixel_array, err_msg=name)


def test_retrieved_instance_is_the_stored_part10_file(dicomweb, shared_data):
    path = shared_data / "dicom" / "transfer_syntaxes" / "dcm_qa_ts" / "7.dcm"
    ds = pydicom.dcmread(path)
    dicomweb.store_instances([ds])
    retrieved = dicomweb.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert retrieved.SOPInstanceUID == ds.SOPInstanceUID
    assert retrieved.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    np.testing.assert_array_equal(retrieved.pixel_array, ds.pixel_array)
    series = dicomweb.retrieve_series(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert [s.SOPInstanceUID for s in series] == [ds.SOPInstanceUID]


def test_series_metadata_of_the_192_slice_mr(dicomweb, shared_data):
    files = sorted((shared_data / "dicom" / "series" / "mr_brain_sag_mprage_siemens_skyra_192sl").glob("*.dcm"))
    store_all(dicomweb, files)
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    metadata = dicomweb.retrieve_series_metadata(first.StudyInstanceUID, first.SeriesInstanceUID)
    assert len(metadata) == 192
    numbers = [m["00200013"]["Value"][0] for m in metadata]
    assert numbers == sorted(numbers)
    assert all(m["00280010"]["Value"] == [256] for m in metadata)
    study_meta = dicomweb.retrieve_study_metadata(first.StudyInstanceUID)
    assert len(study_meta) == 192


def test_rendered_and_thumbnail_are_images(dicomweb, okapi_server, shared_data, admin_user, token_for):
    path = shared_data / "dicom" / "series" / "ct_head_phantom_philips_ingenuity_28sl"
    ds = pydicom.dcmread(sorted(path.iterdir())[0])
    dicomweb.store_instances([ds])
    headers = {"Authorization": f"Bearer {token_for(admin_user)}"}
    base = f"{okapi_server}/dicomweb/studies/{ds.StudyInstanceUID}"
    for url, kind in [(f"{base}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/rendered", b"\xff\xd8"),
                      (f"{base}/series/{ds.SeriesInstanceUID}/thumbnail?viewport=64,64", b"\xff\xd8"),
                      (f"{base}/thumbnail?accept=image/png", b"\x89PNG")]:
        response = requests.get(url, headers=headers, timeout=30)
        assert response.status_code == 200, (url, response.text)
        assert response.content.startswith(kind)
