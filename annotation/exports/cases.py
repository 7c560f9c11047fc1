"""Writing one case of an export: its series as NIfTI and/or DICOM, its consensus and reader segmentations
as DICOM SEG and NIfTI label maps on the image grid, and its rows of the label tables.

Folders are named by pseudonyms (``cases/case-…/series-01/``), never by UIDs or patient data. In a
de-identified export, DICOM files and SEGs go through the PS3.15 basic profile of ``imaging.dicom.deid``
(the ingest one: keyed replacement UIDs, so SEG references still point at the exported images), and tables
carry de-identified UIDs and no patient attributes. Every SEG names its creator by reader pseudonym (or
``consensus``), never by username.
"""

import io
from collections import Counter

import pydicom

from annotation.exports import nifti, selection
from annotation.exports.tables import (
    AgreementCollector,
    CsvWriter,
    JsonArrayWriter,
    answer_cell,
    class_index,
    class_of,
    pseudonymize_detail,
)
from annotation.models import Case, CaseState, Read
from annotation.segmentation import InvalidSegmentation, referenced_series_uid, seg_segments, seg_to_masks
from imaging import storage
from imaging.dicom.deid import deidentify, replacement_uid

IDENTIFYING_COLUMNS = ["patient_id", "patient_name", "accession_number", "study_date"]


def read_dataset(key: str, *, pixels: bool, in_memory: bool = False) -> pydicom.Dataset:
    """A stored DICOM file as a dataset (headers only unless ``pixels``); ``in_memory`` for small objects
    that get copied (highdicom copies a SEG, and cannot copy an open file it was read from)."""
    with storage.open_file(key) as fh:
        return pydicom.dcmread(io.BytesIO(fh.read()) if in_memory else fh, stop_before_pixels=not pixels)


class CaseWriter:
    """Writes cases into ``context.root`` and their rows into the label tables, one case at a time."""

    def __init__(self, context):
        self.c = context
        keys = [q.key for q in context.questions]
        identified = context.deid is None
        self.consensus_csv = CsvWriter(context.path("labels/consensus.csv"), [
            "case", "split", "class", "state", "consensus_source", "agreement", "reads", "series", "study_uid",
            *(IDENTIFYING_COLUMNS if identified else []), *keys, "consensus_mask"])
        self.consensus_json = JsonArrayWriter(context.path("labels/consensus.json"))
        self.reads_csv = CsvWriter(context.path("reads/reads.csv"), [
            "case", "reader", "version", "schema_version", "confidence", "time_spent_seconds",
            *(["submitted_at", "free_text"] if identified else []), *keys, "mask", "seg"])
        self.reads_json = JsonArrayWriter(context.path("reads/reads.json"))
        self.agreement = AgreementCollector(context.questions)

    def close(self) -> None:
        for writer in (self.consensus_csv, self.consensus_json, self.reads_csv, self.reads_json):
            writer.close()

    def _uid(self, uid: str) -> str:
        return replacement_uid(uid, self.c.deid) if self.c.deid else uid

    def _problem(self, where: str, code: str, reason: str) -> None:
        self.c.problems.append({"where": where, "code": code, "reason": reason})

    def write(self, case: Case) -> None:
        c, project_id = self.c, self.c.project.pk
        cid = selection.pseudonym("case", project_id, case.pk)
        reads = selection.case_reads(case, c.request)
        names = {username: selection.pseudonym("reader", project_id, reader_id) for username, reader_id in
                 Read.objects.filter(case=case).values_list("reader__username", "reader_id")}
        reads.sort(key=lambda r: names[r.reader.username])
        consensus = (case.consensus or {}).get("answers") if case.state == CaseState.CONSENSUS else None
        segs = self._segmentations(cid, case, reads, names)
        series = [self._series(cid, cs, segs) for cs in selection.case_series(case, c.request)]
        for seg in segs:
            if not seg.get("used"):
                self._problem(cid, "segmentation_not_exported", f"the {seg['name']} segmentation is drawn on a "
                              "series this export leaves out")
        klass = class_of(c.stratify, consensus)
        split = c.splits[cid]
        for entry in series:
            if entry["image"] and (c.stratify is None or klass is not None):
                item = {"case": cid, "image": entry["image"], "series": entry["label"]}
                if klass is not None:
                    item["label"] = class_index(c.stratify, klass)
                c.items.append(item)
            if entry["image"] and entry["consensus_mask"]:
                c.seg_items.append({"case": cid, "image": entry["image"], "label": entry["consensus_mask"],
                                    "series": entry["label"]})
        self._tables(cid, case, split, klass, consensus, reads, names, series)

    def _segmentations(self, cid: str, case: Case, reads: list[Read], names: dict) -> list[dict]:
        found = []
        consensus = selection.consensus_segmentation(case)
        if consensus is not None:
            found.append({"name": "consensus", "path": "consensus", "creator": "consensus", "instance": consensus})
        for read in reads:
            if read.segmentation_id:
                reader = names[read.reader.username]
                found.append({"name": reader, "path": f"reads/{reader}", "creator": reader,
                              "instance": read.segmentation, "reader": reader})
        for seg in found:
            seg["dataset"] = read_dataset(seg["instance"].file, pixels=True, in_memory=True)
            try:
                seg["series_uid"] = referenced_series_uid(seg["dataset"])
            except InvalidSegmentation as exc:
                self._problem(cid, "invalid_segmentation", f"{seg['name']}: {exc.reason}")
                seg["used"], seg["series_uid"] = True, None
        return found

    def _series(self, cid: str, cs: selection.CaseSeries, segs: list[dict]) -> dict:
        c = self.c
        base = f"cases/{cid}/{cs.label}"
        where = f"{cid}/{cs.label}"
        instances = selection.series_images(cs.series)
        want_nifti = c.request["images"] in ("nifti", "both")
        entry = {"label": cs.label, "series_uid": self._uid(cs.series.series_uid), "modality": cs.series.modality,
                 "instances": len(instances), "image": None, "consensus_mask": None, "consensus_seg": None,
                 "reads": {}}
        report = {"case": cid, "series": cs.label, "modality": cs.series.modality, "instances": len(instances)}
        datasets = [read_dataset(i.file, pixels=want_nifti) for i in instances]
        volume = None
        try:
            volume = nifti.series_volume(datasets, pixels=want_nifti)
            report["geometry"] = volume.geometry()
            if want_nifti:
                entry["image"] = f"{base}/image.nii.gz"
                nifti.write_nifti(c.path(entry["image"]), volume.data, volume)
                c.counts["series_converted"] += 1
                volume.data = None
            if volume.tilt_degrees > nifti.TILT_REPORTED_DEGREES:
                self._problem(where, "gantry_tilt", volume.notes[0])
        except nifti.NotConvertible as exc:
            report["not_converted"] = {"code": exc.code, "reason": exc.reason}
            c.counts["series_not_converted"] += 1
            self._problem(where, exc.code, exc.reason)
        c.series_report.append(report)
        if c.request["images"] in ("dicom", "both"):
            for index, instance in enumerate(instances):
                self._write_dicom(instance.file, f"{base}/dicom/{index + 1:04d}.dcm")
                c.counts["dicom_files"] += 1
        for seg in segs:
            if seg["series_uid"] != cs.series.series_uid:
                continue
            seg["used"] = True
            mask = self._mask(where, seg, datasets, volume, f"{base}/{seg['path']}_mask.nii.gz")
            seg_path = f"{base}/{seg['path']}_seg.dcm"
            self._write_seg(seg, seg_path)
            if "reader" in seg:
                entry["reads"][seg["reader"]] = {"mask": mask, "seg": seg_path}
                c.counts["reader_masks"] += 1 if mask else 0
            else:
                entry["consensus_mask"], entry["consensus_seg"] = mask, seg_path
                c.counts["consensus_masks"] += 1 if mask else 0
        return entry

    def _mask(self, where: str, seg: dict, datasets, volume, path: str) -> str | None:
        if volume is None:
            return None
        try:
            masks = seg_to_masks(seg["dataset"], datasets)
            labels = {s.number: s.label for s in seg_segments(seg["dataset"])}
            values = {}
            for number, mask in masks.items():
                value = self.c.mask_values.get(labels[number])
                if value is None:
                    self._problem(where, "unknown_segment", f"{seg['name']}: segment {labels[number]!r} is not "
                                  "a segmentation label of the exported schema; left out of the NIfTI mask")
                    continue
                values[value] = mask
            data, overlaps = nifti.labelmap(values, volume)
        except (InvalidSegmentation, nifti.NotConvertible) as exc:
            self._problem(where, "mask_not_converted", f"{seg['name']}: {exc.reason}")
            return None
        if overlaps:
            self._problem(where, "overlapping_segments", f"{seg['name']}: {overlaps} voxels belong to several "
                          "segments; the NIfTI label map keeps the higher label (the SEG keeps all)")
        nifti.write_nifti(self.c.path(path), data, volume)
        return path

    def _write_dicom(self, key: str, path: str) -> None:
        if self.c.deid is None:
            with open(self.c.path(path), "wb") as out:
                for chunk in storage.iter_file(key):
                    out.write(chunk)
            return
        ds = read_dataset(key, pixels=True)
        deidentify(ds, self.c.deid)
        ds.save_as(self.c.path(path), enforce_file_format=True)

    def _write_seg(self, seg: dict, path: str) -> None:
        ds = seg["dataset"]
        if self.c.deid is not None:
            deidentify(ds, self.c.deid)
        ds.ContentCreatorName = seg["creator"]
        ds.save_as(self.c.path(path), enforce_file_format=True)
        seg["dataset"] = None

    def _tables(self, cid, case, split, klass, consensus, reads, names, series) -> None:
        c = self.c
        identified = c.deid is None
        study = case.study
        extra = {"patient_id": study.patient_identifier, "patient_name": study.patient_name,
                 "accession_number": study.accession_number, "study_date": study.study_date} if identified else {}
        answers = consensus or {}
        masks = [e["consensus_mask"] for e in series if e["consensus_mask"]]
        self.consensus_csv.write({
            "case": cid, "split": split, "class": klass, "state": case.state,
            "consensus_source": case.consensus_source, "agreement": case.agreement, "reads": len(reads),
            "series": "|".join(e["label"] for e in series), "study_uid": self._uid(study.study_uid), **extra,
            **{q.key: answer_cell(answers.get(q.key)) for q in c.questions}, "consensus_mask": "|".join(masks)})
        self.consensus_json.write({
            "case": cid, "split": split, "class": klass, "state": case.state,
            "consensus_source": case.consensus_source or None, "agreement": case.agreement,
            "study_uid": self._uid(study.study_uid), **extra, "answers": consensus,
            "detail": pseudonymize_detail(case.consensus_detail, names), "series": series,
            "readers": [names[r.reader.username] for r in reads]})
        for question in c.questions:
            value = answers.get(question.key)
            if value is None:
                continue
            counter = c.classes.setdefault(question.key, Counter())
            for item in (value if isinstance(value, list) else [value]):
                counter[answer_cell(item)] += 1
        times = [t for t in [case.consensus_at, *(r.submitted_at for r in reads)] if t is not None]
        if times:
            c.labels_as_of = max(c.labels_as_of, max(times).isoformat())
        for read in reads:
            reader = names[read.reader.username]
            c.reader_reads[reader] += 1
            files = next((e["reads"][reader] for e in series if reader in e["reads"]), {})
            row = {"case": cid, "reader": reader, "version": read.version, "schema_version": read.schema.version,
                   "confidence": read.confidence, "time_spent_seconds": round(read.time_spent_seconds, 3),
                   "mask": files.get("mask"), "seg": files.get("seg")}
            if identified:
                row |= {"submitted_at": read.submitted_at.isoformat() if read.submitted_at else None,
                        "free_text": read.free_text}
            self.reads_csv.write(row | {q.key: answer_cell(read.answers.get(q.key)) for q in c.questions})
            self.reads_json.write(row | {"answers": read.answers})
        self.agreement.add_case(cid, [(names[r.reader.username], r.answers) for r in reads], consensus,
                                pseudonymize_detail(case.consensus_detail, names))

