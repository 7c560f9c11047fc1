"""Building an export: every file written to a staging folder on disk, one case and one series at a time,
then hashed, zipped deterministically, stored and recorded as a version.

Memory holds one series (its pixels and masks) and per-case summaries, never the archive: tables are
written row by row, the zip is written from files on disk, and the archive goes to storage with
``imaging.storage.put_file`` (a rename on disk, an upload on S3). A failure anywhere (disk full, a crash of
the worker) leaves no Export row: the row is written only after the archive is stored, and the staging
folder is removed whatever happens (a crashed worker's folder is swept by the next build after a day).
"""

import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings

from annotation.exports import archive, datalist, datasheet, hashing, selection, tables
from annotation.exports.cases import CaseWriter
from annotation.exports.services import export_register
from annotation.models import Case, Project
from annotation.models_export import Export
from annotation.schema import Question, parse_questions
from imaging.dicom.deid import DeidConfig

STALE_STAGING_SECONDS = 24 * 3600
CASE_CHUNK = 100
Progress = Callable[[float, str], None]


@dataclass
class BuildResult:
    export: Export
    reused: bool


@dataclass
class Context:
    """What the case writer needs and what it accumulates (summaries only, no pixels)."""

    project: Project
    request: dict
    root: str
    questions: list[Question]
    stratify: Question | None
    mask_values: dict[str, int]
    splits: dict[str, str]
    deid: DeidConfig | None
    problems: list[dict] = field(default_factory=list)
    series_report: list[dict] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    reader_reads: Counter = field(default_factory=Counter)
    classes: dict[str, Counter] = field(default_factory=dict)
    items: list[dict] = field(default_factory=list)
    seg_items: list[dict] = field(default_factory=list)
    labels_as_of: str = ""

    def path(self, relative: str) -> str:
        full = os.path.join(self.root, *relative.split("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        return full


def _stratify_question(questions: list[Question]) -> Question | None:
    for kind in ("single_choice", "yes_no"):
        for q in questions:
            if q.type == kind:
                return q
    return None


def _sweep_stale_staging() -> None:
    cutoff = time.time() - STALE_STAGING_SECONDS
    for entry in os.scandir(settings.FILE_UPLOAD_TEMP_DIR):
        if entry.name.startswith("export-") and entry.is_dir() and entry.stat().st_mtime < cutoff:
            shutil.rmtree(entry.path, ignore_errors=True)


def export_build(*, project: Project, request: dict, user=None, job_id=None,
                 on_progress: Progress | None = None) -> BuildResult:
    """Build the export ``request`` (normalised by services.export_params) of ``project`` and record it, or
    return the existing version with the same content. Raises on any failure, leaving nothing behind."""
    progress = on_progress or (lambda fraction, message: None)
    _sweep_stale_staging()
    staging = tempfile.mkdtemp(prefix=f"export-{job_id or 'cli'}-", dir=settings.FILE_UPLOAD_TEMP_DIR)
    try:
        root = os.path.join(staging, "files")
        os.makedirs(root)
        context, schema = _write_files(project, request, root, progress)
        names = sorted(os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/")
                       for d, _, files in os.walk(root) for f in files)
        files = []
        hashed = _throttled(progress, 0.9, 0.92, "checksums")
        for index, name in enumerate(names, start=1):
            digest, size = hashing.file_sha256(os.path.join(root, *name.split("/")))
            files.append({"path": name, "sha256": digest, "size": size})
            hashed(index, len(names))
        manifest = hashing.build_manifest(
            files=files, request=request, schema_version=schema.version if schema else None,
            project={"id": project.pk, "name": project.name}, series=context.series_report)
        with open(os.path.join(root, "manifest.json"), "wb") as fh:
            fh.write(manifest)
        content_hash = hashing.content_hash(manifest)
        target = os.path.join(staging, "export.zip")
        # Progress all along, so that the job's heartbeat goes on during a long hashing or zipping (a silent
        # job is taken for dead after OKAPI_JOB_STALE_MINUTES and queued again).
        archive.write_zip(root, names + ["manifest.json"], target,
                          on_file=_throttled(progress, 0.92, 0.97, "writing the archive"))
        digest, size = hashing.file_sha256(target)
        progress(0.97, "storing the archive")
        summary = _summary(context, len(files) + 1)
        export, reused = export_register(
            project=project, content_hash=content_hash, archive=target, size=size, sha256=digest,
            request=request, schema_version=schema.version if schema else None, summary=summary, user=user,
            job_id=job_id)
        return BuildResult(export=export, reused=reused)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _throttled(progress: Progress, start: float, end: float, what: str):
    """``on_item(done, total)`` reporting ``start``..``end`` of the build, at most twice a second (and the last)."""
    last = 0.0

    def on_item(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 0.5 or done == total:
            last = now
            progress(start + (end - start) * done / max(total, 1), f"{what}: {done}/{total}")

    return on_item


def _write_files(project: Project, request: dict, root: str, progress: Progress):
    schema = selection.export_schema(project, request["schema_version"])
    definition = schema.definition if schema else {"questions": [], "segments": []}
    questions = parse_questions(definition)
    stratify = _stratify_question(questions)
    cases = selection.export_cases(project, request)
    selected = list(cases.values_list("id", "consensus"))  # the cases are fixed here, whatever changes later
    strata = {selection.pseudonym("case", project.pk, pk): tables.class_of(stratify, (consensus or {}).get("answers"))
              for pk, consensus in selected}
    split = request["split"]
    splits = datalist.stratified_split(strata, validation=split["validation"], test=split["test"],
                                       seed=split["seed"])
    deid = DeidConfig(secret=selection.deid_secret(), uid_root=settings.OKAPI_UID_ROOT) \
        if request["deidentified"] else None
    context = Context(project=project, request=request, root=root, questions=questions, stratify=stratify,
                      mask_values={s["name"]: i + 1 for i, s in enumerate(definition.get("segments", []))},
                      splits=splits, deid=deid)
    writer = CaseWriter(context)
    total, done = len(selected), 0
    written = _throttled(progress, 0.0, 0.9, "cases")
    try:
        for start in range(0, total, CASE_CHUNK):
            ids = [pk for pk, _ in selected[start:start + CASE_CHUNK]]
            # By id alone, not through the selection's filters again: a case that changes state during a
            # long build is still the one counted, split and listed above.
            for case in (Case.objects.filter(pk__in=ids).select_related("study", "series")
                         .defer("study__attributes", "series__attributes").order_by("id")):
                writer.write(case)
                done += 1
                written(done, total)
    finally:
        writer.close()
    agreement = writer.agreement.result()
    _json(context, "agreement.json", agreement)
    _json(context, "schema.json", {"version": schema.version if schema else None, "definition": definition})
    labels = {str(i): answer for i, answer in enumerate(_class_names(stratify))} if stratify else {}
    _json(context, "datalist.json", datalist.datalist(
        context.items, splits, name=project.name, task="classification",
        label_question=stratify.key if stratify else None, labels=labels))
    if context.mask_values:
        _json(context, "datalist_segmentation.json", datalist.datalist(
            context.seg_items, splits, name=project.name, task="segmentation",
            labels={"0": "background"} | {str(v): k for k, v in context.mask_values.items()}))
    info = {
        "project": {"id": project.pk, "name": project.name, "description": project.description,
                    "reads_per_case": project.reads_per_case},
        "request": request, "schema": {"version": schema.version if schema else None, "definition": definition},
        "counts": _counts(context, total), "classes": _classes(context), "stratify_by": stratify.key if stratify
        else None, "splits": datalist.split_counts(splits, strata),
        "readers": [{"reader": r, "reads": n} for r, n in sorted(context.reader_reads.items())],
        "agreement": agreement, "problems": context.problems, "labels_as_of": context.labels_as_of,
        "mask_labels": {v: k for k, v in context.mask_values.items()},
    }
    with open(context.path("README.md"), "w", encoding="utf-8", newline="\n") as fh:
        fh.write(datasheet.render(info))
    return context, schema


def _class_names(question: Question) -> list[str]:
    return list(question.options) if question.type == "single_choice" else ["yes", "no"]


def _json(context: Context, name: str, obj) -> None:
    with open(context.path(name), "wb") as fh:
        fh.write(hashing.pretty_json(obj))


def _counts(context: Context, cases: int) -> dict:
    c = context.counts
    return {"cases": cases, "reads": sum(context.reader_reads.values()), "readers": len(context.reader_reads),
            "series_converted": c["series_converted"], "series_not_converted": c["series_not_converted"],
            "dicom_files": c["dicom_files"], "consensus_masks": c["consensus_masks"],
            "reader_masks": c["reader_masks"]}


def _classes(context: Context) -> dict:
    return {key: dict(sorted(counter.items())) for key, counter in context.classes.items()}


def _summary(context: Context, files: int) -> dict:
    return {"counts": {k: int(v) for k, v in context.counts.items()} | {"files": files},
            "classes": _classes(context), "readers": len(context.reader_reads),
            "problems": context.problems[:1000], "datalist": {"items": len(context.items),
                                                             "segmentation_items": len(context.seg_items)}}
