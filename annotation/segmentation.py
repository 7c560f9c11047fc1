"""DICOM SEG for annotation reads: mask arrays to DICOM SEG and back, aligned to the source series.

A radiologist's segmentation is stored in the archive as a DICOM Segmentation (SEG) linked to their read. It
arrives either as a SEG file (saved by OHIF, 3D Slicer/dcmqi, ...) or as mask arrays that :func:`masks_to_seg`
turns into a SEG with highdicom's typed constructors. Consensus (STAPLE, majority vote) and agreement (Dice,
HD95) need the masks back as numpy arrays: :func:`seg_to_masks`.

Conventions shared by every function here:

- The *source stack* is :func:`sort_source_datasets` of the source datasets: single-frame slices of one series
  sorted along the slice normal, or one multi-frame image in its frame order. A mask has the shape
  ``(planes, Rows, Columns)`` of that stack and ``mask[i]`` lies on plane ``i``.
- Segment numbers are 1-based and consecutive (what a BINARY SEG requires).
- Every problem with the input is an :class:`InvalidSegmentation` whose ``reason`` says what is wrong.

This module is pure (pydicom, highdicom, numpy): no Django, no database, no storage.
"""

from __future__ import annotations

import logging
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import UID, generate_uid

from imaging.dicom.instance import SEGMENTATION_SOP_CLASSES

__all__ = [
    "CATEGORIES",
    "DEFAULT_CATEGORY",
    "SEG_SOP_CLASS_UIDS",
    "InvalidSegmentation",
    "SegmentSpec",
    "masks_to_seg",
    "referenced_series_uid",
    "referenced_sop_uids",
    "seg_segments",
    "seg_to_masks",
    "sort_source_datasets",
]

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"
SEG_SOP_CLASS_UIDS = SEGMENTATION_SOP_CLASSES  # the archive's list (imaging decides who may store them)

# Segmented Property Categories (DICOM CID 7150), as pydicom names them. 49755003 is "Morphologically Altered
# Structure" in recent editions of PS3.16 and "Morphologically Abnormal Structure" in pydicom: both keys work.
CATEGORIES: dict[str, Code] = {
    "tissue": codes.SCT.Tissue,
    "anatomical_structure": codes.SCT.AnatomicalStructure,
    "morphologically_abnormal_structure": codes.SCT.MorphologicallyAbnormalStructure,
    "morphologically_altered_structure": codes.SCT.MorphologicallyAbnormalStructure,
    "physical_object": codes.SCT.PhysicalObject,
    "body_substance": codes.SCT.BodySubstance,
    "substance": codes.SCT.Substance,
    "spatial_and_relational_concept": codes.SCT.SpatialAndRelationalConcept,
}
DEFAULT_CATEGORY: Code = codes.SCT.Tissue

# Two positions closer than this are the same plane. DS values are rounded to 16 characters and dcmqi writes 7
# significant digits (<= 1e-4 mm error at 1 m from the origin); 0.05 mm is far below any voxel size.
POSITION_TOLERANCE_MM = 0.05
_ORIENTATION_TOLERANCE = 1e-4

_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
_CS_RE = re.compile(r"^[A-Z0-9_ ]{1,16}$")
_MAX_LO = 64  # Segment Label and Code Meaning are LO: 64 characters at most

logger = logging.getLogger(__name__)


class InvalidSegmentation(ValueError):
    """A segmentation (mask upload, SEG file, segment schema or source series) that cannot be used.

    ``reason`` is a human-readable sentence naming what is wrong, fit to show to the uploader.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------------------------
# Segment descriptions


@dataclass(frozen=True)
class SegmentSpec:
    """One segment of a segmentation: its number, label, display colour and (optional) coded meaning.

    ``color`` is ``'#rrggbb'`` (normalised to lower case) or ``''`` when a SEG read from elsewhere recommends no
    colour. ``code_*`` is the Segmented Property Type (e.g. SNOMED CT ``'SCT'``, ``'10200004'``, ``'Liver'``; a
    local scheme such as ``'99OKAPI'`` is allowed): all three or none. ``category_*`` is the Segmented Property
    Category (CID 7150), Tissue by default.

    A SEG must code every segment's property type: a segment without a code is written with its category as
    type (what OHIF does with Tissue/Tissue), and :func:`seg_segments` reads a type equal to the category back as
    "no code", so that specs round-trip.
    """

    number: int
    label: str
    color: str
    code_scheme: str = ""
    code_value: str = ""
    code_meaning: str = ""
    category_scheme: str = DEFAULT_CATEGORY.scheme_designator
    category_value: str = DEFAULT_CATEGORY.value
    category_meaning: str = DEFAULT_CATEGORY.meaning

    def __post_init__(self) -> None:
        if isinstance(self.number, bool) or not isinstance(self.number, numbers.Integral):
            raise InvalidSegmentation(f"segment number must be an integer, got {self.number!r}")
        if not 1 <= int(self.number) <= 65535:
            raise InvalidSegmentation(f"segment number must be between 1 and 65535, got {self.number}")
        object.__setattr__(self, "number", int(self.number))
        if not isinstance(self.label, str) or not self.label.strip():
            raise InvalidSegmentation(f"segment {self.number} has no label")
        label = self.label.strip()
        if len(label) > _MAX_LO or "\\" in label or any(ord(c) < 32 for c in label):
            raise InvalidSegmentation(
                f"segment {self.number} label {label!r} is not a valid DICOM LO value "
                f"(at most {_MAX_LO} characters, no backslash or control characters)"
            )
        object.__setattr__(self, "label", label)
        if not isinstance(self.color, str) or (self.color and not _COLOR_RE.match(self.color)):
            raise InvalidSegmentation(
                f"segment {self.number} ({label!r}) colour {self.color!r} is not of the form '#rrggbb'"
            )
        object.__setattr__(self, "color", self.color.lower())
        code = (self.code_scheme, self.code_value, self.code_meaning)
        if any(not isinstance(part, str) for part in code) or (any(code) and not all(code)):
            raise InvalidSegmentation(
                f"segment {self.number} ({label!r}) code needs a scheme, a value and a meaning (or none of them), "
                f"got scheme={self.code_scheme!r} value={self.code_value!r} meaning={self.code_meaning!r}"
            )
        category = (self.category_scheme, self.category_value, self.category_meaning)
        if any(not isinstance(part, str) or not part for part in category):
            raise InvalidSegmentation(
                f"segment {self.number} ({label!r}) category needs a scheme, a value and a meaning, got {category}"
            )
        for what, meaning in (("code", self.code_meaning), ("category", self.category_meaning)):
            if len(meaning) > _MAX_LO:
                raise InvalidSegmentation(
                    f"segment {self.number} ({label!r}) {what} meaning is longer than {_MAX_LO} characters"
                )

    @property
    def has_code(self) -> bool:
        return bool(self.code_value)

    @property
    def category_code(self) -> Code:
        return Code(self.category_value, self.category_scheme, self.category_meaning)

    @property
    def property_type_code(self) -> Code:
        """The Segmented Property Type written to the SEG: the code, or the category when there is none."""
        if self.has_code:
            return Code(self.code_value, self.code_scheme, self.code_meaning)
        return self.category_code

    @classmethod
    def from_schema(cls, items: Sequence[Mapping]) -> list[SegmentSpec]:
        """Specs from a campaign's segment schema, numbered by position (first item is segment 1).

        Each item is ``{"name": str, "color": "#rrggbb", "code": {"scheme", "value", "meaning"} | None}`` with an
        optional ``"category"``: a key of :data:`CATEGORIES` or a ``{"scheme", "value", "meaning"}`` dict.
        """
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            raise InvalidSegmentation("the segment schema must be a list of segments")
        specs = []
        for index, item in enumerate(items):
            where = f"segment schema item {index + 1}"
            if not isinstance(item, Mapping):
                raise InvalidSegmentation(f"{where} is not an object")
            code = item.get("code") or {}
            if not isinstance(code, Mapping):
                raise InvalidSegmentation(f"{where}: 'code' must be an object with scheme, value and meaning")
            category = item.get("category") or DEFAULT_CATEGORY
            if isinstance(category, str):
                if category not in CATEGORIES:
                    raise InvalidSegmentation(
                        f"{where}: unknown category {category!r} (known: {', '.join(sorted(CATEGORIES))})"
                    )
                category = CATEGORIES[category]
            if isinstance(category, Mapping):
                category = Code(
                    str(category.get("value") or ""),
                    str(category.get("scheme") or ""),
                    str(category.get("meaning") or ""),
                )
            if not isinstance(category, Code):
                raise InvalidSegmentation(f"{where}: 'category' must be a known name or a coded concept")
            try:
                specs.append(
                    cls(
                        number=index + 1,
                        label=item.get("name") or "",
                        color=item.get("color") or "",
                        code_scheme=str(code.get("scheme") or ""),
                        code_value=str(code.get("value") or ""),
                        code_meaning=str(code.get("meaning") or ""),
                        category_scheme=category.scheme_designator,
                        category_value=category.value,
                        category_meaning=category.meaning,
                    )
                )
            except InvalidSegmentation as exc:
                raise InvalidSegmentation(f"{where}: {exc.reason}") from None
        return specs

    def to_description(self) -> hd.seg.SegmentDescription:
        """highdicom's Segment Description macro for this segment, drawn by hand (algorithm type MANUAL)."""
        try:
            return hd.seg.SegmentDescription(
                segment_number=self.number,
                segment_label=self.label,
                segmented_property_category=hd.sr.CodedConcept(
                    self.category_value, self.category_scheme, self.category_meaning
                ),
                segmented_property_type=hd.sr.CodedConcept(
                    self.property_type_code.value,
                    self.property_type_code.scheme_designator,
                    self.property_type_code.meaning,
                ),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
                display_color=hd.color.CIELabColor.from_rgb(*_hex_to_rgb(self.color)) if self.color else None,
            )
        except (ValueError, TypeError) as exc:
            raise InvalidSegmentation(
                f"segment {self.number} ({self.label!r}) cannot be described: {exc}"
            ) from None


def _hex_to_rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _code_of(item: Dataset) -> tuple[str, str, str]:
    """(scheme, value, meaning) of a Code Sequence item; the value may be in any of the three value attributes."""
    value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue") or ""
    return (
        str(item.get("CodingSchemeDesignator", "") or ""),
        str(value),
        str(item.get("CodeMeaning", "") or ""),
    )


def seg_segments(seg: Dataset) -> list[SegmentSpec]:
    """The segments a SEG describes, by segment number (a label-map SEG's background segment 0 left out).

    ``color`` is ``''`` when the SEG recommends no display colour. A property type equal to the category is read
    as "no code" (see :class:`SegmentSpec`).
    """
    _require_seg(seg)
    specs = []
    for item in seg.get("SegmentSequence") or []:
        number = int(item.get("SegmentNumber", 0) or 0)
        if number == 0:  # the background of a LABELMAP SEG, not a drawn segment
            continue
        category = (
            _code_of(item.SegmentedPropertyCategoryCodeSequence[0])
            if item.get("SegmentedPropertyCategoryCodeSequence")
            else ("", "", "")
        )
        code = (
            _code_of(item.SegmentedPropertyTypeCodeSequence[0])
            if item.get("SegmentedPropertyTypeCodeSequence")
            else ("", "", "")
        )
        if code[:2] == category[:2]:
            code = ("", "", "")
        if not all(category):
            category = (DEFAULT_CATEGORY.scheme_designator, DEFAULT_CATEGORY.value, DEFAULT_CATEGORY.meaning)
        color = ""
        if item.get("RecommendedDisplayCIELabValue"):
            rgb = hd.color.CIELabColor.from_dicom_value(item.RecommendedDisplayCIELabValue).to_rgb(clip=True)
            # to_rgb(clip=True) returns the clipped components unrounded
            color = "#" + "".join(f"{int(round(c)):02x}" for c in rgb)
        try:
            specs.append(
                SegmentSpec(
                    number=number,
                    label=str(item.get("SegmentLabel", "") or "") or f"Segment {number}",
                    color=color,
                    code_scheme=code[0],
                    code_value=code[1],
                    code_meaning=code[2],
                    category_scheme=category[0],
                    category_value=category[1],
                    category_meaning=category[2],
                )
            )
        except InvalidSegmentation as exc:
            raise InvalidSegmentation(f"the SEG's segment {number} is not valid: {exc.reason}") from None
    return sorted(specs, key=lambda s: s.number)


# --------------------------------------------------------------------------------------------------------------
# Source series


def _is_multiframe(ds: Dataset) -> bool:
    return "PerFrameFunctionalGroupsSequence" in ds or int(ds.get("NumberOfFrames", 1) or 1) > 1


def _number_of_planes(ds: Dataset) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def finite_floats(value, n: int) -> np.ndarray | None:
    """A DICOM multi-value as ``n`` finite floats, or None when it is missing, short or not numbers."""
    try:
        array = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (n,) and np.all(np.isfinite(array)) else None


def _plane_geometry(ds: Dataset, frame_index: int | None = None):
    """(ImagePositionPatient, ImageOrientationPatient, PixelSpacing) of a plane, each None when unknown.

    ``frame_index`` (0-based) selects a frame of a multi-frame image: its per-frame functional groups override
    the shared ones; a single-frame image carries them at the top level.
    """
    if frame_index is None and "PerFrameFunctionalGroupsSequence" not in ds:
        return (
            finite_floats(ds.get("ImagePositionPatient") or [], 3),
            finite_floats(ds.get("ImageOrientationPatient") or [], 6),
            finite_floats(ds.get("PixelSpacing") or [], 2),
        )
    groups = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if frame_index is not None and frame_index < len(per_frame):
        groups.append(per_frame[frame_index])
    groups.extend((ds.get("SharedFunctionalGroupsSequence") or [])[:1])

    def find(sequence: str, keyword: str, n: int):
        for group in groups:
            items = group.get(sequence) or []
            if items and keyword in items[0]:
                return finite_floats(items[0].get(keyword) or [], n)
        return None

    position = find("PlanePositionSequence", "ImagePositionPatient", 3)
    orientation = find("PlaneOrientationSequence", "ImageOrientationPatient", 6)
    spacing = find("PixelMeasuresSequence", "PixelSpacing", 2)
    # A multi-frame image whose frames share the top-level attributes (legacy multi-frame)
    if position is None and orientation is None:
        position = finite_floats(ds.get("ImagePositionPatient") or [], 3)
        orientation = finite_floats(ds.get("ImageOrientationPatient") or [], 6)
    if spacing is None:
        spacing = finite_floats(ds.get("PixelSpacing") or [], 2)
    return position, orientation, spacing


def _slice_normal(orientation: np.ndarray) -> np.ndarray:
    return np.cross(orientation[:3], orientation[3:])


def _describe(ds: Dataset, index: int) -> str:
    uid = str(ds.get("SOPInstanceUID", "") or "")
    return f"source dataset {index + 1} ({uid})" if uid else f"source dataset {index + 1}"


def sort_source_datasets(datasets: Iterable[Dataset]) -> list[Dataset]:
    """The source datasets in stack order: the order of mask planes, SEG frames and returned masks.

    Single-frame slices of one series are sorted along the slice normal (ImagePositionPatient projected on the
    cross product of ImageOrientationPatient's row and column cosines, which is right for gantry-tilted CT
    too), ties and slices without geometry by InstanceNumber. A single multi-frame image is returned as is (its
    frames are the planes, in frame order).

    Refused: no dataset, a dataset without SOPInstanceUID or SeriesInstanceUID, duplicated instances, slices of
    more than one series, several multi-frame images or one mixed with slices, slices of different sizes or
    orientations, and slices that can be ordered neither by position nor by InstanceNumber.
    """
    if isinstance(datasets, Dataset):
        datasets = [datasets]
    datasets = list(datasets)
    if not datasets:
        raise InvalidSegmentation("no source image: a segmentation needs the images of its series")
    for index, ds in enumerate(datasets):
        if not isinstance(ds, Dataset):
            raise InvalidSegmentation(
                f"source item {index + 1} is a {type(ds).__name__}, not a DICOM dataset"
            )
        for keyword in ("SOPInstanceUID", "SeriesInstanceUID"):
            if not str(ds.get(keyword, "") or ""):
                raise InvalidSegmentation(
                    f"{_describe(ds, index)} has an empty {keyword}: repair its identity at ingest first"
                )
        if str(ds.get("SOPClassUID", "") or "") in SEG_SOP_CLASS_UIDS:
            raise InvalidSegmentation(f"{_describe(ds, index)} is itself a segmentation, not a source image")
        if "Rows" not in ds or "Columns" not in ds:
            raise InvalidSegmentation(f"{_describe(ds, index)} is not an image (no Rows/Columns)")
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    if len(set(uids)) != len(uids):
        duplicated = sorted({uid for uid in uids if uids.count(uid) > 1})
        raise InvalidSegmentation(f"source instances given more than once: {', '.join(duplicated)}")
    series = sorted({str(ds.SeriesInstanceUID) for ds in datasets})
    if len(series) > 1:
        raise InvalidSegmentation(
            f"the source images belong to {len(series)} series ({', '.join(series)}): a segmentation is drawn on "
            "one series"
        )
    multiframe = [ds for ds in datasets if _is_multiframe(ds)]
    if multiframe:
        if len(datasets) > 1:
            raise InvalidSegmentation(
                f"{len(multiframe)} of the {len(datasets)} source images are multi-frame: give either one "
                "multi-frame image or single-frame slices"
            )
        return datasets
    sizes = sorted({(int(ds.Rows), int(ds.Columns)) for ds in datasets})
    if len(sizes) > 1:
        raise InvalidSegmentation(f"the source slices have different sizes (rows, columns): {sizes}")
    if len(datasets) == 1:
        return datasets

    geometry = [_plane_geometry(ds) for ds in datasets]
    instance_numbers = [_instance_number(ds) for ds in datasets]
    if all(position is not None and orientation is not None for position, orientation, _ in geometry):
        reference = geometry[0][1]
        for index, (_, orientation, _) in enumerate(geometry):
            if not np.allclose(orientation, reference, atol=_ORIENTATION_TOLERANCE):
                raise InvalidSegmentation(
                    f"{_describe(datasets[index], index)} has ImageOrientationPatient {orientation.tolist()} "
                    f"but the first slice has {reference.tolist()}: the slices do not form one volume"
                )
        normal = _slice_normal(reference)
        distances = [float(np.dot(normal, position)) for position, _, _ in geometry]
        # Ties (same position) keep InstanceNumber order; masks_to_seg refuses duplicated planes later.
        order = sorted(range(len(datasets)), key=lambda i: (distances[i], instance_numbers[i] or 0))
        return [datasets[i] for i in order]
    if any(number is None for number in instance_numbers):
        missing = [_describe(ds, i) for i, ds in enumerate(datasets) if instance_numbers[i] is None]
        raise InvalidSegmentation(
            "cannot order the source slices: some lack ImagePositionPatient/ImageOrientationPatient and "
            f"InstanceNumber ({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})"
        )
    logger.debug("source slices without complete geometry: ordered by InstanceNumber")
    return [ds for _, ds in sorted(zip(instance_numbers, datasets, strict=True), key=lambda pair: pair[0])]


def _instance_number(ds: Dataset) -> int | None:
    try:
        return int(ds.get("InstanceNumber"))
    except (TypeError, ValueError):
        return None


def _source_planes(sources: list[Dataset]) -> list[tuple[str, int | None]]:
    """(SOPInstanceUID, 1-based frame number or None) of each plane of the sorted source stack."""
    if len(sources) == 1 and _is_multiframe(sources[0]):
        uid = str(sources[0].SOPInstanceUID)
        return [(uid, frame) for frame in range(1, _number_of_planes(sources[0]) + 1)]
    return [(str(ds.SOPInstanceUID), None) for ds in sources]


def _source_plane_geometry(sources: list[Dataset], plane: int):
    if len(sources) == 1 and _is_multiframe(sources[0]):
        return _plane_geometry(sources[0], plane)
    return _plane_geometry(sources[plane])


# --------------------------------------------------------------------------------------------------------------
# Masks to SEG


def _check_writable_sources(sources: list[Dataset]) -> None:
    """What highdicom needs of the sources to write a SEG, refused with a clear reason rather than a crash."""
    for index, ds in enumerate(sources):
        for keyword in ("SOPClassUID", "StudyInstanceUID", "FrameOfReferenceUID"):
            if not str(ds.get(keyword, "") or ""):
                hint = (
                    " (it may only be in the file meta as MediaStorageSOPClassUID: repair it at ingest)"
                    if keyword == "SOPClassUID"
                    else ""
                )
                raise InvalidSegmentation(f"{_describe(ds, index)} has an empty {keyword}{hint}")
    frames_of_reference = sorted({str(ds.FrameOfReferenceUID) for ds in sources})
    if len(frames_of_reference) > 1:
        raise InvalidSegmentation(
            f"the source slices have several FrameOfReferenceUIDs: {frames_of_reference}"
        )


def _check_mask(number: int, label: str, mask, expected: tuple[int, ...]) -> np.ndarray:
    """The mask as a bool array of the stack's shape; refused if it has another shape or non-binary values."""
    mask = np.asarray(mask)
    if mask.ndim == 2 and expected[0] == 1:
        mask = mask[np.newaxis]  # a single-slice series: a 2D mask is its only plane
    if mask.shape != expected:
        raise InvalidSegmentation(
            f"mask of segment {number} ({label!r}) has shape {mask.shape}, expected {expected} "
            "(planes, rows, columns) of the source series"
        )
    if mask.dtype == np.bool_:
        return mask
    if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
        raise InvalidSegmentation(f"mask of segment {number} ({label!r}) has non-numeric type {mask.dtype}")
    bad = (mask != 0) & (mask != 1)
    if bad.any():
        values = np.unique(mask[bad])
        shown = ", ".join(str(v) for v in values[:5].tolist()) + (" ..." if len(values) > 5 else "")
        raise InvalidSegmentation(
            f"mask of segment {number} ({label!r}) is not binary: it has {int(bad.sum())} values other than "
            f"0 and 1 ({shown})"
        )
    return mask != 0


def _check_segments(segments: Sequence[SegmentSpec]) -> list[SegmentSpec]:
    if isinstance(segments, SegmentSpec):
        segments = [segments]
    segments = list(segments or [])
    if not segments:
        raise InvalidSegmentation("a segmentation needs at least one segment")
    for spec in segments:
        if not isinstance(spec, SegmentSpec):
            raise InvalidSegmentation(f"segments must be SegmentSpec, got {type(spec).__name__}")
    segments = sorted(segments, key=lambda s: s.number)
    found = [s.number for s in segments]
    if found != list(range(1, len(segments) + 1)):
        raise InvalidSegmentation(
            f"segment numbers must be 1 to {len(segments)} without gaps or repeats, got {found}"
        )
    return segments


def _new_uid(uid_root: str | None) -> str:
    if uid_root is None:
        return str(hd.UID())
    prefix = uid_root if uid_root.endswith(".") else uid_root + "."
    try:
        return str(generate_uid(prefix=prefix))
    except ValueError as exc:
        raise InvalidSegmentation(f"UID root {uid_root!r} cannot be used: {exc}") from None


def masks_to_seg(
    source_datasets: Iterable[Dataset],
    masks: Mapping[int, np.ndarray],
    segments: Sequence[SegmentSpec],
    *,
    series_number: int = 9001,
    series_description: str = "Okapi segmentation",
    content_creator: str = "",
    content_label: str = "OKAPI",
    manufacturer: str = "Okapi",
    software_versions: str = "0.1",
    device_serial_number: str = "okapi",
    uid_root: str | None = None,
) -> Dataset:
    """A BINARY DICOM SEG of the masks, one per segment, drawn on the source series.

    ``masks[n]`` is segment ``n``'s mask, shaped ``(planes, Rows, Columns)`` in :func:`sort_source_datasets`
    order (a 2D mask for a single-slice series; ``(frames, Rows, Columns)`` for one multi-frame image), of
    bools or 0/1 numbers. Each segment is described as drawn by hand (algorithm type MANUAL) with its colour as
    recommended CIELab display value; empty frames are omitted.

    An all-empty segmentation (nothing drawn) is a valid answer. highdicom cannot omit every frame, and would
    otherwise write every plane of every segment; instead the SEG gets one empty frame per segment on the first
    plane, while still referencing every source instance, so it reads back as all zeros.

    The source datasets need only their metadata (no pixel data). Returns a plain :class:`pydicom.Dataset` with
    its file meta, ready for ``dcmwrite``/STOW. Raises :class:`InvalidSegmentation`.
    """
    sources = sort_source_datasets(source_datasets)
    _check_writable_sources(sources)
    segments = _check_segments(segments)
    if not isinstance(masks, Mapping):
        raise InvalidSegmentation("masks must map segment numbers to arrays")
    keys: dict[int, np.ndarray] = {}
    for key, mask in masks.items():
        if isinstance(key, bool) or not isinstance(key, numbers.Integral):
            raise InvalidSegmentation(f"mask key {key!r} is not a segment number")
        keys[int(key)] = mask
    known = {s.number for s in segments}
    unknown = sorted(set(keys) - known)
    if unknown:
        raise InvalidSegmentation(
            f"masks for unknown segment number(s) {unknown}: the segments are {sorted(known)}"
        )
    missing = [s for s in segments if s.number not in keys]
    if missing:
        named = ", ".join(f"{s.number} ({s.label!r})" for s in missing)
        raise InvalidSegmentation(f"no mask for segment(s) {named}")
    if not _CS_RE.match(content_label or ""):
        raise InvalidSegmentation(
            f"content label {content_label!r} must be 1-16 upper-case letters, digits, spaces or underscores"
        )

    planes = _source_planes(sources)
    expected = (len(planes), int(sources[0].Rows), int(sources[0].Columns))
    stacked = np.stack([_check_mask(s.number, s.label, keys[s.number], expected) for s in segments], axis=-1)
    descriptions = [s.to_description() for s in segments]

    plane_positions = None
    if not stacked.any():
        # highdicom cannot omit all frames: keep one (empty) plane, the first, rather than every plane.
        position, _, _ = _source_plane_geometry(sources, 0)
        if position is not None:
            stacked = stacked[:1]
            plane_positions = [hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT, position.tolist())]

    try:
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=stacked,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=_new_uid(uid_root),
            series_number=series_number,
            sop_instance_uid=_new_uid(uid_root),
            instance_number=1,
            manufacturer=manufacturer,
            manufacturer_model_name=manufacturer,
            software_versions=software_versions,
            device_serial_number=device_serial_number,
            content_label=content_label,
            content_description=series_description or None,
            content_creator_name=content_creator or None,
            series_description=series_description or None,
            plane_positions=plane_positions,
            omit_empty_frames=plane_positions is None,
            # UTF-8: pydicom has decoded the copied patient/study values, and labels may be any text (a source
            # may also declare an empty or unknown character set, which highdicom refuses).
            specific_character_set="ISO_IR 192",
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InvalidSegmentation(f"the segmentation cannot be written as DICOM SEG: {exc}") from None
    # A plain Dataset: highdicom's object holds an SQLite index of its frames (not picklable, not thread-safe).
    plain = Dataset(seg)
    plain.file_meta = seg.file_meta
    plain.preamble = getattr(seg, "preamble", None)
    return plain


# --------------------------------------------------------------------------------------------------------------
# SEG to masks


def _require_seg(seg) -> None:
    if not isinstance(seg, Dataset):
        raise InvalidSegmentation(f"expected a DICOM dataset, got {type(seg).__name__}")
    sop_class = str(seg.get("SOPClassUID", "") or "")
    if sop_class not in SEG_SOP_CLASS_UIDS:
        name = UID(sop_class).name if sop_class else "empty"
        raise InvalidSegmentation(
            f"not a DICOM SEG: its SOPClassUID is {sop_class or '(empty)'} ({name}), expected Segmentation "
            f"Storage ({SEGMENTATION_STORAGE}) or Label Map Segmentation Storage ({LABEL_MAP_SEGMENTATION_STORAGE})"
        )


def referenced_series_uid(seg: Dataset) -> str:
    """The SeriesInstanceUID of the one series the SEG was drawn on (its Referenced Series Sequence)."""
    _require_seg(seg)
    series = []
    for item in seg.get("ReferencedSeriesSequence") or []:
        uid = str(item.get("SeriesInstanceUID", "") or "")
        if uid and uid not in series:
            series.append(uid)
    if not series:
        raise InvalidSegmentation(
            "the SEG does not name the series it was drawn on (no ReferencedSeriesSequence)"
        )
    if len(series) > 1:
        raise InvalidSegmentation(
            f"the SEG references {len(series)} series ({', '.join(series)}), expected one"
        )
    return series[0]


def _frame_references(seg: Dataset) -> list[list[tuple[str, int | None, str]]]:
    """Per SEG frame: its source references as (SOPInstanceUID, frame number or None, SpatialLocationsPreserved)."""
    frames = []
    shared = (seg.get("SharedFunctionalGroupsSequence") or [None])[0]
    for group in seg.get("PerFrameFunctionalGroupsSequence") or []:
        references = []
        derivations = (
            group.get("DerivationImageSequence")
            or (shared.get("DerivationImageSequence") if shared is not None else None)
            or []
        )
        for derivation in derivations:
            for source in derivation.get("SourceImageSequence") or []:
                uid = str(source.get("ReferencedSOPInstanceUID", "") or "")
                if not uid:
                    continue
                frame_numbers = source.get("ReferencedFrameNumber")
                if frame_numbers is None or frame_numbers == "":
                    frame_numbers = [None]
                elif not isinstance(frame_numbers, (list, pydicom.multival.MultiValue)):
                    frame_numbers = [frame_numbers]
                preserved = str(source.get("SpatialLocationsPreserved", "") or "")
                references.extend((uid, int(f) if f is not None else None, preserved) for f in frame_numbers)
        frames.append(references)
    return frames


def referenced_sop_uids(seg: Dataset) -> set[str]:
    """Every source SOPInstanceUID the SEG references: series-level, image-level and per-frame references."""
    _require_seg(seg)
    uids = set()
    for series in seg.get("ReferencedSeriesSequence") or []:
        for item in series.get("ReferencedInstanceSequence") or []:
            uids.add(str(item.get("ReferencedSOPInstanceUID", "") or ""))
    for item in seg.get("SourceImageSequence") or []:
        uids.add(str(item.get("ReferencedSOPInstanceUID", "") or ""))
    for references in _frame_references(seg):
        uids.update(uid for uid, _, _ in references)
    uids.discard("")
    return uids


def _same_plane(a, b) -> bool:
    """Whether two (position, orientation, spacing) geometries describe the same pixel grid."""
    (pa, oa, sa), (pb, ob, sb) = a, b
    if pa is None or pb is None or oa is None or ob is None:
        return False
    if not np.allclose(oa, ob, atol=_ORIENTATION_TOLERANCE):
        return False
    if sa is not None and sb is not None and not np.allclose(sa, sb, rtol=1e-4, atol=1e-6):
        return False
    return float(np.linalg.norm(pa - pb)) <= POSITION_TOLERANCE_MM


def seg_to_masks(seg: Dataset, source_datasets: Iterable[Dataset]) -> dict[int, np.ndarray]:
    """Each segment's mask as a bool array shaped like the sorted source stack ``(planes, Rows, Columns)``.

    Works for SEGs from other tools (OHIF, 3D Slicer/dcmqi, highdicom): BINARY, FRACTIONAL (a pixel belongs to
    the segment from 0.5 on) and LABELMAP. Frames are placed by their per-frame source references through
    highdicom; their geometry is checked against the referenced source plane, since many tools (dcmqi) do not
    state SpatialLocationsPreserved. A SEG without per-frame references is placed by plane position.
    Segments with no frame read as all zeros.

    Refused (InvalidSegmentation): not a SEG; a SEG referencing instances missing from ``source_datasets``
    (named); another frame of reference; frames not on the source pixel grid (resampled segmentations).
    """
    _require_seg(seg)
    sources = sort_source_datasets(source_datasets)
    planes = _source_planes(sources)
    plane_index = {plane: i for i, plane in enumerate(planes)}
    source_uids = {uid for uid, _ in planes}
    segments = seg_segments(seg)
    if not segments:
        raise InvalidSegmentation("the SEG describes no segment")

    references = referenced_sop_uids(seg)
    if not references:
        raise InvalidSegmentation("the SEG references no source image: it cannot be placed on the series")
    unknown = sorted(references - source_uids)
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        drawn_on = {
            str(item.get("SeriesInstanceUID", "") or "") for item in seg.get("ReferencedSeriesSequence") or []
        }
        drawn_on.discard("")
        raise InvalidSegmentation(
            f"the SEG references {len(unknown)} instance(s) that are not in the source series "
            f"{sources[0].SeriesInstanceUID}: {shown}"
            + (f" (it was drawn on series {', '.join(sorted(drawn_on))})" if drawn_on else "")
        )
    seg_for = str(seg.get("FrameOfReferenceUID", "") or "")
    source_for = str(sources[0].get("FrameOfReferenceUID", "") or "")
    if seg_for and source_for and seg_for != source_for:
        raise InvalidSegmentation(
            f"the SEG's FrameOfReferenceUID {seg_for} is not the source series' {source_for}"
        )
    rows, columns = int(sources[0].Rows), int(sources[0].Columns)
    if (int(seg.get("Rows", 0) or 0), int(seg.get("Columns", 0) or 0)) != (rows, columns):
        raise InvalidSegmentation(
            f"the SEG frames are {seg.get('Rows')}x{seg.get('Columns')} but the source images are "
            f"{rows}x{columns}: resampled segmentations are not supported"
        )

    frame_references = _frame_references(seg)
    number_of_frames = int(seg.get("NumberOfFrames", 1) or 1)
    if len(frame_references) == number_of_frames and all(frame_references):
        _check_referenced_geometry(seg, sources, frame_references, plane_index)
        stack = _pixels_by_reference(seg, planes, [s.number for s in segments])
    else:
        stack = _pixels_by_position(seg, sources, planes, segments)
    return {spec.number: np.ascontiguousarray(stack[..., k]) for k, spec in enumerate(segments)}


def _check_referenced_geometry(seg, sources, frame_references, plane_index) -> None:
    """Every SEG frame lies on the pixel grid of the source plane it references (or is declared to)."""
    for frame, references in enumerate(frame_references):
        frame_geometry = _plane_geometry(seg, frame)
        for uid, frame_number, preserved in references:
            if preserved in ("NO", "REORIENTED"):
                raise InvalidSegmentation(
                    f"SEG frame {frame + 1} declares that it does not preserve the spatial locations of its "
                    f"source {uid} (SpatialLocationsPreserved {preserved}): resampled segmentations are not "
                    "supported"
                )
            key = (uid, frame_number if len(sources) == 1 and _is_multiframe(sources[0]) else None)
            if key not in plane_index:
                raise InvalidSegmentation(
                    f"SEG frame {frame + 1} references {uid}"
                    + (f" frame {frame_number}" if frame_number else "")
                    + ", which is not a plane of the source series"
                )
            if frame_geometry[0] is None:
                if preserved == "YES":
                    continue  # no position to compare, but the writer states the grid is the source's
                raise InvalidSegmentation(
                    f"SEG frame {frame + 1} has no plane position to check against {uid}"
                )
            source_geometry = _source_plane_geometry(sources, plane_index[key])
            if not _same_plane(frame_geometry, source_geometry):
                raise InvalidSegmentation(
                    f"SEG frame {frame + 1} (position {frame_geometry[0].tolist()}) does not lie on its source "
                    f"{uid} (position {None if source_geometry[0] is None else source_geometry[0].tolist()}): "
                    "resampled segmentations are not supported"
                )


def _as_masks(seg: Dataset, array: np.ndarray) -> np.ndarray:
    if np.issubdtype(array.dtype, np.floating):  # rescaled FRACTIONAL values in [0, 1]
        return array >= 0.5
    return array > 0


def _pixels_by_reference(seg: Dataset, planes, numbers_: list[int]) -> np.ndarray:
    """(planes, rows, columns, segments) through highdicom's per-frame source references."""
    try:
        hd_seg = hd.seg.Segmentation.from_dataset(seg, copy=True)
        # Geometry was checked by _check_referenced_geometry; frames of omitted (empty) planes read as zeros.
        options = dict(
            segment_numbers=numbers_,
            combine_segments=False,
            ignore_spatial_locations=True,
            assert_missing_frames_are_empty=True,
            rescale_fractional=True,
        )
        if planes[0][1] is None:
            array = hd_seg.get_pixels_by_source_instance([uid for uid, _ in planes], **options)
        else:
            array = hd_seg.get_pixels_by_source_frame(
                source_sop_instance_uid=planes[0][0],
                source_frame_numbers=[frame for _, frame in planes],
                **options,
            )
    except (ValueError, KeyError, RuntimeError, TypeError, AttributeError, IndexError) as exc:
        raise InvalidSegmentation(f"the SEG frames cannot be read: {exc}") from None
    return _as_masks(seg, array)


def _frame_segment_number(seg: Dataset, frame: int) -> int | None:
    groups = list((seg.get("PerFrameFunctionalGroupsSequence") or [])[frame : frame + 1])
    groups += list((seg.get("SharedFunctionalGroupsSequence") or [])[:1])
    for group in groups:
        items = group.get("SegmentIdentificationSequence") or []
        if items and "ReferencedSegmentNumber" in items[0]:
            return int(items[0].ReferencedSegmentNumber)
    return None


def _pixels_by_position(seg: Dataset, sources, planes, segments: list[SegmentSpec]) -> np.ndarray:
    """(planes, rows, columns, segments) for a SEG without per-frame references: frames placed by position."""
    try:
        pixels = seg.pixel_array
    except Exception as exc:  # noqa: BLE001 - any decoder failure is an unusable SEG
        raise InvalidSegmentation(f"the SEG pixel data cannot be decoded: {exc}") from None
    number_of_frames = int(seg.get("NumberOfFrames", 1) or 1)
    pixels = pixels.reshape(number_of_frames, int(seg.Rows), int(seg.Columns))
    source_geometry = [_source_plane_geometry(sources, i) for i in range(len(planes))]
    column = {spec.number: k for k, spec in enumerate(segments)}
    stack = np.zeros((len(planes), int(seg.Rows), int(seg.Columns), len(segments)), dtype=bool)
    labelmap = (
        str(seg.SOPClassUID) == LABEL_MAP_SEGMENTATION_STORAGE or seg.get("SegmentationType") == "LABELMAP"
    )
    fractional = seg.get("SegmentationType") == "FRACTIONAL"
    maximum = float(seg.get("MaximumFractionalValue", 255) or 255)
    for frame in range(number_of_frames):
        geometry = _plane_geometry(seg, frame)
        matches = [i for i, g in enumerate(source_geometry) if _same_plane(geometry, g)]
        if not matches:
            position = None if geometry[0] is None else geometry[0].tolist()
            raise InvalidSegmentation(
                f"SEG frame {frame + 1} (position {position}) matches no plane of the source series: "
                "resampled segmentations are not supported"
            )
        plane = matches[0]
        if labelmap:
            for number, k in column.items():
                stack[plane, :, :, k] |= pixels[frame] == number
            continue
        number = _frame_segment_number(seg, frame)
        if number not in column:
            raise InvalidSegmentation(f"SEG frame {frame + 1} belongs to undescribed segment {number}")
        values = pixels[frame] >= maximum / 2 if fractional else pixels[frame] > 0
        stack[plane, :, :, column[number]] |= values
    return stack
