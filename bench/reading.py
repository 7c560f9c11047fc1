"""Reading benchmark: simulated readers claim ("next case") and submit reads over HTTP against Okapi.

Run from the repository root (see bench/README.md)::

    .venv/bin/python bench/reading.py [--levels 1,10,50] [--cycles 20] [--k 3] [--read-s 2] [--out FILE]

At each level, N reader processes (spawned, one ``requests.Session`` and bearer token each) are released on a
fresh project and each does ``--cycles`` rounds of ``POST /api/v1/projects/{id}/next-case``, reading the case,
then ``POST /api/v1/cases/{case}/read`` (submit). Two passes per level:

- ``paced`` (the headline): a simulated reader spends a reading time on each case, uniform in 0.5x to 1.5x
  ``--read-s`` (2 s: one case every 2 s per reader, 15 to 100 times faster than radiologists read), and the
  readers start at random moments within the first reading time, as people do, not on one clock tick;
- ``stress`` (``--no-stress`` to skip): no reading time at all, every reader fires its next request the moment
  the last one answers, so N requests are always in flight: the server's saturation, not a reading room.

Prints p50/p99 latency of both calls per level and pass, then checks in the database that no read was lost
(answered 201 but missing) or duplicated (more rows than 201 answers, a case read more than k times, a reader
twice on one case). Ends with one ``RESULT reading ...`` line: the paced figures as ``next_p99_ms_50`` and so
on, the stress figures as ``stress_next_p99_ms_50``. The target from the issue is absolute: p99 under 100 ms at
50 readers on PostgreSQL; it is checked on the paced pass, and the stress pass is reported beside it.

``--profile timing`` or ``--profile cprofile`` then runs the levels again on an instrumented server (the same
Okapi application, wrapped by this script: per-request wall and CPU time, SQL time and count, the slowest
statements; with ``cprofile`` also the hottest functions) to show where the time goes. Server code is unchanged.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from multiprocessing import get_context
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    LOOPBACK,
    REPO,
    CpuMeter,
    fmt,
    free_port,
    multipart_related,
    okapi_version,
    percentile,
    result_line,
    start_okapi,
    start_process,
    stop_process,
    wait_http,
    wait_until_quiet,
    write_json,
)

DATA = (REPO.parent / "shared" / "data" / "dicom").resolve()
TEMPLATE = DATA / "transfer_syntaxes" / "dcm_qa_ts" / "1.dcm"  # one real 384x384 MR slice
DB_NAME = "okapi_bench_reading"
REDIS_DB = 15
TARGET_P99_MS = 100.0
STOW_BATCH = 48
SCHEMA = {
    "questions": [
        {
            "key": "finding",
            "label": "Finding",
            "type": "single_choice",
            "options": ["normal", "abnormal", "unsure"],
        },
        {"key": "likelihood", "label": "Likelihood of disease", "type": "ordinal", "min": 1, "max": 5},
    ],
    "confidence": {"min": 1, "max": 5},
}


# ------------------------------------------------------------------------------------------- set-up
def setup_readers(env: dict, n: int) -> dict[str, str]:
    """Create ``n`` radiologists (no password) with one bearer token each, in one Django process."""
    code = (
        "import json\n"
        "from core.auth import token_create, user_create\n"
        "from core.models import User\n"
        "out = {}\n"
        f"for i in range({n}):\n"
        "    name = f'reader{i:03d}'\n"
        "    user = User.objects.filter(username=name).first() or user_create(\n"
        "        username=name, password=None, role='radiologist')\n"
        "    out[name] = token_create(user=user, name='bench')[1]\n"
        "print('TOKENS ' + json.dumps(out))\n"
    )
    res = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "manage.py", "shell", "-c", code], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    line = next((x for x in res.stdout.splitlines() if x.startswith("TOKENS ")), None)
    if res.returncode != 0 or line is None:
        raise RuntimeError(
            f"creating readers failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
        )
    return json.loads(line[len("TOKENS ") :])


def stow_studies(base: str, headers: dict, n: int) -> list[str]:
    """Store ``n`` distinct studies: copies of one real file with new Study/Series/SOP UIDs (STOW-RS)."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(TEMPLATE)
    sess = requests.Session()
    sess.headers.update(headers)
    uids: list[str] = []
    for start in range(0, n, STOW_BATCH):
        parts = []
        for i in range(start, min(n, start + STOW_BATCH)):
            ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.PatientID, ds.PatientName, ds.AccessionNumber = (
                f"READ{i:05d}",
                f"READER^BENCH{i}",
                f"RB{i:06d}",
            )
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            parts.append(buf.getvalue())
            uids.append(str(ds.StudyInstanceUID))
        body, ctype = multipart_related(parts)
        resp = sess.post(f"{base}/dicomweb/studies", data=body,
                         headers={"Content-Type": ctype, "Accept": "application/dicom+json"}, timeout=300)  # fmt: skip
        if resp.status_code != 200:
            raise RuntimeError(f"STOW-RS answered {resp.status_code}: {resp.text[:500]}")
    return uids


def create_project(
    base: str, headers: dict, *, name: str, k: int, readers: list[str], study_uids: list[str]
) -> int:
    """A fresh campaign through the API as the admin (its lead): k reads per case, readers, cases in order."""
    sess = requests.Session()
    sess.headers.update(headers)
    resp = sess.post(f"{base}/api/v1/projects", json={"name": name, "reads_per_case": k, "agreement_threshold": 0.6,
                                                      "schema": SCHEMA}, timeout=60)  # fmt: skip
    if resp.status_code != 201:
        raise RuntimeError(f"project create: {resp.status_code} {resp.text[:500]}")
    pid = resp.json()["id"]
    for username in readers:
        r = sess.post(f"{base}/api/v1/projects/{pid}/members", json={"username": username, "role": "radiologist"},
                      timeout=60)  # fmt: skip
        if r.status_code != 201:
            raise RuntimeError(f"member add {username}: {r.status_code} {r.text[:300]}")
    r = sess.post(f"{base}/api/v1/projects/{pid}/cases", json={"study_uids": study_uids}, timeout=300)
    if r.status_code != 201 or r.json().get("added") != len(study_uids):
        raise RuntimeError(f"cases add: {r.status_code} {r.text[:300]}")
    return pid


def cases_needed(readers: int, cycles: int, k: int) -> int:
    """Enough cases for every reader's cycles (a reader reads a case once, so at least ``cycles``), plus one per
    reader so that the pool never runs dry at the end (the last reads would then queue on the last cases)."""
    return max(cycles, math.ceil(readers * cycles / k)) + readers


# ------------------------------------------------------------------------------------------ readers
def reader_process(base, token, username, pid, cycles, read_s, seed, barrier, results) -> None:
    """One simulated reader: warm up its connection, wait for the others, then ``cycles`` claim + read + submit.
    ``read_s``: mean reading time per case (uniform in 0.5x to 1.5x; the first claim comes after a random
    part of one reading time); 0: none, the next request leaves as soon as the last one is answered."""
    out = {"reader": username, "next": [], "next_200": [], "submit": [], "statuses": Counter(), "submits": [],
           "errors": [], "empty": 0}  # fmt: skip
    try:
        rng = random.Random(seed)
        sess = requests.Session()
        sess.headers["Authorization"] = f"Bearer {token}"
        sess.get(f"{base}/api/v1/projects/{pid}", timeout=120)  # connection and auth cache warm, not timed
        barrier.wait(timeout=300)
        if read_s:
            time.sleep(rng.uniform(0, read_s))
        done = attempts = 0
        while done < cycles and attempts < cycles * 5:
            attempts += 1
            t0 = time.perf_counter()
            resp = sess.post(f"{base}/api/v1/projects/{pid}/next-case", timeout=120)
            dt = time.perf_counter() - t0
            out["next"].append(dt)
            out["statuses"][f"next_{resp.status_code}"] += 1
            if resp.status_code == 204:  # nothing for me right now (or the SKIP LOCKED bug): ask again soon
                out["empty"] += 1
                time.sleep(0.05)
                continue
            if resp.status_code != 200:
                out["errors"].append(f"next-case {resp.status_code}: {resp.text[:200]}")
                continue
            out["next_200"].append(dt)
            case_id = resp.json()["case"]["id"]
            if read_s:
                time.sleep(rng.uniform(0.5, 1.5) * read_s)
            body = {"answers": {"finding": rng.choice(["normal", "abnormal", "unsure"]),
                                "likelihood": rng.randint(1, 5)},
                    "confidence": rng.randint(1, 5), "submit": True, "base_version": 0}  # fmt: skip
            t0 = time.perf_counter()
            resp = sess.post(f"{base}/api/v1/cases/{case_id}/read", json=body, timeout=120)
            out["submit"].append(time.perf_counter() - t0)
            out["statuses"][f"read_{resp.status_code}"] += 1
            if resp.status_code == 201:
                out["submits"].append((case_id, resp.json()["id"], resp.json()["version"]))
                done += 1
            else:
                out["errors"].append(f"read {resp.status_code}: {resp.text[:200]}")
    except Exception as exc:  # noqa: BLE001 - reported in the results
        out["errors"].append(f"{type(exc).__name__}: {exc}")
    out["statuses"] = dict(out["statuses"])
    results.put(out)


def run_readers(base: str, tokens: dict[str, str], pid: int, n: int, cycles: int, read_s: float) -> dict:
    """Start ``n`` spawned reader processes, release them together, collect what each did."""
    ctx = get_context("spawn")
    barrier, results = ctx.Barrier(n + 1), ctx.Queue()
    names = sorted(tokens)[:n]
    procs = [ctx.Process(target=reader_process, args=(base, tokens[u], u, pid, cycles, read_s, i, barrier, results),
                         daemon=True) for i, u in enumerate(names)]  # fmt: skip
    for p in procs:
        p.start()
    barrier.wait(timeout=300)  # every reader is up and connected
    t0 = time.perf_counter()
    outs = [results.get(timeout=900) for _ in procs]
    seconds = time.perf_counter() - t0
    for p in procs:
        p.join(30)
    return {"seconds": seconds, "readers": outs}


# ------------------------------------------------------------------------------------- verification
def verify(dsn: str, pid: int, k: int, outs: list[dict]) -> dict:
    """Lost and duplicated reads: what the readers were told (201) against what the database holds."""
    import psycopg

    answered = [
        (case_id, o["reader"], read_id, version) for o in outs for case_id, read_id, version in o["submits"]
    ]
    told = Counter((case_id, reader) for case_id, reader, _, _ in answered)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT r.case_id, u.username, r.state, r.version, r.id FROM annotation_read r "
            "JOIN annotation_case c ON c.id = r.case_id JOIN core_user u ON u.id = r.reader_id "
            "WHERE c.project_id = %s", [pid]).fetchall()  # fmt: skip
        versions = conn.execute(
            "SELECT count(*) FROM annotation_readversion v JOIN annotation_read r ON r.id = v.read_id "
            "JOIN annotation_case c ON c.id = r.case_id WHERE c.project_id = %s", [pid]).fetchone()[0]  # fmt: skip
        slots = conn.execute(
            "SELECT a.case_id, count(*) FROM annotation_assignment a JOIN annotation_case c ON c.id = a.case_id "
            "WHERE c.project_id = %s AND a.state = 'submitted' GROUP BY a.case_id", [pid]).fetchall()  # fmt: skip
        states = dict(conn.execute("SELECT state, count(*) FROM annotation_case WHERE project_id = %s "
                                   "GROUP BY state", [pid]).fetchall())  # fmt: skip
    in_db = Counter((case_id, reader) for case_id, reader, state, _, _ in rows if state == "submitted")
    per_case = Counter(case_id for case_id, _, state, _, _ in rows if state == "submitted")
    lost = sum(1 for key in told if key not in in_db)
    extra_rows = sum(1 for key in in_db if key not in told)  # submitted in the database, never answered 201
    told_twice = sum(n - 1 for n in told.values())  # one reader answered 201 twice for one case
    over_k = sum(max(0, n - k) for n in per_case.values()) + sum(max(0, n - k) for _, n in slots)
    pair_dups = sum(n - 1 for n in in_db.values())
    extra_versions = max(0, versions - len(answered))
    return {
        "answered_201": len(answered),
        "submitted_in_db": sum(in_db.values()),
        "read_versions_in_db": versions,
        "lost": lost + max(0, len(answered) - versions),
        "duplicated": extra_rows + told_twice + over_k + pair_dups + extra_versions,
        "detail": {"answered_but_missing": lost, "in_db_not_answered": extra_rows, "answered_twice": told_twice,
                   "reads_over_k": over_k, "reader_twice_on_a_case": pair_dups,
                   "versions_minus_answers": versions - len(answered)},
        "max_reads_per_case": max(per_case.values(), default=0),
        "case_states": states,
    }  # fmt: skip


def summarize(level: int, run: dict) -> dict:
    outs = run["readers"]
    lat = {key: [t * 1000 for o in outs for t in o[key]] for key in ("next", "next_200", "submit")}
    statuses = Counter()
    for o in outs:
        statuses.update(o["statuses"])
    stats = {}
    for key, ms in lat.items():
        stats[key] = {"n": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
                      "mean_ms": sum(ms) / len(ms) if ms else math.nan, "max_ms": max(ms, default=math.nan)}  # fmt: skip
    cycles = sum(len(o["submits"]) for o in outs)
    return {
        "readers": level,
        "seconds": round(run["seconds"], 3),
        "cycles_done": cycles,
        "cycles_per_s": round(cycles / run["seconds"], 2) if run["seconds"] else math.nan,
        "latency": stats,
        "statuses": dict(statuses),
        "empty_answers": sum(o["empty"] for o in outs),
        "errors": [e for o in outs for e in o["errors"]][:20],
        "error_count": sum(len(o["errors"]) for o in outs),
    }


# ------------------------------------------------------------------------- instrumented server (profile)
def serve_instrumented(port: int, out_path: str, mode: str) -> None:
    """Okapi's own ASGI application with its WSGI handler wrapped: per request, wall and thread-CPU time, SQL
    time and count (and time in SELECT ... FOR UPDATE), time sending websocket events, the statements that cost
    most; with ``cprofile``, a cProfile (thread CPU time) of each request merged per endpoint. One process; results written to ``out_path`` on exit."""
    import cProfile
    import pstats

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import uvicorn
    from a2wsgi import WSGIMiddleware
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.db import connection

    import config.asgi as okapi_asgi
    import core.events
    from config.limits import BodySizeLimitMiddleware

    lock = threading.Lock()
    requests_seen: dict[str, list] = defaultdict(list)
    statements: dict[str, list] = defaultdict(lambda: [0, 0.0])
    profiles: dict[str, pstats.Stats] = {}
    current = threading.local()  # the figures of the request this thread is serving

    def kind_of(path: str) -> str:
        if path.endswith("/next-case"):
            return "next_case"
        if path.startswith("/api/v1/cases/") and path.endswith("/read"):
            return "submit_read"
        return "other"

    def timed(execute, statement, params, many, context):
        t = time.perf_counter()
        try:
            return execute(statement, params, many, context)
        finally:
            d = time.perf_counter() - t
            sql = current.sql
            sql["n"] += 1
            sql["s"] += d
            if "FOR UPDATE" in statement:
                sql["lock_s"] += d
            sql["stmts"].append((" ".join(statement.split())[:160], d))

    send_event = core.events.send_event

    def timed_send_event(group, event):  # websocket events, sent by on-commit hooks inside the request
        t = time.perf_counter()
        try:
            return send_event(group, event)
        finally:
            if getattr(current, "sql", None) is not None:
                current.sql["events"] += 1
                current.sql["event_s"] += time.perf_counter() - t

    core.events.send_event = timed_send_event
    django_app = get_wsgi_application()

    def app(environ, start_response):
        kind = kind_of(environ.get("PATH_INFO", ""))
        current.sql = sql = {"n": 0, "s": 0.0, "lock_s": 0.0, "stmts": [], "events": 0, "event_s": 0.0}
        # CPU time of this thread, not wall time: waits (locks, database, events) are in the timing figures.
        prof = cProfile.Profile(time.thread_time) if mode == "cprofile" and kind != "other" else None
        t0, c0 = time.perf_counter(), time.thread_time()
        with connection.execute_wrapper(timed):
            if prof:
                prof.enable()
            try:
                result = django_app(environ, start_response)
                body = list(result)  # the whole answer is made here (small JSON), inside the measurement
                if hasattr(result, "close"):
                    result.close()
            finally:
                if prof:
                    prof.disable()
                current.sql = None
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        with lock:
            requests_seen[kind].append(
                (wall, cpu, sql["n"], sql["s"], sql["lock_s"], sql["event_s"], sql["events"])
            )
            for stmt, d in sql["stmts"]:
                entry = statements[f"{kind}: {stmt}"]
                entry[0] += 1
                entry[1] += d
            if prof:
                if kind in profiles:
                    profiles[kind].add(prof)
                else:
                    profiles[kind] = pstats.Stats(prof)
        return body

    okapi_asgi.application.application_mapping["http"] = BodySizeLimitMiddleware(
        WSGIMiddleware(app, workers=settings.OKAPI_WEB_THREADS)
    )
    uvicorn.run(okapi_asgi.application, host=LOOPBACK, port=port, workers=1, lifespan="off", log_level="warning",
                access_log=False)  # fmt: skip

    summary: dict = {
        "mode": mode,
        "threads": settings.OKAPI_WEB_THREADS,
        "endpoints": {},
        "top_statements": [],
    }
    for kind, rows in requests_seen.items():
        cols = list(zip(*rows, strict=True))
        names = ("wall", "cpu", "_queries", "sql", "lock", "events", "_events")
        ms = {name: [v * 1000 for v in col] for name, col in zip(names, cols, strict=True)}
        summary["endpoints"][kind] = {
            "requests": len(rows),
            **{f"{name}_{q}_ms": round(percentile(ms[name], p), 2) for name in ("wall", "cpu", "sql", "lock", "events")
               for q, p in (("p50", 50), ("p99", 99))},
            **{f"{name}_mean_ms": round(sum(ms[name]) / len(rows), 2)
               for name in ("wall", "cpu", "sql", "lock", "events")},
            "queries_mean": round(sum(cols[2]) / len(rows), 1),
            "events_mean": round(sum(cols[6]) / len(rows), 2),
        }  # fmt: skip
    for key, (n, s) in sorted(statements.items(), key=lambda kv: -kv[1][1])[:25]:
        summary["top_statements"].append({"statement": key, "count": n, "total_s": round(s, 3),
                                          "mean_ms": round(s / n * 1000, 3)})  # fmt: skip
    for kind, stats in profiles.items():
        buf = io.StringIO()
        stats.stream = buf
        stats.sort_stats("cumulative").print_stats(45)
        summary.setdefault("cprofile", {})[kind] = buf.getvalue()
        buf = io.StringIO()
        stats.stream = buf
        stats.sort_stats("tottime").print_stats(25)
        summary.setdefault("cprofile_tottime", {})[kind] = buf.getvalue()
    Path(out_path).write_text(json.dumps(summary, indent=2))


def start_instrumented(
    workdir: Path, env: dict, mode: str, headers: dict
) -> tuple[subprocess.Popen, str, Path]:
    """Start ``serve_instrumented`` (this script, in its own process group) on a free port."""
    port = free_port()
    out = workdir / f"server_{mode}.json"
    proc = start_process([str(REPO / ".venv" / "bin" / "python"), str(Path(__file__).resolve()), "--serve-instrumented",
                          str(port), str(out), mode], log_path=workdir / f"server_{mode}.log", cwd=REPO, env=env)  # fmt: skip
    base = f"http://{LOOPBACK}:{port}"
    wait_http(f"{base}/api/v1/health", headers=headers, timeout=120, proc=proc)
    return proc, base, out


# ------------------------------------------------------------------------------------------- driver
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default="1,10,50", help="concurrent readers per level, comma list (1,10,50)")
    ap.add_argument("--cycles", type=int, default=20, help="next-case + submit rounds per reader (20)")
    ap.add_argument("--k", type=int, default=3, help="reads per case (3)")
    ap.add_argument("--workers", type=int, default=2, help="okapi serve --workers (2)")
    ap.add_argument("--threads", type=int, help="OKAPI_WEB_THREADS per web process (Okapi's default: 16)")
    ap.add_argument(
        "--read-s",
        type=float,
        default=2.0,
        help="paced pass: mean reading time per case in seconds (2; uniform 0.5x to 1.5x)",
    )
    ap.add_argument(
        "--stress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run every level with no reading time (saturation)",
    )
    ap.add_argument(
        "--profile",
        choices=["none", "timing", "cprofile"],
        default="none",
        help="afterwards, run the levels again on an instrumented single-process server",
    )
    ap.add_argument("--profile-levels", help="levels for --profile (default: --levels)")
    ap.add_argument("--out", help="write the full results as JSON to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    return ap.parse_args(argv)


def run_level(
    base, admin_headers, tokens, uids, dsn, args, level: int, meter_pgid, tag: str, read_s: float
) -> dict:
    n_cases = cases_needed(level, args.cycles, args.k)
    pid = create_project(base, admin_headers, name=f"bench {tag} {level} readers", k=args.k,
                         readers=sorted(tokens)[:level], study_uids=uids[:n_cases])  # fmt: skip
    quiet = wait_until_quiet(timeout=15)  # a shared machine may never be quiet
    print(f"[{tag}] {level} reader(s), {n_cases} cases, project {pid}, reading time {read_s:g} s", flush=True)
    with CpuMeter(meter_pgid) as meter:
        run = run_readers(base, tokens, pid, level, args.cycles, read_s)
    res = summarize(level, run)
    res.update({"project": pid, "cases": n_cases, "read_s": read_s, "waited_for_quiet_s": quiet, "cpu": meter.result,
                "check": verify(dsn, pid, args.k, run["readers"])})  # fmt: skip
    wall = max(meter.result["wall_s"], 1e-9)
    if meter.result["other_cpu_s"] / wall > 0.2 or meter.result["steal_cpu_s"] / wall > 0.1:
        print(f"  warning: other processes {meter.result['other_top']} / steal {meter.result['steal_cpu_s']} s "
              "during this level: noisy figures")  # fmt: skip
    return res


def print_table(title: str, levels: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'readers':>8}{'next p50':>10}{'next p99':>10}{'submit p50':>12}{'submit p99':>12}{'cycles/s':>10}"
          f"{'204s':>6}{'errors':>8}{'lost':>6}{'dup':>5}   CPU s: server/pg+redis/clients/other/steal")  # fmt: skip
    for r in levels:
        lat, c = r["latency"], r["cpu"]
        cpu = "/".join(f"{c.get(k, 0):.1f}" for k in ("server_cpu_s", "services_cpu_s", "client_cpu_s",
                                                       "other_cpu_s", "steal_cpu_s"))  # fmt: skip
        print(f"{r['readers']:>8}{fmt(lat['next']['p50_ms'], 1):>10}{fmt(lat['next']['p99_ms'], 1):>10}"
              f"{fmt(lat['submit']['p50_ms'], 1):>12}{fmt(lat['submit']['p99_ms'], 1):>12}{fmt(r['cycles_per_s'], 1):>10}"
              f"{r['empty_answers']:>6}{r['error_count']:>8}{r['check']['lost']:>6}{r['check']['duplicated']:>5}   {cpu}")  # fmt: skip


def print_profile(summary: dict) -> None:
    print(
        f"\nserver-side view ({summary['mode']}, one process, {summary['threads']} threads): ms per request"
    )
    print(f"{'endpoint':<12}{'n':>6}{'wall p50/p99':>16}{'cpu p50/p99':>16}{'sql p50/p99':>16}{'FOR UPDATE p50/p99':>21}"
          f"{'ws events p50/p99':>20}{'queries':>9}{'events':>8}")  # fmt: skip
    for kind, e in summary["endpoints"].items():
        cells = [
            f"{e[f'{n}_p50_ms']:.1f}/{e[f'{n}_p99_ms']:.1f}" for n in ("wall", "cpu", "sql", "lock", "events")
        ]
        print(f"{kind:<12}{e['requests']:>6}{cells[0]:>16}{cells[1]:>16}{cells[2]:>16}{cells[3]:>21}{cells[4]:>20}"
              f"{e['queries_mean']:>9}{e['events_mean']:>8}")  # fmt: skip
    print("statements costing most (total s, count, mean ms):")
    for s in summary["top_statements"][:12]:
        print(f"  {s['total_s']:>7.2f} {s['count']:>6} {s['mean_ms']:>8.2f}  {s['statement'][:150]}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    prof_levels = [int(x) for x in (args.profile_levels or args.levels).split(",") if x.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="okapi-bench-reading-"))
    if args.threads:
        os.environ["OKAPI_WEB_THREADS"] = str(args.threads)
    dsn = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"
    env = dict(os.environ, DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
               OKAPI_DATA_DIR=str(workdir / "okapi" / "data"), REDIS_URL=f"redis://127.0.0.1:6379/{REDIS_DB}")  # fmt: skip
    res: dict = {
        "config": vars(args),
        "version": okapi_version(),
        "target_p99_ms": TARGET_P99_MS,
        "levels": {},
    }
    target = None
    try:
        (workdir / "okapi").mkdir()
        target = start_okapi(workdir / "okapi", args.workers, db_name=DB_NAME, redis_db=REDIS_DB)
        base = target.root.removesuffix("/dicomweb")
        res["server"] = {"argv": f"okapi serve --workers {args.workers}", "threads": os.environ.get(
            "OKAPI_WEB_THREADS", "16 (default)"), **target.info}  # fmt: skip
        print(f"okapi: {target.version} at {base}, {args.workers} worker(s)", flush=True)
        all_levels = levels + (prof_levels if args.profile != "none" else [])
        tokens = setup_readers(env, max(all_levels))
        n_studies = max(cases_needed(n, args.cycles, args.k) for n in all_levels)
        t0 = time.perf_counter()
        uids = stow_studies(base, target.headers, n_studies)
        print(
            f"{len(tokens)} readers, {n_studies} studies stored in {time.perf_counter() - t0:.1f}s",
            flush=True,
        )
        for level in levels:
            res["levels"][str(level)] = run_level(base, target.headers, tokens, uids, dsn, args, level,
                                                  target.proc.pid, "paced", args.read_s)  # fmt: skip
        if args.stress:
            res["stress"] = {}
            for level in levels:
                res["stress"][str(level)] = run_level(base, target.headers, tokens, uids, dsn, args, level,
                                                      target.proc.pid, "stress", 0.0)  # fmt: skip
        target.stop()
        target = None
        if args.profile != "none":
            admin = _admin_headers(env)
            proc, pbase, out = start_instrumented(workdir, env, args.profile, admin)
            try:
                tag = f"instrumented ({args.profile})"
                prof = {
                    str(n): run_level(pbase, admin, tokens, uids, dsn, args, n, proc.pid, tag, 0.0)
                    for n in prof_levels
                }
            finally:
                os.killpg(proc.pid, signal.SIGINT)  # uvicorn exits cleanly, the wrapper writes its summary
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    pass
                stop_process(proc)
            res["profile"] = {"levels": prof, "server": json.loads(out.read_text()) if out.exists() else None}
    finally:
        if target is not None:
            target.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    rows = [res["levels"][str(n)] for n in levels]
    stress = [res["stress"][str(n)] for n in levels] if "stress" in res else []
    print_table(f"paced (reading time {args.read_s:g} s per case): latency in ms (client side, all answers), "
                "throughput, 204s, checks", rows)  # fmt: skip
    if stress:
        print_table("stress (no reading time: every reader always has a request in flight)", stress)
    for r in rows + stress:
        if r["error_count"] or r["check"]["lost"] or r["check"]["duplicated"]:
            print(f"  {r['readers']} readers: errors {r['errors'][:3]} check {r['check']['detail']}")
    if "profile" in res:
        print_table(
            f"instrumented server ({args.profile}, 1 process)", list(res["profile"]["levels"].values())
        )
        if res["profile"]["server"]:
            print_profile(res["profile"]["server"])
    metrics: dict = {}
    for n in levels:
        lat = res["levels"][str(n)]["latency"]
        metrics.update({f"next_p50_ms_{n}": lat["next"]["p50_ms"], f"next_p99_ms_{n}": lat["next"]["p99_ms"],
                        f"submit_p50_ms_{n}": lat["submit"]["p50_ms"], f"submit_p99_ms_{n}": lat["submit"]["p99_ms"]})  # fmt: skip
    for r in stress:
        n, lat = r["readers"], r["latency"]
        metrics.update({f"stress_next_p50_ms_{n}": lat["next"]["p50_ms"], f"stress_next_p99_ms_{n}": lat["next"]["p99_ms"],
                        f"stress_submit_p50_ms_{n}": lat["submit"]["p50_ms"],
                        f"stress_submit_p99_ms_{n}": lat["submit"]["p99_ms"]})  # fmt: skip
    metrics["lost"] = sum(r["check"]["lost"] for r in rows + stress)
    metrics["duplicated"] = sum(r["check"]["duplicated"] for r in rows + stress)
    top = max(levels)
    worst = max(metrics[f"next_p99_ms_{top}"], metrics[f"submit_p99_ms_{top}"])
    met = worst < TARGET_P99_MS
    res["target_met"] = {"readers": top, "read_s": args.read_s, "worst_p99_ms": worst, "met": met}
    print(
        f"\ntarget p99 < {TARGET_P99_MS:.0f} ms at {top} readers (paced, {args.read_s:g} s per case): "
        f"{'MET' if met else 'NOT MET'} (worst p99 {fmt(worst, 1)} ms)"
        f"{'' if top == 50 else ' (the target is stated for 50 readers)'}"
    )
    if stress:
        s_worst = max(metrics[f"stress_next_p99_ms_{top}"], metrics[f"stress_submit_p99_ms_{top}"])
        res["target_met"]["stress_worst_p99_ms"] = s_worst
        print(
            f"stress (no reading time) at {top} readers: worst p99 {fmt(s_worst, 1)} ms "
            f"({'under' if s_worst < TARGET_P99_MS else 'over'} {TARGET_P99_MS:.0f} ms)"
        )
    print(f"lost reads: {metrics['lost']}, duplicated reads: {metrics['duplicated']} (both must be 0)")
    if args.out:
        write_json(args.out, res)
    print(result_line("reading", metrics))
    return 0 if metrics["lost"] == 0 and metrics["duplicated"] == 0 else 1


def _admin_headers(env: dict) -> dict:
    """A new token for the benchmark's admin (the instrumented server shares the database)."""
    res = subprocess.run([str(REPO / ".venv" / "bin" / "okapi"), "token", "bench"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    return {"Authorization": f"Bearer {res.stdout.strip().splitlines()[-1].strip()}"}


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve-instrumented":
        serve_instrumented(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        sys.exit(0)
    sys.exit(main())
