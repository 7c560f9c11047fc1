"""Export benchmark: time and peak memory of building a dataset export at several sizes.

Run from the repository root (see bench/README.md)::

    .venv/bin/python bench/export.py [--sizes 100,300,1000] [--seg-every 10] [--out FILE] [--keep]

Setup (not timed): a fresh PostgreSQL database ``okapi_bench_export`` (dropped and recreated) and a temporary
data folder; ``max(sizes)`` synthetic studies, copies of the real 3-slice CT series
``seg_sr/dcmqi_liver_ct3slice/ct`` with new Study/Series/SOP/FrameOfReference UIDs and patient names and IDs,
ingested through ``imaging.services.ingest``; a consensus DICOM SEG (highdicom) on every ``--seg-every``-th
study; one project per size holding the first N studies as cases, each with two submitted reads and a
consensus (finding A/B/C in 6:3:1).

Measured, per size, each in a fresh child process: building the default export (de-identified, NIfTI images
and masks, tables, datalists, datasheet, zip into storage) with ``annotation.exports.build.export_build``: wall
time and peak RSS (VmHWM), and RSS after imports; then, in another child, streaming the stored archive back
through the download view's generator (time, peak RSS, SHA-256 checked). The peer is the smallest size of the
same run: ``rss_ratio`` (peak RSS at the largest size / at the smallest) near 1 means memory does not grow
with the export. Ends with one line ``RESULT export key=value ...``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, okapi_version, reset_postgres_db, result_line, write_json  # noqa: E402

DB_NAME = "okapi_bench_export"
SOURCE = (REPO.parent / "shared" / "data" / "dicom" / "seg_sr" / "dcmqi_liver_ct3slice" / "ct").resolve()
SCHEMA = {
    "questions": [{"key": "finding", "type": "single_choice", "options": ["A", "B", "C"]},
                  {"key": "likelihood", "type": "ordinal", "min": 1, "max": 5}],
    "segments": [{"name": "Lesion", "color": "#e6194b"}],
}


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _setup_django() -> None:
    sys.path.insert(0, str(REPO))
    os.chdir(REPO)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


# --------------------------------------------------------------------------------------------------------------
# Children: one export, or one download, in a fresh process


def child_build(project_id: int) -> dict:
    _setup_django()
    from annotation.exports.build import export_build
    from annotation.exports.services import export_params
    from annotation.models import Project

    project = Project.objects.get(pk=project_id)
    baseline = _rss_mb("VmRSS")
    started = time.perf_counter()
    built = export_build(project=project, request=export_params({}, project=project))
    seconds = time.perf_counter() - started
    export = built.export
    return {"seconds": round(seconds, 3), "baseline_rss_mb": round(baseline, 1),
            "peak_rss_mb": round(_rss_mb("VmHWM"), 1), "archive_bytes": export.size,
            "files": export.summary["counts"]["files"], "version": export.version,
            "content_hash": export.content_hash, "counts": export.summary["counts"]}


def child_download(project_id: int) -> dict:
    _setup_django()
    from annotation.exports.api import _stream
    from annotation.models_export import Export

    export = Export.objects.filter(project_id=project_id).order_by("-version").first()
    baseline = _rss_mb("VmRSS")
    digest = hashlib.sha256()
    started = time.perf_counter()
    for chunk in _stream(export.file, 0, export.size - 1):
        digest.update(chunk)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "baseline_rss_mb": round(baseline, 1),
            "peak_rss_mb": round(_rss_mb("VmHWM"), 1), "sha256_ok": digest.hexdigest() == export.sha256}


def _run_child(kind: str, project_id: int, env: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, f"--child-{kind}", str(project_id)], env=env, cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------------------
# Setup: synthetic studies, SEGs, projects with reads and consensus


def _synthetic_files(count: int, folder: Path):
    """(path, name) of ``count`` copies of the real series, each a new study with its own UIDs and patient."""
    import pydicom
    from pydicom.uid import generate_uid

    sources = [pydicom.dcmread(p) for p in sorted(SOURCE.iterdir())]
    for i in range(count):
        study, series, frame = generate_uid(), generate_uid(), generate_uid()
        for j, ds in enumerate(sources):
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.PatientID, ds.PatientName = f"BENCH{i % 400:04d}", f"Bench^Patient{i:04d}"
            ds.AccessionNumber, ds.StudyDate = f"ACC{i:06d}", f"20{15 + i % 10}0{1 + i % 9}1{i % 10}"
            path = folder / f"{i:05d}_{j}.dcm"
            ds.save_as(path)
            yield str(path), path.name


def setup_data(sizes: list[int], seg_every: int) -> dict[int, int]:
    """Ingest the studies and make one project per size; returns {size: project id}."""
    import numpy as np
    import pydicom
    from django.conf import settings
    from django.utils import timezone

    from annotation.models import Case, CaseState, Read, ReadState
    from annotation.segmentation import SegmentSpec, masks_to_seg
    from annotation.services.projects import member_add, project_create
    from core.auth import user_create
    from imaging import storage
    from imaging.models import Instance, Study
    from imaging.services.ingest import ingest_file, ingest_files

    lead = user_create(username="lead", password="bench-pass", role="lead")
    scientist = user_create(username="scientist", password="bench-pass", role="data_scientist")
    readers = [user_create(username=f"reader{i}", password="bench-pass", role="radiologist") for i in (1, 2)]
    total = max(sizes)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=settings.FILE_UPLOAD_TEMP_DIR) as folder:
        results = [r for _, r in ingest_files(_synthetic_files(total, Path(folder)), user=lead, source="bench",
                                              consume=True)]
    failed = [r.reason for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} synthetic files were refused: {failed[:3]}")
    print(f"ingested {len(results)} instances of {total} studies in {time.perf_counter() - started:.0f} s",
          flush=True)
    studies = list(Study.objects.order_by("id"))
    segs: dict[int, str] = {}
    specs = SegmentSpec.from_schema(SCHEMA["segments"])
    mask = np.zeros((3, 512, 512), np.uint8)
    mask[:, 200:260, 220:300] = 1
    for index in range(0, total, seg_every):
        instances = Instance.objects.filter(series__study=studies[index]).order_by("instance_number")
        sources = []
        for inst in instances:
            with storage.open_file(inst.file) as fh:
                sources.append(pydicom.dcmread(fh, stop_before_pixels=True))
        seg = masks_to_seg(sources, {1: mask}, specs, content_creator="Okapi^Consensus",
                           content_label="CONSENSUS", uid_root=settings.OKAPI_UID_ROOT)
        with tempfile.NamedTemporaryFile(suffix=".dcm", dir=settings.FILE_UPLOAD_TEMP_DIR, delete=False) as fh:
            seg.save_as(fh.name, enforce_file_format=True)
        result = ingest_file(fh.name, user=lead, source="bench", consume=True)
        segs[index] = result.sop_instance_uid
    print(f"stored {len(segs)} consensus SEGs", flush=True)
    now = timezone.now()
    projects = {}
    for size in sizes:
        project = project_create(user=lead, name=f"bench {size}", schema=SCHEMA, reads_per_case=2)
        member_add(project=project, user=lead, member=scientist, role="data_scientist")
        for reader in readers:
            member_add(project=project, user=lead, member=reader, role="radiologist")
        schema = project.schemas.get()
        classes = ["A"] * 6 + ["B"] * 3 + ["C"]
        cases = Case.objects.bulk_create([
            Case(project=project, study=studies[i], priority=i, state=CaseState.CONSENSUS, reads_submitted=2,
                 agreement=1.0, consensus_source="majority", consensus_at=now,
                 consensus={"answers": {"finding": classes[i % 10], "likelihood": 3}, "segmentation": segs.get(i)},
                 consensus_detail={"questions": {}, "reasons": []}) for i in range(size)])
        Read.objects.bulk_create([
            Read(case=case, reader=reader, schema=schema, version=1, state=ReadState.SUBMITTED,
                 answers={"finding": classes[i % 10], "likelihood": 3}, confidence=4, time_spent_seconds=30.0,
                 updated_at=now, submitted_at=now)
            for i, case in enumerate(cases) for reader in readers])
        projects[size] = project.pk
    return projects


# --------------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,300,1000", help="studies per export, comma-separated")
    parser.add_argument("--seg-every", type=int, default=10, help="a consensus SEG on every N-th study")
    parser.add_argument("--out", help="write the full results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    parser.add_argument("--child-build", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-download", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_build is not None:
        print(json.dumps(child_build(args.child_build)))
        return 0
    if args.child_download is not None:
        print(json.dumps(child_download(args.child_download)))
        return 0

    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    workdir = Path(tempfile.mkdtemp(prefix="okapi-bench-export-"))
    reset_postgres_db(DB_NAME)
    env = dict(os.environ, DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
               OKAPI_DATA_DIR=str(workdir / "data"), REDIS_URL="", OKAPI_INGEST_PROCESSES="2")
    os.environ.update(env)
    try:
        _setup_django()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        projects = setup_data(sizes, args.seg_every)
        runs = {}
        for size in sizes:
            build = _run_child("build", projects[size], env)
            download = _run_child("download", projects[size], env)
            runs[size] = {"build": build, "download": download}
            print(f"{size:>6} studies: build {build['seconds']:8.1f} s ({size / build['seconds']:6.1f} studies/s), "
                  f"peak RSS {build['peak_rss_mb']:7.1f} MB (after imports {build['baseline_rss_mb']:.1f}), "
                  f"archive {build['archive_bytes'] / 1e6:8.1f} MB, {build['files']} files; download "
                  f"{build['archive_bytes'] / 1e6 / max(download['seconds'], 1e-9):7.1f} MB/s, peak RSS "
                  f"{download['peak_rss_mb']:.1f} MB, sha256 {'ok' if download['sha256_ok'] else 'WRONG'}",
                  flush=True)
        small, large = runs[sizes[0]]["build"], runs[sizes[-1]]["build"]
        metrics = {"studies": sizes[-1], "seconds": large["seconds"],
                   "studies_per_s": sizes[-1] / large["seconds"]}
        for size in sizes:
            metrics[f"peak_rss_mb_{size}"] = runs[size]["build"]["peak_rss_mb"]
        metrics |= {
            f"rss_ratio_{sizes[-1]}_vs_{sizes[0]}": large["peak_rss_mb"] / small["peak_rss_mb"],
            f"rss_growth_mb_{sizes[0]}_to_{sizes[-1]}": large["peak_rss_mb"] - small["peak_rss_mb"],
            "archive_mb": large["archive_bytes"] / 1e6,
            "download_mb_per_s": large["archive_bytes"] / 1e6 / max(runs[sizes[-1]]["download"]["seconds"], 1e-9),
            "download_peak_rss_mb": runs[sizes[-1]]["download"]["peak_rss_mb"],
            "download_sha256_ok": float(all(r["download"]["sha256_ok"] for r in runs.values())),
        }
        if args.out:
            write_json(args.out, {"okapi": okapi_version(), "sizes": sizes, "seg_every": args.seg_every,
                                  "source": str(SOURCE), "runs": runs, "metrics": metrics})
        if args.keep:
            print(f"kept {workdir}")
        print(result_line("export", {k: float(v) for k, v in metrics.items()}))
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
