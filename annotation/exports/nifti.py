"""DICOM series to NIfTI volumes, with the geometry of the DICOM (pure: pydicom, numpy, nibabel).

A volume is built from the planes of one series in the stack order of
:func:`annotation.segmentation.sort_source_datasets` (single-frame slices sorted along the slice normal; a
multi-frame image's frames, placed by their per-frame functional groups and sorted the same way), so that a
mask from :func:`annotation.segmentation.seg_to_masks` lands on the same voxels (:func:`labelmap`).

Geometry. DICOM patient coordinates are LPS, NIfTI's are RAS: the affine is ``diag(-1, -1, 1, 1) @ M`` where
``M``'s columns are the row direction times the column spacing (PixelSpacing[1]), the column direction times
the row spacing (PixelSpacing[0]), the step from one plane to the next, and the first plane's position. Voxel
``(i, j, k)`` is column ``i``, row ``j`` of plane ``k``.

Gantry tilt (a CT stacked along a direction that is not the slice normal) is kept exact, not resampled: the
sform holds the sheared affine (every voxel where the scanner put it; nibabel and MONAI read the sform), the
qform holds the nearest orthogonal grid (same origin and in-plane axes, slice spacing measured along the
normal: what ITK-based tools fall back on, since they cannot represent shear), and the tilt angle is reported.

Refused with :class:`NotConvertible` (the series is reported, the export goes on): no patient geometry
(ultrasound, secondary captures, stripped enhanced objects), colour images, planes of different orientations or
pixel spacings, several planes at one position (4D, multi-echo), and slice spacing that varies by more than
1 % (missing slices: one affine cannot place them).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset

from annotation.segmentation import InvalidSegmentation, finite_floats, sort_source_datasets

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
ORIENTATION_TOLERANCE = 1e-4
SAME_POSITION_MM = 0.05
SPACING_RELATIVE_TOLERANCE = 0.01
SPACING_ABSOLUTE_TOLERANCE_MM = 0.01
TILT_REPORTED_DEGREES = 0.01
GZIP_LEVEL = 3  # 2-4x faster than 6 on CT and MR for 1-5 % larger files


class NotConvertible(ValueError):
    """A series that cannot become one NIfTI volume; ``code`` is stable, ``reason`` says why to a person."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class Volume:
    """One series as a NIfTI-ready volume.

    ``shape`` is (columns, rows, planes), the shape of ``data`` (None for a grid read from headers only);
    ``affine`` (RAS, the sform) places every voxel exactly, ``qform`` is its orthogonal approximation (equal
    unless the series is tilted); ``order[k]`` is the plane of the sorted source stack that became slice ``k``.
    """

    shape: tuple[int, int, int]
    data: np.ndarray | None
    affine: np.ndarray
    qform: np.ndarray
    order: list[int]
    tilt_degrees: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(np.linalg.norm(self.affine[:3, i])) for i in range(3))

    def geometry(self) -> dict:
        """What the manifest records of the volume (JSON, rounded so that it is stable)."""
        return {
            "shape": list(self.shape),
            "dtype": None if self.data is None else str(self.data.dtype),
            "affine_ras": [[round(float(v), 6) for v in row] for row in self.affine],
            "spacing_mm": [round(v, 6) for v in self.spacing],
            "gantry_tilt_degrees": round(self.tilt_degrees, 4),
            "notes": list(self.notes),
        }


def _groups(ds: Dataset, frame: int) -> list[Dataset]:
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    groups = [per_frame[frame]] if frame < len(per_frame) else []
    return groups + list((ds.get("SharedFunctionalGroupsSequence") or [])[:1])


def _find(groups: list[Dataset], sequence: str, keyword: str):
    for group in groups:
        items = group.get(sequence) or []
        if items and keyword in items[0]:
            return items[0].get(keyword)
    return None


@dataclass(frozen=True)
class _Plane:
    dataset: int
    frame: int | None
    position: np.ndarray | None
    orientation: np.ndarray | None
    spacing: np.ndarray | None
    slope: float
    intercept: float


def _planes(stack: list[Dataset]) -> list[_Plane]:
    """Every plane of the sorted stack with its geometry and rescale (per-frame functional groups first)."""
    if len(stack) == 1 and ("PerFrameFunctionalGroupsSequence" in stack[0]
                            or int(stack[0].get("NumberOfFrames", 1) or 1) > 1):
        ds = stack[0]
        planes = []
        for frame in range(int(ds.get("NumberOfFrames", 1) or 1)):
            groups = _groups(ds, frame)
            position = finite_floats(_find(groups, "PlanePositionSequence", "ImagePositionPatient") or
                               ds.get("ImagePositionPatient") or [], 3)
            orientation = finite_floats(_find(groups, "PlaneOrientationSequence", "ImageOrientationPatient") or
                                  ds.get("ImageOrientationPatient") or [], 6)
            spacing = finite_floats(_find(groups, "PixelMeasuresSequence", "PixelSpacing") or
                              ds.get("PixelSpacing") or [], 2)
            slope = _find(groups, "PixelValueTransformationSequence", "RescaleSlope")
            intercept = _find(groups, "PixelValueTransformationSequence", "RescaleIntercept")
            planes.append(_Plane(0, frame, position, orientation, spacing,
                                 float(slope if slope not in (None, "") else ds.get("RescaleSlope", 1) or 1),
                                 float(intercept if intercept not in (None, "") else
                                       ds.get("RescaleIntercept", 0) or 0)))
        return planes
    return [_Plane(i, None, finite_floats(ds.get("ImagePositionPatient") or [], 3),
                   finite_floats(ds.get("ImageOrientationPatient") or [], 6), finite_floats(ds.get("PixelSpacing") or [], 2),
                   float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0))
            for i, ds in enumerate(stack)]


def _slice_thickness(ds: Dataset) -> float:
    groups = _groups(ds, 0) if "SharedFunctionalGroupsSequence" in ds else []
    for value in (ds.get("SpacingBetweenSlices"), _find(groups, "PixelMeasuresSequence", "SpacingBetweenSlices"),
                  ds.get("SliceThickness"), _find(groups, "PixelMeasuresSequence", "SliceThickness")):
        try:
            if value not in (None, "") and float(value) > 0:
                return float(value)
        except (TypeError, ValueError):
            continue
    return 1.0


def stack_geometry(stack: list[Dataset]) -> tuple[list[_Plane], list[int], np.ndarray, np.ndarray, float]:
    """(planes, order, LPS affine, LPS orthogonal affine, tilt in degrees) of a sorted stack; refuses what
    one affine cannot describe."""
    planes = _planes(stack)
    missing = [p for p in planes if p.position is None or p.orientation is None or p.spacing is None]
    if missing:
        raise NotConvertible("no_geometry", f"{len(missing)} of {len(planes)} planes have no patient geometry "
                             "(ImagePositionPatient, ImageOrientationPatient, PixelSpacing): nothing places "
                             "them in space")
    orientation, spacing = planes[0].orientation, planes[0].spacing
    for p in planes:
        if not np.allclose(p.orientation, orientation, atol=ORIENTATION_TOLERANCE):
            raise NotConvertible("mixed_orientation", "the planes have different orientations "
                                 f"({orientation.tolist()} and {p.orientation.tolist()}): not one volume")
        if not np.allclose(p.spacing, spacing, rtol=1e-4, atol=1e-6):
            raise NotConvertible("mixed_spacing", f"the planes have different pixel spacings "
                                 f"({spacing.tolist()} and {p.spacing.tolist()})")
    row, col = orientation[:3], orientation[3:]
    normal = np.cross(row, col)
    distances = np.array([float(normal @ p.position) for p in planes])
    order = sorted(range(len(planes)), key=lambda i: distances[i])  # stable: single frames are already sorted
    ordered = distances[order]
    if len(planes) > 1 and np.min(np.diff(ordered)) < SAME_POSITION_MM:
        raise NotConvertible("duplicate_positions", "several planes lie at the same position (a 4D, multi-echo "
                             "or repeated acquisition): not one 3D volume")
    first = planes[order[0]].position
    if len(planes) > 1:
        step = (planes[order[-1]].position - first) / (len(planes) - 1)
        gaps = np.diff(ordered)
        mean = float(np.mean(gaps))
        tolerance = max(SPACING_ABSOLUTE_TOLERANCE_MM, SPACING_RELATIVE_TOLERANCE * mean)
        if float(np.max(np.abs(gaps - mean))) > tolerance:
            raise NotConvertible("non_uniform_spacing", f"the slice spacing varies from {float(gaps.min()):.3f} "
                                 f"to {float(gaps.max()):.3f} mm (missing or irregular slices): one affine "
                                 "cannot place them")
        expected = first + np.outer(np.arange(len(planes)), step)
        off_line = float(np.max(np.linalg.norm(np.array([planes[i].position for i in order]) - expected, axis=1)))
        if off_line > tolerance:
            raise NotConvertible("irregular_positions", f"the slice positions leave the stacking line by up to "
                                 f"{off_line:.3f} mm (a varying tilt?): one affine cannot place them")
        along = float(step @ normal)
    else:
        along = _slice_thickness(stack[0])
        step = normal * along
    tilt = math.degrees(math.acos(min(1.0, abs(along) / float(np.linalg.norm(step)))))
    lps = np.eye(4)
    lps[:3, 0] = row * spacing[1]
    lps[:3, 1] = col * spacing[0]
    lps[:3, 2] = step
    lps[:3, 3] = first
    orthogonal = lps.copy()
    orthogonal[:3, 2] = normal * along
    return planes, order, lps, orthogonal, tilt


def _pixels(stack: list[Dataset], planes: list[_Plane], order: list[int]) -> np.ndarray:
    """(planes, rows, columns) stored values with the modality rescale applied, in ``order``; integer types
    are kept when the rescale keeps values integral."""
    arrays = {}
    for index in sorted({planes[i].dataset for i in order}):
        array = stack[index].pixel_array
        arrays[index] = array if array.ndim == 3 else array[np.newaxis]
    raw = [arrays[planes[i].dataset][planes[i].frame or 0] for i in order]
    rescales = [(planes[i].slope, planes[i].intercept) for i in order]
    if all(s == 1 and b == 0 for s, b in rescales):
        return np.stack(raw)
    if all(float(s).is_integer() and float(b).is_integer() for s, b in rescales):
        out = np.stack([a.astype(np.int32) * int(s) + int(b) for a, (s, b) in zip(raw, rescales, strict=True)])
        info = np.iinfo(np.int16)
        return out.astype(np.int16) if out.min() >= info.min and out.max() <= info.max else out
    return np.stack([(a.astype(np.float64) * s + b).astype(np.float32)
                     for a, (s, b) in zip(raw, rescales, strict=True)])


def series_volume(datasets: Sequence[Dataset], *, pixels: bool = True) -> Volume:
    """The series as a volume (datasets with pixel data); :class:`NotConvertible` says why it cannot be.
    ``pixels=False`` gives the grid alone (datasets may then be headers only)."""
    try:
        stack = sort_source_datasets(list(datasets))
    except InvalidSegmentation as exc:
        raise NotConvertible("unsortable", exc.reason) from None
    first = stack[0]
    if int(first.get("SamplesPerPixel", 1) or 1) != 1:
        raise NotConvertible("colour", f"colour images ({first.get('PhotometricInterpretation', '')}) are not "
                             "converted to NIfTI")
    planes, order, lps, orthogonal, tilt = stack_geometry(stack)
    data = None
    if pixels:
        try:
            data = np.ascontiguousarray(_pixels(stack, planes, order).transpose(2, 1, 0))
        except Exception as exc:  # noqa: BLE001 - a codec failure makes this series unconvertible, not the export
            raise NotConvertible("undecodable", f"the pixel data cannot be decoded: {exc}") from None
    notes = []
    if tilt > TILT_REPORTED_DEGREES:
        notes.append(f"gantry tilt {tilt:.2f} degrees: sform sheared (exact voxel positions), qform orthogonal")
    if len(stack) == 1 and len(planes) > 1:
        notes.append(f"multi-frame image: {len(planes)} frames placed by their functional groups")
    shape = (int(first.Columns), int(first.Rows), len(planes))
    return Volume(shape=shape, data=data, affine=LPS_TO_RAS @ lps, qform=LPS_TO_RAS @ orthogonal,
                  order=list(order), tilt_degrees=tilt, notes=notes)


def labelmap(masks: Mapping[int, np.ndarray], volume: Volume) -> tuple[np.ndarray, int]:
    """Masks (label value -> (planes, rows, columns) bool, in source stack order) as one label volume on the
    volume's grid, and the number of voxels claimed by more than one label (the higher value wins)."""
    shape = (volume.shape[2], volume.shape[1], volume.shape[0])
    out = np.zeros(shape, dtype=np.uint8)
    overlaps = 0
    for value in sorted(masks):
        mask = np.asarray(masks[value], dtype=bool)
        if mask.shape != shape:
            raise NotConvertible("mask_shape", f"mask of label {value} has shape {mask.shape}, the series "
                                 f"{shape}")
        overlaps += int(np.count_nonzero(out[mask]))
        out[mask] = value
    return np.ascontiguousarray(out[volume.order].transpose(2, 1, 0)), overlaps


def write_nifti(path: str, data: np.ndarray, volume: Volume) -> None:
    """Write ``data`` (on ``volume``'s grid) as a gzipped NIfTI-1 file whose bytes depend only on the data
    and geometry (gzip without a timestamp or file name)."""
    image = nib.Nifti1Image(data, volume.affine)
    image.set_sform(volume.affine, code=1)
    image.set_qform(volume.qform, code=1)
    image.header.set_xyzt_units("mm")
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL,
                                                   mtime=0) as stream:
        image.to_stream(stream)
