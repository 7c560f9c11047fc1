"""DICOMweb benchmark: Okapi against Orthanc (+ DICOMweb plugin) on the same machine and data.

Run from the repository root (see bench/README.md)::

    .venv/bin/python bench/dicomweb.py [--out FILE] [--studies 1000] [--okapi-workers 2] [--keep]

Measures, on each server: STOW-RS throughput (real data, median of three passes, then synthetic studies), the QIDO-RS
study-list queries OHIF sends, series /metadata latency and frame retrieval rate for a 192-slice
MR series (1 and 6 connections). Prints a side-by-side table and one ``RESULT dicomweb ...`` line
in which every ratio means "how many times better Okapi is" (> 1: Okapi better).
"""

from __future__ import annotations

import argparse
import io
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import pydicom
import requests
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    CpuMeter,
    Target,
    compare,
    dig,
    first_part,
    fmt,
    get_all,
    guarded,
    json_or,
    multipart_related,
    print_comparison,
    result_line,
    result_metrics,
    start_okapi,
    start_orthanc,
    summarize_ms,
    wait_until_quiet,
    write_json,
)

DATA = (REPO.parent / "shared" / "data" / "dicom").resolve()
MR_SERIES_DIR = DATA / "series" / "mr_brain_sag_mprage_siemens_skyra_192sl"
EMPTY_UID_SERIES = "series/ct_body_siemens_biograph_20sl_j2k"
SYNTH_TEMPLATE = DATA / "transfer_syntaxes" / "dcm_qa_ts" / "1.dcm"
BATCH_SIZE = 48  # instances per STOW request
DICOM_JSON = {"Accept": "application/dicom+json"}
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
OHIF_TAIL = "limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060%2C00080090%2C00100030"


# ----------------------------------------------------------------------------------- STOW-RS
def load_real_batches() -> list[dict]:
    """Every file under shared/data/dicom, one batch per directory chunk of ≤ BATCH_SIZE files."""
    by_dir: dict[Path, list[Path]] = defaultdict(list)
    for path in sorted(p for p in DATA.rglob("*") if p.is_file()):
        by_dir[path.parent].append(path)
    batches = []
    for folder, files in sorted(by_dir.items()):
        for i in range(0, len(files), BATCH_SIZE):
            chunk = files[i : i + BATCH_SIZE]
            uids = [_uids(pydicom.dcmread(p, stop_before_pixels=True)) for p in chunk]
            label = str(folder.relative_to(DATA))
            batches.append({"label": label, "files": [p.read_bytes() for p in chunk], "uids": uids})
    return batches


def remapped_batches(batches: list[dict], repetition: int) -> list[dict]:
    """The same real files with new Study/Series/SOP Instance UIDs (a deterministic mapping per repetition),
    so that a repeated STOW-RS measurement stores new instances rather than duplicates. Rewritten with pydicom
    in the file's own encoding; a file that cannot be rewritten (or has empty UIDs) is sent as it is."""
    out = []
    for batch in batches:
        files, uids = [], []
        for data, old in zip(batch["files"], batch["uids"], strict=True):
            try:
                if not all(old):
                    raise ValueError("empty UIDs")
                ds = pydicom.dcmread(io.BytesIO(data), force=True)
                new = [generate_uid(entropy_srcs=["okapi-bench-repeat", str(repetition), u]) for u in old]
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = new
                if "MediaStorageSOPInstanceUID" in getattr(ds, "file_meta", {}):
                    ds.file_meta.MediaStorageSOPInstanceUID = new[2]
                buf = io.BytesIO()
                ds.save_as(buf, enforce_file_format=False)
                files.append(buf.getvalue())
                uids.append(tuple(new))
            except Exception:  # noqa: BLE001 - sent unchanged: a duplicate for both servers
                files.append(data)
                uids.append(old)
        out.append({"label": batch["label"], "files": files, "uids": uids})
    return out


def _uids(ds: pydicom.Dataset) -> tuple[str, str, str]:
    return tuple(str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))


def stow(target: Target, batches: list[dict]) -> dict:
    """POST every batch to ``{root}/studies`` in order on one connection; instances/s end to end.

    End to end = first request sent → last answer received, plus the time until the last stored
    instance answers QIDO (zero for a server that stores before it answers).
    """
    sess = target.session()
    per_batch, durations = [], []
    t_start = time.perf_counter()
    for batch in batches:
        body, ctype = multipart_related(batch["files"])  # built outside the timed request
        t0 = time.perf_counter()
        resp = sess.post(f"{target.root}/studies", data=body, headers={"Content-Type": ctype, **DICOM_JSON})
        durations.append(time.perf_counter() - t0)
        stored, failed, reasons, studies = _parse_stow_answer(resp)
        per_batch.append(
            {"label": batch["label"], "n": len(batch["files"]), "status": resp.status_code,
             "content_type": resp.headers.get("Content-Type", ""), "seconds": round(durations[-1], 3),
             "stored": stored, "failed": failed, "failure_reasons": reasons, "study_uids": sorted(studies),
             "body_head": "" if stored else resp.text[:300]}
        )  # fmt: skip
    posted = time.perf_counter() - t_start
    lag = _wait_visible(sess, target, batches)
    elapsed = posted + (lag or 0.0)
    n = sum(b["n"] for b in per_batch)
    return {
        "instances": n,
        "stored": sum(b["stored"] for b in per_batch),
        "failed": sum(b["failed"] for b in per_batch),
        "statuses": dict(Counter(b["status"] for b in per_batch)),
        "requests": len(per_batch),
        "post_seconds": round(posted, 3),
        "visible_lag_s": lag,
        "seconds": round(elapsed, 3),
        "ips": round(n / elapsed, 2),
        "stored_ips": round(sum(b["stored"] for b in per_batch) / elapsed, 2),
        "request_latency": summarize_ms(durations),
        "batches": per_batch,
    }


def warm_up(target: Target, connections: int = 4) -> dict:
    """Before anything is timed: store one throwaway instance per connection and ask one QIDO query.

    Both servers get the same warm-up, so that first-request costs (a web worker's first database
    connection, imports, codec loading) are not counted as throughput: the figures are steady state.
    """
    ds = pydicom.dcmread(SYNTH_TEMPLATE)
    ds.PatientName, ds.PatientID = "WARMUP^BENCH", "WARMUP"
    statuses = []
    for i in range(connections):
        sess = target.session()  # a new connection: with several web workers, each may get one
        for key, kind in (("StudyInstanceUID", "study"), ("SeriesInstanceUID", "series"), ("SOPInstanceUID", "sop")):
            setattr(ds, key, generate_uid(entropy_srcs=["okapi-bench-warm-up", kind, str(i)]))  # same on each server
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        body, ctype = multipart_related([buf.getvalue()])
        resp = sess.post(f"{target.root}/studies", data=body, headers={"Content-Type": ctype, **DICOM_JSON})
        statuses.append(resp.status_code)
        sess.get(f"{target.root}/studies?PatientID=WARMUP", headers=DICOM_JSON)
        sess.close()
    return {"stow_statuses": statuses}


def _parse_stow_answer(resp: requests.Response) -> tuple[int, int, list[str], set[str]]:
    """Referenced and failed SOP counts of a STOW-RS answer, failure reasons, study UIDs stored."""
    body = json_or(resp, {})
    if isinstance(body, list):
        body = body[0] if body else {}
    if not isinstance(body, dict):
        return 0, 0, [f"unexpected answer, HTTP {resp.status_code}"], set()
    refs = (body.get("00081199") or {}).get("Value", [])
    fails = (body.get("00081198") or {}).get("Value", [])
    urls = [((item.get("00081190") or {}).get("Value") or [""])[0] for item in refs]
    studies = {m.group(1) for m in (re.search(r"/studies/([^/]+)", u) for u in urls) if m}
    reasons = sorted({str(((f.get("00081197") or {}).get("Value") or ["?"])[0]) for f in fails})
    return len(refs), len(fails), reasons, studies


def _wait_visible(sess: requests.Session, target: Target, batches: list[dict], timeout: float = 120):
    """Seconds until the last instance with complete UIDs answers QIDO (bounded poll); None if never."""
    study, series, sop = next(u for b in reversed(batches) for u in reversed(b["uids"]) if all(u))
    url = f"{target.root}/studies/{study}/series/{series}/instances?SOPInstanceUID={sop}"
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        resp = sess.get(url, headers=DICOM_JSON, timeout=30)
        if resp.status_code == 200 and json_or(resp, []):
            return round(time.perf_counter() - t0, 3)
        time.sleep(0.02)
    return None


def empty_uid_report(stow_real: dict[str, dict]) -> dict:
    """What each server did with the files whose Study/Series/SOP Instance UIDs are empty."""
    out = {}
    for name, res in stow_real.items():
        rows = [b for b in res.get("batches", []) if b["label"] == EMPTY_UID_SERIES]
        n, stored, failed = (sum(b[k] for b in rows) for k in ("n", "stored", "failed"))
        verdict = (
            "stored" if stored == n else "rejected" if failed else "silently dropped (nothing referenced)"
        )
        out[name] = {
            "verdict": verdict if stored in (0, n) else f"partly stored ({stored}/{n})",
            "status": [b["status"] for b in rows],
            "study_uids": sorted({u for b in rows for u in b["study_uids"]}),
            "failure_reasons": sorted({r for b in rows for r in b["failure_reasons"]}),
        }
    return out


# ---------------------------------------------------------------------------- synthetic studies
LAST = "SMITH JOHNSON GARCIA MÜLLER NGUYEN DUBOIS ROSSI KOWALSKI TANAKA SILVA OKONKWO JANSSEN".split()
FIRST = "ANNA JOHN MARIA LUCAS EMMA NOAH SOFIA LIAM MIA OMAR ZOE IVAN".split()
EXAMS = {
    "CT": ["CT CHEST W CONTRAST", "CT ABDOMEN PELVIS", "CT HEAD WO CONTRAST"],
    "MR": ["MR BRAIN WO CONTRAST", "MR KNEE LEFT", "MR SPINE LUMBAR"],
    "CR": ["XR CHEST 2 VIEWS"],
    "DX": ["XR HAND RIGHT"],
    "US": ["US ABDOMEN COMPLETE"],
    "PT": ["PET CT WHOLE BODY"],
}


def make_synthetic_studies(n_studies: int, seed: int = 7) -> tuple[list[dict], list[dict]]:
    """Copies of one real MR slice with new UIDs and varied patient/study attributes.

    ~n/2.5 patients, study dates 2015-2024; every 10th study gets a second series with another
    modality, so ModalitiesInStudy sees multi-modality studies. Returns (STOW batches, studies).
    """
    rng = random.Random(seed)
    ds = pydicom.dcmread(SYNTH_TEMPLATE)
    run = uuid.uuid4().hex
    names = [f"{rng.choice(LAST)}^{rng.choice(FIRST)}" for _ in range(max(1, int(n_studies / 2.5)))]
    patients = [
        (name, f"PID{rng.randrange(10**6):06d}", f"{1940 + i % 80}0{1 + i % 9}15")
        for i, name in enumerate(names)
    ]
    studies, files = [], []
    for i in range(n_studies):
        name, pid, birth = rng.choice(patients)
        modality = rng.choice(list(EXAMS))
        study = {
            "StudyInstanceUID": generate_uid(entropy_srcs=[run, "study", str(i)]),
            "PatientName": name,
            "PatientID": pid,
            "AccessionNumber": f"ACC{rng.randrange(10**7):07d}",
            "StudyDate": f"{date(2015, 1, 1) + timedelta(days=rng.randrange(3650)):%Y%m%d}",
            "StudyDescription": rng.choice(EXAMS[modality]),
            "modalities": [modality]
            + ([rng.choice([m for m in EXAMS if m != modality])] if i % 10 == 9 else []),
        }
        for s, mod in enumerate(study["modalities"]):
            for key in ("StudyInstanceUID", "PatientName", "PatientID", "AccessionNumber", "StudyDate"):
                setattr(ds, key, study[key])
            ds.StudyDescription, ds.PatientBirthDate = study["StudyDescription"], birth
            ds.Modality, ds.SeriesNumber, ds.StudyID = mod, s + 1, str(i)
            ds.ReferringPhysicianName = "REFERRER^ANNE"
            ds.SeriesInstanceUID = generate_uid(entropy_srcs=[run, "series", str(i), str(s)])
            sop = generate_uid(entropy_srcs=[run, "sop", str(i), str(s)])
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            files.append((buf.getvalue(), _uids(ds)))
        studies.append(study)
    chunks = [files[i : i + BATCH_SIZE] for i in range(0, len(files), BATCH_SIZE)]
    batches = [{"label": "synthetic", "files": [f for f, _ in c], "uids": [u for _, u in c]} for c in chunks]
    return batches, studies


# ------------------------------------------------------------------------------------ QIDO-RS
QUERY_KINDS = (
    "list_all list_page2 patient_name patient_id patient_id_exact accession description date_range "
    "modalities study_uid"
).split()


def _enc(value: str) -> str:
    """JavaScript's encodeURIComponent, which dicomweb-client applies to every query value."""
    return quote(value, safe="-_.!~*'()")


def ohif_study_query(kind: str, st: dict, rng: random.Random) -> str:
    """One OHIF 3.x study-list URL (relative to the root) of ``kind``, built from study ``st``."""
    if kind == "list_all":  # the worklist as it opens
        return f"studies?{OHIF_TAIL}"
    if kind == "list_page2":  # OHIF <= 3.12 asks for the next page with offset=100
        return f"studies?{OHIF_TAIL.replace('offset=0', 'offset=100')}"
    if kind == "patient_name":  # what a user types: a lowercase fragment of the family name
        last = st["PatientName"].split("^")[0].lower()
        start = rng.randrange(max(1, len(last) - 2))
        return f"studies?PatientName={_enc('*' + last[start : start + 3] + '*')}&{OHIF_TAIL}"
    if kind == "patient_id":  # OHIF wraps the typed value in wildcards, sends the tag, not the keyword
        return f"studies?00100020={_enc('*' + st['PatientID'][-4:] + '*')}&{OHIF_TAIL}"
    if kind == "patient_id_exact":  # prior studies of the opened patient
        return f"studies?00100020={_enc(st['PatientID'])}&{OHIF_TAIL}"
    if kind == "accession":
        return f"studies?AccessionNumber={_enc('*' + st['AccessionNumber'][-5:] + '*')}&{OHIF_TAIL}"
    if kind == "description":
        word = rng.choice(st["StudyDescription"].split()).lower()
        return f"studies?StudyDescription={_enc('*' + word + '*')}&{OHIF_TAIL}"
    if kind == "date_range":
        start = date(2015, 1, 1) + timedelta(days=rng.randrange(3600))
        end = start + timedelta(days=rng.choice([7, 30, 365]))
        return f"studies?{OHIF_TAIL}&StudyDate={start:%Y%m%d}-{end:%Y%m%d}"
    if kind == "modalities":
        mods = rng.choice([["CT"], ["MR"], ["CT", "MR"], ["US"], ["PT", "CT"], ["CR", "DX"]])
        return f"studies?ModalitiesInStudy={_enc(','.join(mods))}&{OHIF_TAIL}"
    if kind == "study_uid":  # opening the viewer validates the study first
        return f"studies?{OHIF_TAIL}&StudyInstanceUID={st['StudyInstanceUID']}"
    raise ValueError(kind)


def ohif_study_queries(studies: list[dict], per_kind: int, seed: int = 11) -> list[tuple[str, str]]:
    """``per_kind`` (kind, URL) pairs of every kind, shuffled; the same list is sent to each server."""
    rng = random.Random(seed)
    queries = [
        (k, ohif_study_query(k, rng.choice(studies), rng)) for k in QUERY_KINDS for _ in range(per_kind)
    ]
    rng.shuffle(queries)
    return queries


def qido(target: Target, queries: list[tuple[str, str]]) -> dict:
    """Time every query once, in order, on one connection after 30 warm-up requests; keep match counts."""
    sess = target.session()
    for _, url in queries[:30]:
        sess.get(f"{target.root}/{url}", headers=DICOM_JSON, timeout=60)
    by_kind: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int | str] = {}
    statuses, ctypes = Counter(), Counter()
    for kind, url in queries:
        t0 = time.perf_counter()
        resp = sess.get(f"{target.root}/{url}", headers=DICOM_JSON, timeout=60)
        by_kind[kind].append(time.perf_counter() - t0)
        statuses[resp.status_code] += 1
        ctypes[resp.headers.get("Content-Type", "")] += 1
        if url not in counts:
            body = json_or(resp)
            ok = resp.status_code == 204 or (resp.status_code == 200 and isinstance(body, list))
            counts[url] = len(body or []) if ok else f"HTTP {resp.status_code}: {resp.text[:120]}"
    return {
        "overall": summarize_ms([t for ts in by_kind.values() for t in ts]),
        "by_kind": {k: summarize_ms(v) for k, v in sorted(by_kind.items())},
        "statuses": dict(statuses),
        "content_types": dict(ctypes),
        "counts": counts,
        "matches": qido_matches(target, queries),
    }


def _all_matches_url(url: str) -> str:
    """The same filters with every match answered: limit raised, no offset, no includefield."""
    return re.sub(r"limit=101&offset=\d+&fuzzymatching=false&includefield=[^&]*", "limit=5000&offset=0", url)


def qido_matches(target: Target, queries: list[tuple[str, str]]) -> dict[str, list[str] | str]:
    """Untimed: StudyInstanceUIDs of every match of every distinct query's filters (or the error)."""
    sess = target.session()
    out: dict[str, list[str] | str] = {}
    for url in sorted({_all_matches_url(u) for _, u in queries}):
        resp = sess.get(f"{target.root}/{url}", headers=DICOM_JSON, timeout=120)
        body = json_or(resp)
        if resp.status_code == 204 or (resp.status_code == 200 and isinstance(body, list)):
            out[url] = sorted(dig(item, "0020000D", "Value", default=["?"])[0] for item in body or [])
        else:
            out[url] = f"HTTP {resp.status_code}: {resp.text[:120]}"
    return out


def compare_matches(res: dict, names: list[str], explained_uids: set[str]) -> dict:
    """Queries whose matches differ between the servers, and limit/offset answers that disagree with them.

    A difference made only of ``explained_uids`` (studies that one server stored and the other did
    not, e.g. the empty-UID series) is counted apart as explained.
    """
    if len(names) < 2 or any("matches" not in res[n].get("qido", {}) for n in names):
        return {"compared": 0, "mismatches": float("nan"), "examples": []}
    (na, a), (nb, b) = ((n, res[n]["qido"]["matches"]) for n in names[:2])
    diffs, explained = [], 0
    for url, uids in a.items():
        other = b.get(url)
        if uids == other:
            continue
        if isinstance(uids, list) and isinstance(other, list):
            only_a, only_b = sorted(set(uids) - set(other)), sorted(set(other) - set(uids))
            if set(only_a + only_b) <= explained_uids:
                explained += 1
                continue
            row = {"url": url, na: len(uids), nb: len(other)}
            diffs.append({**row, f"only_{na}": only_a[:3], f"only_{nb}": only_b[:3]})
        else:
            diffs.append({"url": url, na: uids if isinstance(uids, str) else len(uids), nb: other})
    limit_errors = []  # a limited answer must hold min(101, matches - offset) studies
    for name, matches in ((na, a), (nb, b)):
        for url, count in res[name]["qido"]["counts"].items():
            full = matches.get(_all_matches_url(url))
            offset = int(re.search(r"offset=(\d+)", url).group(1))
            if isinstance(full, list) and count != min(101, max(0, len(full) - offset)):
                limit_errors.append({"server": name, "url": url, "answered": count, "matches": len(full)})
    return {"compared": len(a), "mismatches": len(diffs), "explained_by_unstored_studies": explained,
            "examples": diffs[:30], "limit_offset_errors": limit_errors[:30]}  # fmt: skip


# ------------------------------------------------------------------------- series metadata
def mr_series() -> tuple[str, str, list[str], dict[str, bytes]]:
    """Study UID, series UID, SOP UIDs in InstanceNumber order and PixelData by SOP UID of the MR."""
    rows, pixels = [], {}
    for path in MR_SERIES_DIR.iterdir():
        ds = pydicom.dcmread(path)
        rows.append((int(ds.InstanceNumber), ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID))
        pixels[ds.SOPInstanceUID] = ds.PixelData
    rows.sort()
    return rows[0][2], rows[0][3], [r[1] for r in rows], pixels


def series_metadata(target: Target, study: str, series: str, n: int) -> dict:
    """Latency of ``GET .../series/{SE}/metadata`` (5 warm-up requests, then ``n`` timed)."""
    sess = target.session()
    url = f"{target.root}/studies/{study}/series/{series}/metadata"
    for _ in range(5):
        sess.get(url, headers=DICOM_JSON, timeout=120)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        resp = sess.get(url, headers=DICOM_JSON, timeout=120)
        times.append(time.perf_counter() - t0)
    body = json_or(resp, []) if resp.status_code == 200 else []
    body = body if isinstance(body, list) else []
    return {
        **summarize_ms(times),
        "status": resp.status_code,
        "content_type": resp.headers.get("Content-Type"),
        "content_encoding": resp.headers.get("Content-Encoding"),
        "bytes": len(resp.content),
        "instances": len(body),
        "tags": sorted(set().union(*(set(i) for i in body))) if body else [],
        "pixel_data": body[0].get("7FE00010") if body else None,
    }


def compare_metadata(results: dict[str, dict]) -> dict:
    """Tags that only one server returns in the series metadata, and how each gives PixelData."""
    if len(results) < 2 or any("tags" not in r for r in results.values()):
        return {}
    (na, a), (nb, b) = list(results.items())[:2]
    return {
        f"only_{na}": sorted(set(a["tags"]) - set(b["tags"])),
        f"only_{nb}": sorted(set(b["tags"]) - set(a["tags"])),
        "instances": {na: a["instances"], nb: b["instances"]},
        "pixel_data": {na: a["pixel_data"], nb: b["pixel_data"]},
    }


# ---------------------------------------------------------------------------------- frames
def frame_urls(target: Target, study: str, series: str, sops: list[str]) -> list[str]:
    return [f"{target.root}/studies/{study}/series/{series}/instances/{sop}/frames/1" for sop in sops]


def frames(target: Target, urls: list[str], passes: int, connections: int) -> dict:
    """Frames/s over ``passes`` passes of the series with ``connections`` client processes.

    One warm-up pass first (server caches, page cache). Frames answered with an error do not count.
    """
    headers = {**target.headers, "Accept": FRAME_ACCEPT}
    get_all(urls, headers, 1)
    work = [u for _ in range(passes) for u in urls]
    out = get_all(work, headers, connections)
    return {
        "connections": connections,
        "client": f"{connections} process(es), one requests.Session each",
        "frames": len(work),
        "errors": out["errors"],
        "seconds": round(out["seconds"], 3),
        "fps": round((len(work) - out["errors"]) / out["seconds"], 1),
        "MB_per_s": round(out["bytes"] / out["seconds"] / 1e6, 1),
        "client_cpu_s": out["client_cpu_s"],
        "latency": summarize_ms(out["latencies"]),
    }


def verify_frames(targets: list[Target], study: str, series: str, sops: list[str], pixels: dict) -> dict:
    """Frame bytes of 6 instances: identical between servers, and equal to the file's PixelData?"""
    checks = []
    for sop in sops[:: max(1, len(sops) // 6)][:6]:
        row: dict = {"sop": sop}
        payloads = []
        for t in targets:
            url = frame_urls(t, study, series, [sop])[0]
            resp = t.session().get(url, headers={"Accept": FRAME_ACCEPT}, timeout=60)
            payload, part_type = first_part(resp) if resp.status_code == 200 else (b"", "")
            payloads.append(payload)
            row[t.name] = {"status": resp.status_code, "content_type": resp.headers.get("Content-Type"),
                           "part_type": part_type, "bytes": len(payload), "equals_file": payload == pixels[sop]}  # fmt: skip
        row["identical"] = len(set(payloads)) == 1 and bool(payloads[0])
        checks.append(row)
    return {"all_identical": all(c["identical"] for c in checks), "checks": checks}


# ------------------------------------------------------------------------------- reporting
HEADLINE = [  # (metric, ratio name, which way is better, path in each server's results)
    ("stow_ips", "stow_ratio", "higher", ("stow_real_median", "ips")),
    ("stow_synth_ips", "stow_synth_ratio", "higher", ("stow_synth", "ips")),
    ("qido_p50_ms", "qido_p50_ratio", "lower", ("qido", "overall", "p50_ms")),
    ("qido_p95_ms", "qido_p95_ratio", "lower", ("qido", "overall", "p95_ms")),
    ("series_meta_p50_ms", "series_meta_p50_ratio", "lower", ("series_metadata", "p50_ms")),
    ("series_meta_p95_ms", "series_meta_p95_ratio", "lower", ("series_metadata", "p95_ms")),
    ("frames1_fps", "frames1_ratio", "higher", ("frames1", "fps")),
    ("frames6_fps", "frames6_ratio", "higher", ("frames6", "fps")),
]


def print_report(rows: list[dict], res: dict) -> None:
    """Side-by-side table, per-kind QIDO latencies and the correctness checks."""
    print_comparison(rows)
    print(f"\n{'QIDO kind (ms)':<20}{'Orthanc p50/p95':>20}{'Okapi p50/p95':>20}")
    for kind in QUERY_KINDS:
        cells = [dig(res, name, "qido", "by_kind", kind, default={}) for name in ("orthanc", "okapi")]
        cells = [f"{fmt(c.get('p50_ms'), 1)}/{fmt(c.get('p95_ms'), 1)}" for c in cells]
        print(f"{kind:<20}{cells[0]:>20}{cells[1]:>20}")
    print(
        "\nCPU seconds during each measurement: server + PostgreSQL/Redis / client / other processes / steal"
    )
    for name in ("orthanc", "okapi"):
        cells = []
        for key in ("stow_real", "stow_synth", "qido", "series_metadata", "frames1", "frames6"):
            c = dig(res, name, key, "cpu", default={})
            busy = c.get("server_cpu_s", 0) + c.get("services_cpu_s", 0)
            cpu = [busy] + [c.get(f"{k}_cpu_s", 0) for k in ("client", "other", "steal")]
            cells.append(f"{key} " + "/".join(f"{x:.1f}" for x in cpu))
        print(f"  {name:<8}", ", ".join(cells))
    cmp_ = res.get("qido_count_comparison", {})
    explained = cmp_.get("explained_by_unstored_studies")
    print(f"\nQIDO: matches differ for {cmp_.get('mismatches')} of {cmp_.get('compared')} distinct filters")
    print(f"      (not counted: {explained} differences due only to the empty-UID series)")
    for example in cmp_.get("examples", [])[:6] + cmp_.get("limit_offset_errors", [])[:4]:
        print("   ", example)
    for name, rep in res.get("empty_uid_series", {}).items():
        print(f"empty-UID series, {name}: {rep['verdict']}, HTTP {rep['status']}, study {rep['study_uids']}")
    meta = {k: v for k, v in res.get("metadata_comparison", {}).items() if k != "pixel_data"}
    print("series metadata differences:", meta)
    print("frames identical on both servers and to the files:", dig(res, "frame_check", "all_identical"))


# ------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the full results as JSON to this file")
    ap.add_argument("--studies", type=int, default=1000, help="synthetic studies for QIDO (default 1000)")
    ap.add_argument("--okapi-workers", type=int, default=2, help="okapi serve --workers (default 2)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (storage, logs)")
    ap.add_argument("--servers", default="orthanc,okapi", help="comma list of orthanc, okapi (default both)")
    ap.add_argument("--qido-requests", type=int, default=200, help="timed requests per QIDO query kind (200)")
    ap.add_argument("--meta-requests", type=int, default=50, help="timed series /metadata requests (50)")
    ap.add_argument("--frame-passes", type=int, default=3, help="passes over the 192 frames per run (3)")
    ap.add_argument("--connections", type=int, default=6, help="concurrent connections for frames6 (6)")
    ap.add_argument("--stow-repeats", type=int, default=3,
                    help="STOW-RS passes over the real data, new UIDs after the first; the median is reported (3)")
    return ap.parse_args(argv)


def measure(target: Target, res: dict, key: str, fn, *args) -> None:
    """Run one measurement on ``target`` into ``res[target.name][key]``, with the CPU it cost."""
    print(f"[{target.name}] {key}", flush=True)
    with CpuMeter(target.proc.pid if target.proc else None) as meter:
        out = guarded(key, fn, target, *args)
    out["cpu"] = meter.result
    wall = max(meter.result["wall_s"], 1e-9)
    other, steal = meter.result["other_cpu_s"] / wall, meter.result["steal_cpu_s"] / wall
    if other > 0.2 or steal > 0.1:
        top = meter.result["other_top"]
        print(f"  warning: during {key} other processes used {other:.0%} of a CPU ({top}) and the hypervisor")
        print(f"  took {steal:.0%} of a CPU away (steal): these figures are noisy")
    res.setdefault(target.name, {})[key] = out


def run(args: argparse.Namespace, workdir: Path) -> dict:
    """Start the servers, run every measurement on each (same data, same order), stop them."""
    targets: list[Target] = []
    res: dict = {"config": vars(args), "servers": {}}
    try:
        for name in [n.strip() for n in args.servers.split(",") if n.strip()]:
            sub = workdir / name
            sub.mkdir()
            t = start_orthanc(sub) if name == "orthanc" else start_okapi(sub, args.okapi_workers)
            targets.append(t)
            res["servers"][name] = {"version": t.version, "root": t.root, **t.info}
            print(f"{name}: {t.version} at {t.root}", flush=True)
            res["servers"][name]["warm_up"] = warm_up(t)
        real = load_real_batches()
        synth, studies = make_synthetic_studies(args.studies)
        # Metric by metric, each server in turn: a slow spell of the machine hits both sides.
        for key, batches in (("stow_real", real), ("stow_synth", synth)):
            for t in targets:
                measure(t, res, key, stow, batches)
                res[t.name][key]["settle_s"] = wait_until_quiet()  # background ingest work, if any
        # STOW-RS of the real data again with new UIDs (one server's speed varied by 40% from run to run):
        # the headline is the median of the repetitions, the servers taking turns at going first.
        for r in range(1, args.stow_repeats):
            again = remapped_batches(real, r)
            for t in targets if r % 2 == 0 else targets[::-1]:
                measure(t, res, f"stow_real_{r}", stow, again)
                res[t.name][f"stow_real_{r}"].pop("batches", None)  # keep the JSON small
                wait_until_quiet()
        for t in targets:
            runs = [res[t.name]["stow_real"]["ips"]] + [res[t.name][f"stow_real_{r}"]["ips"]
                                                        for r in range(1, args.stow_repeats)]  # fmt: skip
            res[t.name]["stow_real_median"] = {"ips": statistics.median(runs), "runs_ips": runs}
        del real, synth
        queries = ohif_study_queries(studies, args.qido_requests)
        study, series, sops, pixels = mr_series()
        urls = {t.name: frame_urls(t, study, series, sops) for t in targets}
        for t in targets:
            measure(t, res, "qido", qido, queries)
        for t in targets:
            measure(t, res, "series_metadata", series_metadata, study, series, args.meta_requests)
        for key, conns in (("frames1", 1), ("frames6", args.connections)):
            for t in targets:
                measure(t, res, key, frames, urls[t.name], args.frame_passes, conns)
        res["empty_uid_series"] = empty_uid_report({t.name: res[t.name]["stow_real"] for t in targets})
        unstored = {u for rep in res["empty_uid_series"].values() for u in rep["study_uids"]}
        res["qido_count_comparison"] = compare_matches(res, [t.name for t in targets], unstored)
        for t in targets:  # keep the JSON small: match counts, not every UID
            m = dig(res, t.name, "qido", "matches", default={})
            m.update({u: len(v) if isinstance(v, list) else v for u, v in m.items()})
        res["metadata_comparison"] = compare_metadata(
            {t.name: res[t.name]["series_metadata"] for t in targets}
        )
        res["frame_check"] = guarded("frame check", verify_frames, targets, study, series, sops, pixels)
    finally:
        for t in targets:
            t.stop()
    return res


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="okapi-bench-dicomweb-"))
    try:
        res = run(args, workdir)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    rows = compare(res, HEADLINE, base="orthanc", subject="okapi")
    print_report(rows, res)
    if args.out:
        write_json(args.out, res)
    metrics = result_metrics(rows)
    metrics["qido_count_mismatches"] = res["qido_count_comparison"]["mismatches"]
    metrics["qido_limit_offset_errors"] = len(res["qido_count_comparison"].get("limit_offset_errors", []))
    metrics["frames_identical"] = int(bool(res["frame_check"].get("all_identical")))
    print(result_line("dicomweb", metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
