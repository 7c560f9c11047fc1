"""Reading one DICOM Part 10 file at ingest: validation, identity repair, and its DICOM JSON metadata.

Pure pydicom code: no Django. The archive calls :func:`parse_file` once per instance and keeps what it returns.
"""

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import BinaryIO

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, generate_uid

from imaging.dicom.pixels import PixelDataError, PixelIndex, index_pixel_data

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
SUPPORTED_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline (Process 1)",
    "1.2.840.10008.1.2.4.51": "JPEG Extended (Process 2 & 4)",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless (Process 14)",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.201": "HTJ2K Lossless",
    "1.2.840.10008.1.2.4.202": "HTJ2K Lossless RPCL",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
    "1.2.840.10008.1.2.5": "RLE Lossless",
}
BULK_DATA_THRESHOLD = 1024  # binary values above this size are links, not inline base64

# Segmentations: what a reader (not a lead) may add to a study they read (a reader's SEG joins their read).
SEGMENTATION_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation
})
# Objects stored beside images that hold no image of their own: segmentations and structured reports.
NON_IMAGE_SOP_CLASSES = SEGMENTATION_SOP_CLASSES | frozenset({
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
})

# Attributes kept at study / series level for QIDO-RS answers (patient, study and series modules).
STUDY_TAGS = (
    "00080005 00080020 00080030 00080050 00080051 00080090 00080201 00081030 00081032 00100010 00100020 00100021 "
    "00100030 00100040 00101010 00101020 00101030 00102160 00104000 0020000D 00200010 00321032 00321060"
).split()
SERIES_TAGS = (
    "00080021 00080031 00080060 00080070 00081010 0008103E 00081090 00180015 00181030 0020000E 00200011 "
    "00200060 00400244 00400245 00400254 00400275"
).split()


class InvalidInstance(ValueError):
    """The file cannot be archived; ``reason`` says why in words a person can act on."""

    def __init__(self, reason: str, *, code: str = "invalid_dicom", sop_instance_uid: str = "",
                 sop_class_uid: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.sop_instance_uid = sop_instance_uid
        self.sop_class_uid = sop_class_uid


@dataclass
class ParsedInstance:
    """What ingest keeps of one file. ``dataset`` holds everything but the pixel data."""

    dataset: Dataset
    file_meta: FileMetaDataset
    transfer_syntax_uid: str
    pixel_index: PixelIndex | None
    repairs: list[dict] = field(default_factory=list)

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    @property
    def sop_class_uid(self) -> str:
        return str(self.dataset.SOPClassUID)

    @property
    def study_uid(self) -> str:
        return str(self.dataset.StudyInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(self.dataset.SeriesInstanceUID)


def _uid_ok(value) -> bool:
    text = str(value or "")
    return bool(text) and UID(text).is_valid


def parse_file(fp: BinaryIO, *, file_size: int) -> ParsedInstance:
    """Read and validate a Part 10 file without loading its pixel data.

    Raises InvalidInstance for: not DICOM, no file meta, unsupported transfer syntax, missing or malformed
    SOPInstanceUID / SeriesInstanceUID, no SOP class anywhere, corrupt or truncated pixel data.
    Identity repairs (an empty StudyInstanceUID, a SOPClassUID only present in the file meta) are NOT applied
    here: :func:`identity_repairs` lists them and the caller decides.
    """
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise InvalidInstance(f"not a DICOM Part 10 file: {exc}", code="not_dicom") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, NotImplementedError) as exc:
        raise InvalidInstance(f"unreadable DICOM file: {type(exc).__name__}: {exc}", code="corrupt") from None
    meta = getattr(ds, "file_meta", None)
    sop_uid = str(ds.get("SOPInstanceUID", "") or "")
    sop_class = str(ds.get("SOPClassUID", "") or "") or str(getattr(meta, "MediaStorageSOPClassUID", "") or "")
    if meta is None or "TransferSyntaxUID" not in meta:
        raise InvalidInstance("no file meta information (not a Part 10 file): the transfer syntax is unknown",
                              code="not_dicom", sop_instance_uid=sop_uid, sop_class_uid=sop_class)
    tsuid = str(meta.TransferSyntaxUID)
    if tsuid not in SUPPORTED_TRANSFER_SYNTAXES:
        name = UID(tsuid).name if tsuid else "(empty)"
        raise InvalidInstance(f"unsupported transfer syntax {tsuid} ({name})", code="unsupported_transfer_syntax",
                              sop_instance_uid=sop_uid, sop_class_uid=sop_class)
    meta_sop = str(getattr(meta, "MediaStorageSOPInstanceUID", "") or "")
    if not _uid_ok(sop_uid) and not (sop_uid == "" and _uid_ok(meta_sop)):
        raise InvalidInstance(f"missing or malformed SOPInstanceUID {sop_uid!r}", code="missing_uid",
                              sop_class_uid=sop_class)
    series = str(ds.get("SeriesInstanceUID", "") or "")
    if series and not UID(series).is_valid:
        raise InvalidInstance(f"malformed SeriesInstanceUID {series!r}", code="missing_uid",
                              sop_instance_uid=sop_uid, sop_class_uid=sop_class)
    if not _uid_ok(sop_class):
        raise InvalidInstance("no SOPClassUID in the dataset nor in the file meta", code="missing_uid",
                              sop_instance_uid=sop_uid)
    study = str(ds.get("StudyInstanceUID", "") or "")
    if study and not UID(study).is_valid:
        raise InvalidInstance(f"malformed StudyInstanceUID {study!r}", code="missing_uid",
                              sop_instance_uid=sop_uid, sop_class_uid=sop_class)
    if "DirectoryRecordSequence" in ds:
        raise InvalidInstance("a DICOMDIR media directory, not an instance: import the folder instead",
                              code="not_an_instance", sop_instance_uid=sop_uid)
    try:
        pixel_index = index_pixel_data(fp, dataset=ds, transfer_syntax_uid=tsuid, file_size=file_size)
    except PixelDataError as exc:
        raise InvalidInstance(f"pixel data: {exc}", code="corrupt", sop_instance_uid=sop_uid,
                              sop_class_uid=sop_class) from None
    if pixel_index is None and "Rows" in ds and "Columns" in ds and "FloatPixelData" not in ds:
        # pydicom reads a file cut inside its header without complaint; an image without pixels is one.
        raise InvalidInstance("truncated or incomplete: the dataset describes an image (Rows, Columns) but has "
                              "no pixel data", code="corrupt", sop_instance_uid=sop_uid, sop_class_uid=sop_class)
    return ParsedInstance(dataset=ds, file_meta=meta, transfer_syntax_uid=tsuid, pixel_index=pixel_index)


# Attributes that together tell one series from another when its SeriesInstanceUID is missing.
SERIES_IDENTITY = ("PatientID", "StudyDate", "StudyTime", "FrameOfReferenceUID", "Modality", "SeriesNumber",
                   "SeriesDate", "SeriesTime", "SeriesDescription", "StationName", "DeviceSerialNumber")


def identity_repairs(parsed: ParsedInstance, *, uid_root: str) -> list[dict]:
    """Repairs a stored copy needs so that it has a complete identity (empty UIDs are common in exports).

    - SOPInstanceUID / SOPClassUID empty in the dataset: copied from the file meta.
    - SeriesInstanceUID empty: derived from the attributes that identify the series (SERIES_IDENTITY), so
      every instance of that series, and a later re-send, gets the same one; refused if none is present.
    - StudyInstanceUID empty: derived from the (real or derived) SeriesInstanceUID.
    Every derived UID is recorded as generated.
    """
    ds, meta, repairs = parsed.dataset, parsed.file_meta, []

    def repair(keyword: str, value: str, reason: str) -> str:
        repairs.append({"keyword": keyword, "original": str(ds.get(keyword, "") or ""), "value": value,
                        "reason": reason})
        return value

    if not str(ds.get("SOPInstanceUID", "") or ""):
        repair("SOPInstanceUID", str(meta.MediaStorageSOPInstanceUID),
               "empty in the dataset; taken from the file meta MediaStorageSOPInstanceUID")
    if not str(ds.get("SOPClassUID", "") or ""):
        repair("SOPClassUID", str(meta.MediaStorageSOPClassUID),
               "empty in the dataset; taken from the file meta MediaStorageSOPClassUID")
    series = str(ds.get("SeriesInstanceUID", "") or "")
    if not series:
        identity = [f"{k}={ds.get(k, '')}" for k in SERIES_IDENTITY]
        if not any(str(ds.get(k, "") or "") for k in ("FrameOfReferenceUID", "SeriesTime", "SeriesNumber")):
            raise InvalidInstance("empty SeriesInstanceUID and no FrameOfReferenceUID, SeriesTime or SeriesNumber "
                                  "to tell its series apart", code="missing_uid",
                                  sop_instance_uid=str(meta.MediaStorageSOPInstanceUID))
        series = repair("SeriesInstanceUID", str(generate_uid(prefix=uid_root, entropy_srcs=["okapi-series", *identity])),
                        "empty in the dataset; generated from " + ", ".join(SERIES_IDENTITY))
    if not str(ds.get("StudyInstanceUID", "") or ""):
        repair("StudyInstanceUID", str(generate_uid(prefix=uid_root, entropy_srcs=["okapi-study-for-series", series])),
               "empty in the dataset; generated from the SeriesInstanceUID")
    return repairs


def apply_repairs(ds: Dataset, repairs: list[dict]) -> None:
    """Set the repaired values and record the originals in Original Attributes Sequence (PS3.3 C.12.1)."""
    if not repairs:
        return
    modified = Dataset()
    for repair in repairs:
        setattr(modified, repair["keyword"], repair["original"])
        setattr(ds, repair["keyword"], repair["value"])
    item = Dataset()
    item.ModifiedAttributesSequence = [modified]
    item.AttributeModificationDateTime = pydicom.valuerep.DT.now().strftime("%Y%m%d%H%M%S")
    item.ModifyingSystem = "OKAPI"
    item.ReasonForTheAttributeModification = "CORRECT"
    item.SourceOfPreviousValues = ""
    ds.OriginalAttributesSequence = list(ds.get("OriginalAttributesSequence", [])) + [item]


def _element_paths(ds: Dataset, prefix: str = "") -> dict[int, str]:
    """id(element) -> its tag path (e.g. '00540016/0/00181072'), to name nested bulk data in its URI.

    Elements pydicom cannot decode (bad lengths in private tags are common) are skipped here as they are in
    ``to_json_dict(suppress_invalid_tags=True)``.
    """
    paths: dict[int, str] = {}
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
            path = f"{prefix}{elem.tag:08X}"
            paths[id(elem)] = path
            if elem.VR == "SQ":
                for i, item in enumerate(elem.value or []):
                    paths.update(_element_paths(item, f"{path}/{i}/"))
        except Exception:  # noqa: BLE001 - an undecodable element gets no BulkDataURI, like to_json_dict skips it
            continue
    return paths


BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
_BULK_MIN = (BULK_DATA_THRESHOLD // 4) * 3  # pydicom's rule: base64 would exceed the threshold
_CACHEABLE_MAX = 1024
_element_json_cache: OrderedDict = OrderedDict()
_CACHE_SIZE = 100_000
_cache_lock = threading.Lock()


def _cached_element_json(ds: Dataset, tag, raw, charset) -> dict | None:
    """DICOM JSON of one short raw element, from pydicom's own conversion, memoised by its raw bytes.

    The slices of a series repeat most of their header byte for byte; converting each value once per process
    makes ingest of a series several times cheaper and gives exactly pydicom's answer.
    """
    key = (raw.tag, raw.VR, raw.is_little_endian, raw.is_implicit_VR, charset, raw.value)
    with _cache_lock:
        hit = _element_json_cache.get(key)
    if hit is not None:
        return hit
    value = ds[tag].to_json_dict(None, BULK_DATA_THRESHOLD)
    with _cache_lock:
        _element_json_cache[key] = value
        if len(_element_json_cache) > _CACHE_SIZE:
            _element_json_cache.popitem(last=False)
    return value


def instance_json(parsed: ParsedInstance, *, instance_path: str) -> dict:
    """DICOM JSON (PS3.18 Annex F) of the instance; binary values over 768 bytes (1 KiB in base64) become
    BulkDataURIs under ``{instance_path}/bulk/<tag path>``, pixel data included.

    The same as pydicom's ``to_json_dict``; short top-level values come from a per-process memo of it.
    """
    ds = parsed.dataset
    charset = str(ds._dict[0x00080005].value) if 0x00080005 in ds._dict else ""
    data: dict = {}
    for tag in list(ds._dict):
        raw = ds._dict[tag]
        try:
            if isinstance(raw, RawDataElement) and raw.VR and raw.VR != "SQ" and raw.length != 0xFFFFFFFF:
                if raw.VR in BINARY_VRS and raw.length > _BULK_MIN:
                    data[f"{tag:08X}"] = {"vr": raw.VR, "BulkDataURI": f"{instance_path}/bulk/{tag:08X}"}
                    continue
                if raw.length <= _CACHEABLE_MAX:
                    data[f"{tag:08X}"] = _cached_element_json(ds, tag, raw, charset)
                    continue
            data[f"{tag:08X}"] = _element_json(ds, tag, instance_path)
        except Exception:  # noqa: BLE001 - like to_json_dict(suppress_invalid_tags=True): skip what cannot be read
            continue
    index = parsed.pixel_index
    if index is not None:
        data[f"{index.tag:08X}"] = {"vr": index.vr, "BulkDataURI": f"{instance_path}/bulk/{index.tag:08X}"}
    served = served_transfer_syntax(parsed.transfer_syntax_uid)
    data["00083002"] = {"vr": "UI", "Value": [served]}
    return dict(sorted(data.items()))


def _element_json(ds: Dataset, tag, instance_path: str) -> dict:
    """pydicom's conversion of one element, bulk data (also nested in sequences) named by its tag path."""
    elem = ds[tag]
    top_level = ds._dict
    nested_paths: dict[int, str] = {}

    def bulk_uri(item: DataElement) -> str:
        if top_level.get(item.tag) is item:
            return f"{instance_path}/bulk/{item.tag:08X}"
        if not nested_paths:
            nested_paths.update(_element_paths(ds))
        return f"{instance_path}/bulk/{nested_paths.get(id(item), f'{item.tag:08X}')}"

    return elem.to_json_dict(bulk_uri, BULK_DATA_THRESHOLD)


def served_transfer_syntax(tsuid: str) -> str:
    """The syntax frames are sent in: stored bytes, except implicit VR and big endian, sent as explicit LE."""
    return EXPLICIT_VR_LITTLE_ENDIAN if tsuid in NATIVE_SYNTAXES else tsuid


def dumps(data) -> str:
    """Compact JSON, the form metadata is stored and served in."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def pick(data: dict, tags: list[str]) -> dict:
    return {tag: data[tag] for tag in tags if tag in data}


def first_value(data: dict, tag: str, default=""):
    """First value of an attribute in DICOM JSON ('' for PN gives the Alphabetic group)."""
    values = (data.get(tag) or {}).get("Value") or []
    if not values:
        return default
    value = values[0]
    if isinstance(value, dict):
        return value.get("Alphabetic", default)
    return value
