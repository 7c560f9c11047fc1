"""Segmentations of reads: DICOM SEG in the archive, from a SEG file or a mask upload, and their consensus.

A reader's segmentation is a DICOM SEG stored in the archive (so viewers and exports see a standard object)
and linked to the read version that made it. While the case is open, other readers cannot see it (the series
hider registered in annotation.apps). When a case's reads are in, masks are compared reader by reader (Dice,
HD95) and merged by STAPLE or majority vote into a consensus SEG, stored once the case has its consensus.
"""

import os
import tempfile

import numpy as np
import pydicom
from django.conf import settings
from django.db import transaction

from annotation.agreement import mask_majority, mask_staple, pairwise_mask_agreement
from annotation.models import Case, MaskConsensus, Read
from annotation.segmentation import (
    SEG_SOP_CLASS_UIDS,
    InvalidSegmentation,
    SegmentSpec,
    masks_to_seg,
    referenced_series_uid,
    seg_segments,
    seg_to_masks,
    sort_source_datasets,
)
from core.errors import OkapiError
from core.models import User
from imaging import storage
from imaging.dicom.instance import NON_IMAGE_SOP_CLASSES
from imaging.models import Instance, Series
from imaging.services.ingest import ingest_file


def read_dataset(instance: Instance, *, pixels: bool = True) -> pydicom.Dataset:
    """A stored instance's dataset, read from storage."""
    with storage.open_file(instance.file) as fh:
        return pydicom.dcmread(fh, stop_before_pixels=not pixels)


def _source_datasets(series: Series) -> list[pydicom.Dataset]:
    instances = list(Instance.objects.filter(series=series).exclude(sop_class_uid__in=NON_IMAGE_SOP_CLASSES))
    if not instances:
        raise OkapiError("invalid_segmentation", f"series {series.series_uid} has no images to segment")
    return [read_dataset(i, pixels=False) for i in instances]


def target_series(case: Case, series_uid: str | None) -> Series:
    """The image series of a case a segmentation is drawn on (named, or the case's only one)."""
    if case.series_id is not None:
        if series_uid and series_uid != case.series.series_uid:
            raise OkapiError("invalid_segmentation", f"this case is series {case.series.series_uid}, not "
                             f"{series_uid}")
        return case.series
    qs = Series.objects.filter(study=case.study).exclude(modality="SEG")
    if series_uid:
        found = qs.filter(series_uid=series_uid).first()
        if found is None:
            raise OkapiError("invalid_segmentation", f"series {series_uid} is not an image series of this case")
        return found
    if qs.count() != 1:
        raise OkapiError("invalid_segmentation", "this case's study has several series: name the one segmented "
                         "(series_uid)", detail={"series": list(qs.values_list("series_uid", flat=True))})
    return qs.get()


def _store(path: str, *, reader: User | None, source: str) -> Instance:
    result = ingest_file(path, user=None, source=source, detail={"reader": reader.username} if reader else {})
    if not result.ok:
        raise OkapiError("invalid_segmentation", f"the segmentation could not be stored: {result.reason}",
                         detail={"code": result.code})
    return Instance.objects.get(sop_uid=result.sop_instance_uid)


def seg_store_file(*, case: Case, reader: User, path: str, schema_segments: list[dict]) -> Instance:
    """Store an uploaded DICOM SEG for a read: it must be a SEG of this case's images whose segment labels
    are the project's segmentation labels."""
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the upload's fault
        raise OkapiError("invalid_segmentation", f"not a readable DICOM file: {exc}") from None
    if str(ds.get("SOPClassUID", "")) not in SEG_SOP_CLASS_UIDS:
        raise OkapiError("invalid_segmentation", "not a DICOM Segmentation object (SOP Class "
                         f"{ds.get('SOPClassUID', 'missing')})")
    if str(ds.get("StudyInstanceUID", "")) != case.study.study_uid:
        raise OkapiError("invalid_segmentation", f"the segmentation belongs to study {ds.get('StudyInstanceUID')}, "
                         f"not to this case's study {case.study.study_uid}")
    try:
        target_series(case, referenced_series_uid(ds))  # drawn on an image series of this case, or refused
        labels = {s.label for s in seg_segments(ds)}
    except InvalidSegmentation as exc:
        raise OkapiError("invalid_segmentation", exc.reason) from None
    unknown = labels - {s["name"] for s in schema_segments}
    if unknown:
        raise OkapiError("invalid_segmentation", "segment labels not in the project's schema: "
                         + ", ".join(sorted(unknown)), detail={"allowed": [s["name"] for s in schema_segments]})
    return _store(path, reader=reader, source="read")


def seg_store_masks(*, case: Case, reader: User, masks: dict[str, np.ndarray], schema_segments: list[dict],
                    series_uid: str | None = None) -> Instance:
    """Turn mask arrays (segment name -> (slices, rows, cols) binary array in the series' slice order) into a
    DICOM SEG with highdicom, store it in the archive and return it."""
    allowed = {item["name"] for item in schema_segments}
    unknown = set(masks) - allowed
    if unknown or not masks:
        raise OkapiError("invalid_segmentation", "masks are named by the project's segmentation labels: "
                         + (f"unknown {', '.join(sorted(unknown))}" if unknown else "none given"),
                         detail={"allowed": sorted(allowed)})
    specs = _specs_for(schema_segments, masks)
    by_label = {spec.label: spec for spec in specs}
    series = target_series(case, series_uid)
    sources = _source_datasets(series)
    try:
        seg = masks_to_seg(sources, {by_label[k].number: np.asarray(v) for k, v in masks.items()}, specs,
                           content_creator=f"{reader.username[:60]}^", series_description="Okapi read segmentation",
                           uid_root=settings.OKAPI_UID_ROOT)
    except InvalidSegmentation as exc:
        raise OkapiError("invalid_segmentation", exc.reason) from None
    with tempfile.NamedTemporaryFile(suffix=".dcm", dir=settings.FILE_UPLOAD_TEMP_DIR, delete=False) as fh:
        path = fh.name
    try:
        seg.save_as(path, enforce_file_format=True)
        return _store(path, reader=reader, source="read")
    finally:
        if os.path.exists(path):
            os.unlink(path)


def read_segmentation_save(*, case: Case, reader: User, base_version: int, submit: bool = False,
                           seg_path: str | None = None, masks: dict[str, np.ndarray] | None = None,
                           series_uid: str | None = None):
    """Store a reader's segmentation (a DICOM SEG file at ``seg_path``, or mask arrays) and make it a new
    version of their read, keeping its answers: both or neither (one transaction)."""
    from annotation.services.projects import current_schema
    from annotation.services.reads import read_save

    schema = current_schema(case.project)
    segments = schema.definition.get("segments") if schema else None
    if not segments:
        raise OkapiError("invalid_segmentation", "this project's schema has no segmentation labels")
    read = Read.objects.filter(case=case, reader=reader).first()
    with transaction.atomic():
        if masks is not None:
            seg = seg_store_masks(case=case, reader=reader, masks=masks, schema_segments=segments,
                                  series_uid=series_uid)
        else:
            seg = seg_store_file(case=case, reader=reader, path=seg_path, schema_segments=segments)
        return read_save(case=case, reader=reader, answers=read.answers if read else {}, submit=submit,
                         base_version=base_version, confidence=read.confidence if read else None,
                         free_text=read.free_text if read else "", segmentation=seg)


def _specs_for(schema_segments: list[dict], labels) -> list[SegmentSpec]:
    """Segment descriptions for the labels present, numbered 1..n in schema order (as SEG requires)."""
    return SegmentSpec.from_schema([item for item in schema_segments if item["name"] in labels])


def read_masks(read: Read) -> tuple[dict[str, np.ndarray], tuple[float, float, float]] | None:
    """A read's masks by segment label, aligned to its series' slices, and the voxel spacing (mm)."""
    if read.segmentation_id is None:
        return None
    seg = read_dataset(read.segmentation)
    series = Series.objects.get(series_uid=referenced_series_uid(seg))
    sources = sort_source_datasets(_source_datasets(series))
    labels = {s.number: s.label for s in seg_segments(seg)}
    masks = {labels[n]: m for n, m in seg_to_masks(seg, sources).items()}
    return masks, _spacing(sources)


def _spacing(sources: list[pydicom.Dataset]) -> tuple[float, float, float]:
    rows, cols = (float(v) for v in sources[0].get("PixelSpacing", [1.0, 1.0]))
    if len(sources) > 1 and "ImagePositionPatient" in sources[0]:
        step = float(np.linalg.norm(np.subtract(sources[1].ImagePositionPatient, sources[0].ImagePositionPatient)))
    else:
        step = float(sources[0].get("SliceThickness", 1.0) or 1.0)
    return (step or 1.0, rows, cols)


def case_mask_consensus(case: Case, reads: list[Read]) -> dict | None:
    """Agreement between the readers' masks (Dice, HD95 per segment and pair) and their merged masks
    (STAPLE or majority, as the project says): {"detail", "consensus"}. None when fewer than two reads have a
    segmentation."""
    loaded = {r.reader.username: read_masks(r) for r in reads if r.segmentation_id}
    loaded = {k: v for k, v in loaded.items() if v is not None}
    if len(loaded) < 2:
        return None
    spacing = next(iter(loaded.values()))[1]
    labels = sorted({label for masks, _ in loaded.values() for label in masks})
    detail, consensus = {"segments": {}}, {}
    for label in labels:
        shape = next(m[label].shape for m, _ in loaded.values() if label in m)
        per_reader = {name: masks.get(label, np.zeros(shape, bool)) for name, (masks, _) in loaded.items()}
        pairs = pairwise_mask_agreement(per_reader, spacing=spacing)
        dices = [p["dice"] for p in pairs.values()]
        detail["segments"][label] = {
            "pairs": {f"{a}|{b}": {"dice": round(p["dice"], 6), "hd95": _finite(p["hd95"])}
                      for (a, b), p in pairs.items()},
            "mean_dice": round(float(np.mean(dices)), 6)}
        stack = list(per_reader.values())
        consensus[label] = (mask_staple(stack).mask if case.project.mask_consensus == MaskConsensus.STAPLE
                            else mask_majority(stack))
    detail["mean_dice"] = round(float(np.mean([s["mean_dice"] for s in detail["segments"].values()])), 6)
    return {"detail": detail, "consensus": consensus}


def _finite(value: float) -> float | None:
    return round(float(value), 4) if np.isfinite(value) else None


def store_consensus_seg(case: Case, reads: list[Read], consensus: dict[str, np.ndarray]) -> str:
    """Store merged masks as a DICOM SEG of the case's series; its SOP Instance UID."""
    from annotation.services.projects import current_schema

    specs = _specs_for(current_schema(case.project).definition.get("segments", []), consensus)
    number = {s.label: s.number for s in specs}
    first = next(r for r in reads if r.segmentation_id)
    series = Series.objects.get(series_uid=referenced_series_uid(read_dataset(first.segmentation, pixels=False)))
    seg = masks_to_seg(_source_datasets(series), {number[k]: v.astype(np.uint8) for k, v in consensus.items()
                                                  if k in number}, specs,
                       content_creator="Okapi^Consensus", series_description="Okapi consensus segmentation",
                       content_label="CONSENSUS", uid_root=settings.OKAPI_UID_ROOT)
    with tempfile.NamedTemporaryFile(suffix=".dcm", dir=settings.FILE_UPLOAD_TEMP_DIR, delete=False) as fh:
        path = fh.name
    try:
        seg.save_as(path, enforce_file_format=True)
        return _store(path, reader=None, source="consensus").sop_uid
    finally:
        if os.path.exists(path):
            os.unlink(path)
