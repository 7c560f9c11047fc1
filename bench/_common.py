"""Helpers shared by the benchmark scripts in ``bench/``.

Statistics and reporting (percentiles, the comparison table, the one-line ``RESULT`` summary, JSON
output), processes (free loopback ports, servers started and stopped as process groups, CPU
accounting), the servers under test (a private Orthanc, Okapi on a fresh database) and HTTP
helpers (multipart bodies, concurrent GETs from several client processes).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import requests

LOOPBACK = "127.0.0.1"


def percentile(values: Sequence[float], q: float) -> float:
    """Return the q-th percentile (0..100) of ``values`` with linear interpolation (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize_ms(seconds: Sequence[float]) -> dict:
    """Summarise latencies given in seconds as milliseconds: n, p50, p95, mean, min, max."""
    ms = [s * 1000.0 for s in seconds]
    if not ms:
        return {"n": 0, "p50_ms": math.nan, "p95_ms": math.nan, "mean_ms": math.nan}
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "mean_ms": round(sum(ms) / len(ms), 3),
        "min_ms": round(min(ms), 3),
        "max_ms": round(max(ms), 3),
    }


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` rounded to 3 digits, NaN when either side is missing or zero."""
    if not numerator or not denominator or math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    return round(numerator / denominator, 3)


def fmt(value: object, digits: int = 2) -> str:
    """Format a number for tables and the RESULT line (``nan`` for missing values)."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return "nan" if value is None else str(value)


def result_line(name: str, metrics: Mapping[str, float]) -> str:
    """Build the single machine-readable summary line: ``RESULT <name> key=value ...``."""
    return "RESULT " + name + " " + " ".join(f"{k}={fmt(v, 3)}" for k, v in metrics.items())


def write_json(path: str | os.PathLike, data: object) -> None:
    """Write ``data`` as indented JSON (NaN becomes null so that strict parsers accept the file)."""

    def clean(obj: object) -> object:
        if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
            return None
        if isinstance(obj, Mapping):
            return {str(k): clean(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [clean(v) for v in obj]
        return obj

    Path(path).write_text(json.dumps(clean(data), indent=2, sort_keys=False) + "\n")


def dig(node: object, *path: str, default: object = None) -> object:
    """``node[path[0]][path[1]]...`` through nested dicts, ``default`` where a step is missing."""
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def compare(results: Mapping, spec: Sequence[tuple], *, base: str, subject: str) -> list[dict]:
    """Rows comparing ``subject`` with ``base`` for each (metric, ratio name, "higher"/"lower", path).

    The ratio is always "how many times better the subject is": subject/base where higher is better,
    base/subject where lower is better, so > 1 means the subject wins on every metric.
    """
    rows = []
    for metric, ratio_name, better, path in spec:
        values = {}
        for name in (base, subject):
            value = dig(results, name, *path)
            values[name] = value if isinstance(value, (int, float)) else math.nan
        b, s = values[base], values[subject]
        rows.append({"metric": metric, "ratio_name": ratio_name, "better": better, "base": base,
                     "subject": subject, base: b, subject: s,
                     "ratio": ratio(s, b) if better == "higher" else ratio(b, s)})  # fmt: skip
    return rows


def print_comparison(rows: Sequence[dict]) -> None:
    """The side-by-side table: metric, base, subject, how many times better the subject is."""
    if not rows:
        return
    base, subject = rows[0]["base"], rows[0]["subject"]
    print(f"\n{'metric':<20}{base:>11}{subject:>11}{subject + ' better by':>17}  meaning")
    for row in rows:
        how = {"higher": f"higher is better: {subject}/{base}", "lower": f"lower is better: {base}/{subject}"}
        cells = f"{fmt(row[base]):>11}{fmt(row[subject]):>11}{fmt(row['ratio'], 3) + 'x':>17}"
        print(f"{row['metric']:<20}{cells}  {how[row['better']]}")


def result_metrics(rows: Sequence[dict]) -> dict[str, float]:
    """``<metric>_<subject>``, ``<metric>_<base>`` and the ratio of every row, for the RESULT line."""
    metrics: dict[str, float] = {}
    for row in rows:
        base, subject = row["base"], row["subject"]
        metrics[f"{row['metric']}_{subject}"] = row[subject]
        metrics[f"{row['metric']}_{base}"] = row[base]
        metrics[row["ratio_name"]] = row["ratio"]
    return metrics


def free_port() -> int:
    """Ask the kernel for a free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def start_process(
    argv: Sequence[str], *, log_path: Path, cwd: Path, env: Mapping | None = None
) -> subprocess.Popen:
    """Start ``argv`` in a new session (its own process group), stdout+stderr appended to ``log_path``."""
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        detached = {"stdin": subprocess.DEVNULL, "stderr": subprocess.STDOUT, "start_new_session": True}
        return subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=log, **detached)


def stop_process(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group of ``proc`` (started by ``start_process``), SIGKILL what is left."""
    if proc is None:
        return
    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)  # start_new_session: the group id is the leader's pid
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # workers of the group that outlived their leader
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_http(url: str, *, headers: dict | None = None, timeout: float = 60, proc=None) -> requests.Response:
    """Poll ``url`` until it answers 200; raise if ``proc`` (a Popen) exits or time runs out."""
    deadline = time.monotonic() + timeout
    last: str = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            resp = requests.get(url, headers=headers, timeout=5)
            if resp.status_code == 200:
                return resp
            last = f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s ({last})")


def _cpu_jiffies() -> tuple[int, int, int]:
    """(busy, total, steal) clock ticks of all CPUs since boot, from /proc/stat (guest time left out).

    Steal is time the hypervisor gave our virtual CPUs to someone else: on a shared VM it slows
    everything down without showing in any process.
    """
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split()[1:9]
    )
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait, steal


SERVICES = {"postgres", "redis-server"}


class CpuMeter:
    """CPU seconds that processes spent while a measurement ran, by who spent them.

    ``server``: the server's process group; ``services``: PostgreSQL and Redis (which Okapi uses,
    Orthanc not); ``client``: this benchmark's process group (the client processes included);
    ``other``: every other user-space process, e.g. someone's tests or a build: when it is large,
    distrust the figures. Children that exit count for their parent (cutime/cstime); kernel
    threads are left out; ``machine`` is all non-idle CPU time, kernel work on I/O included;
    ``steal`` is CPU time the hypervisor took away (see ``_cpu_jiffies``).
    """

    tick = os.sysconf("SC_CLK_TCK")

    def __init__(self, server_pgid: int | None):
        self.pgid, self.me = server_pgid, os.getpgrp()
        self.result: dict = {}

    def _sample(self) -> dict:
        sample = dict.fromkeys(("server", "services", "client", "other"), 0)
        by_name: Counter = Counter()  # "other" processes by name, to tell who disturbed the run
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                comm, rest = stat.read_text().rsplit(")", 1)
            except OSError:
                continue
            f = rest.split()  # state ppid pgrp ... utime(11) stime cutime cstime
            if int(f[1]) == 2 or stat.parent.name == "2":
                continue  # kernel threads
            pgrp, ticks = int(f[2]), sum(int(x) for x in f[11:15])
            name = comm.rsplit("(", 1)[-1]
            who = "server" if pgrp == self.pgid else "client" if pgrp == self.me else None
            who = who or ("services" if name in SERVICES else "other")
            sample[who] += ticks
            by_name[name] += ticks if who == "other" else 0
        sample["machine"], _, sample["steal"] = _cpu_jiffies()
        return {**{k: v / self.tick for k, v in sample.items()}, "wall": time.monotonic(), "by_name": by_name}

    def __enter__(self) -> CpuMeter:
        self.start = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        used = {f"{k}_cpu_s": round(end[k] - self.start[k], 2) for k in end if k not in ("wall", "by_name")}
        others = (end["by_name"] - self.start["by_name"]).most_common(3)
        used["other_top"] = {name: round(ticks / self.tick, 2) for name, ticks in others}
        self.result = {**used, "wall_s": round(end["wall"] - self.start["wall"], 2)}


def wait_until_quiet(threshold: float = 0.15, timeout: float = 120.0) -> float:
    """Wait (bounded) until the CPUs are less than ``threshold`` busy over 1 s; returns seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        busy0, total0, _ = _cpu_jiffies()
        time.sleep(1.0)
        busy1, total1, _ = _cpu_jiffies()
        if (busy1 - busy0) < threshold * max(1, total1 - total0):
            break
    return round(time.monotonic() - start, 1)


# --------------------------------------------------------------------------------------------
# Servers under test: a target is a DICOMweb root URL plus the headers every request carries.
# --------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
ORTHANC_PLUGIN_PKG = "orthanc-dicomweb"
# Orthanc settings left at their defaults (Orthanc 1.10, DICOMweb plugin 1.7), listed in the output.
ORTHANC_DEFAULTS = (
    "DicomWeb.StudiesMetadata=Full and DicomWeb.SeriesMetadata=Full (/metadata reads every instance file), "
    "StorageCompression=false, MaximumStorageCacheSize=128 MB, HttpThreadsCount=50, OverwriteInstances=false"
)


@dataclass
class Target:
    """One DICOMweb server under test: ``root`` (no trailing slash), the headers every request carries."""

    name: str
    root: str
    headers: dict[str, str]
    version: str
    proc: subprocess.Popen | None
    info: dict = field(default_factory=dict)

    def session(self) -> requests.Session:
        """A new keep-alive HTTP session that sends this target's headers."""
        sess = requests.Session()
        sess.headers.update(self.headers)
        return sess

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


def orthanc_plugin_path() -> str | None:
    """Path of the DICOMweb plugin shared object installed by ``orthanc-dicomweb``, if any."""
    listing = subprocess.run(["dpkg", "-L", ORTHANC_PLUGIN_PKG], capture_output=True, text=True).stdout
    found = [f for f in listing.splitlines() if "libOrthancDicomWeb.so" in f and Path(f).exists()]
    return min(found, key=len) if found else None


def ensure_orthanc() -> str:
    """Install Orthanc and its DICOMweb plugin with apt-get if missing; return the plugin path."""
    plugin = orthanc_plugin_path()
    if shutil.which("Orthanc") and plugin:
        return plugin
    cmd = ["apt-get", "install", "-y", "-q", "orthanc", ORTHANC_PLUGIN_PKG]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(cmd, env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(cmd, env=env, check=True)
    plugin = orthanc_plugin_path()
    if not (shutil.which("Orthanc") and plugin):
        raise RuntimeError("Orthanc or its DICOMweb plugin is still missing after apt-get install")
    return plugin


def start_orthanc(workdir: Path) -> Target:
    """Start a private Orthanc (HTTP only, loopback, no auth, DICOMweb at /dicom-web/) in ``workdir``."""
    plugin = ensure_orthanc()
    port = free_port()
    config = {
        "Name": "okapi-bench",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "storage"),
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
        # Orthanc < 1.12.2 defaults to true and then gzips every answer, frames included, whenever the
        # client accepts gzip (browsers do): ~3x slower frames on loopback. Upstream changed the default
        # to false in 1.12.2 and advises false on a LAN or localhost, so we compare against that.
        "HttpCompressionEnabled": False,
    }
    (workdir / "orthanc.json").write_text(json.dumps(config, indent=2))
    proc = start_process(
        ["Orthanc", str(workdir / "orthanc.json")], log_path=workdir / "orthanc.log", cwd=workdir
    )
    base = f"http://{LOOPBACK}:{port}"
    system = wait_http(f"{base}/system", timeout=60, proc=proc).json()
    plugin_info = requests.get(f"{base}/plugins/dicom-web", timeout=5).json()
    version = f"Orthanc {system.get('Version')} + DICOMweb plugin {plugin_info.get('Version')}"
    info = {"config": config, "defaults_left_unset": ORTHANC_DEFAULTS, "log": str(workdir / "orthanc.log")}
    return Target("orthanc", f"{base}/dicom-web", {}, version, proc, info)


def _run_checked(argv: Sequence[str], env: Mapping[str, str], what: str) -> str:
    res = subprocess.run(list(argv), cwd=REPO, env=dict(env), capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"{what} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return res.stdout


def reset_postgres_db(name: str, dsn: str = "postgresql://postgres@127.0.0.1:5432/postgres") -> None:
    """Drop and recreate database ``name`` (the benchmark's own database, never a shared one)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def start_okapi(workdir: Path, workers: int, db_name: str = "okapi_bench", redis_db: int = 15) -> Target:
    """Fresh database + data dir, migrate, create an admin and a token, start ``okapi serve``."""
    venv_bin = REPO / ".venv" / "bin"
    reset_postgres_db(db_name)
    try:  # the benchmark's own Redis database: leftover queued tasks from a previous run would add load
        import redis

        redis.Redis.from_url(f"redis://127.0.0.1:6379/{redis_db}").flushdb()
    except Exception as exc:  # noqa: BLE001 - Redis trouble shows up again when Okapi starts
        print(f"warning: could not flush Redis db {redis_db}: {exc}")
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db_name}",
        OKAPI_DATA_DIR=str(data_dir),
        REDIS_URL=f"redis://127.0.0.1:6379/{redis_db}",
    )
    okapi = str(venv_bin / "okapi")
    _run_checked([str(venv_bin / "python"), "manage.py", "migrate", "--noinput"], env, "migrate")
    user = ["user", "create", "bench", "--role", "admin", "--password", "benchpass"]
    _run_checked([okapi, *user], env, "okapi user create")
    token = _run_checked([okapi, "token", "bench"], env, "okapi token").strip().splitlines()[-1].strip()
    port = free_port()
    proc = start_process(
        [okapi, "serve", "--host", LOOPBACK, "--port", str(port), "--workers", str(workers)],
        log_path=workdir / "okapi.log",
        cwd=REPO,
        env=env,
    )
    base = f"http://{LOOPBACK}:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    health = wait_http(f"{base}/api/v1/health", headers=headers, timeout=120, proc=proc)
    info = {
        "health": json_or(health, health.text[:500]),
        "workers": workers,
        "log": str(workdir / "okapi.log"),
    }
    return Target("okapi", f"{base}/dicomweb", headers, okapi_version(), proc, info)


def okapi_version() -> str:
    """The installed package version and the checked-out commit (read-only ``git rev-parse``)."""
    from importlib.metadata import version

    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return f"okapi {version('okapi')} (commit {git.stdout.strip() or 'none yet'})"


# --------------------------------------------------------------------------------------------
# HTTP helpers shared by the measurements.
# --------------------------------------------------------------------------------------------


def multipart_related(parts: Sequence[bytes], part_type: str = "application/dicom") -> tuple[bytes, str]:
    """One ``multipart/related`` body holding ``parts``; returns (body, Content-Type header value)."""
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for part in parts:
        chunks += [f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode(), part, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{part_type}"; boundary={boundary}'


def first_part(resp: requests.Response) -> tuple[bytes, str]:
    """Payload and Content-Type of the first part of a multipart answer (boundary from the header).

    A non-multipart answer is returned whole, with the response's Content-Type.
    """
    ctype = resp.headers.get("Content-Type", "")
    match = re.search(r'boundary="?([^";,]+)"?', ctype)
    if "multipart" not in ctype or not match:
        return resp.content, ctype
    body, delim = resp.content, b"--" + match.group(1).encode()
    try:
        start = body.index(delim) + len(delim)
        head_end = body.index(b"\r\n\r\n", start)
        end = body.index(b"\r\n" + delim, head_end + 4)
    except ValueError:
        return b"", f"unparsable multipart ({ctype})"
    part_type = re.search(r"(?im)^content-type:\s*(.+?)\s*$", body[start:head_end].decode("latin-1"))
    return body[head_end + 4 : end], part_type.group(1) if part_type else ""


def json_or(resp: requests.Response, default: object = None) -> object:
    """The JSON body of ``resp``, or ``default`` when it has none or it does not parse."""
    try:
        return resp.json()
    except ValueError:
        return default


def guarded(label: str, fn: Callable, *args: object, **kwargs: object) -> dict:
    """Run one measurement; a failure is reported in the results instead of ending the benchmark."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - one broken endpoint must not hide the other figures
        error = f"{type(exc).__name__}: {exc}"
        target = args[0] if args and isinstance(args[0], Target) else None
        if target is not None and target.proc is not None and target.proc.poll() is not None:
            error += f" (the {target.name} server had exited with code {target.proc.returncode})"
        print(f"  {label} FAILED: {error}", flush=True)
        return {"error": error}


def _get_worker(urls: Sequence[str], headers: Mapping[str, str], start_at: float) -> dict:
    """Client process: GET ``urls`` in order on one keep-alive session from ``start_at`` (monotonic)."""
    sess = requests.Session()
    sess.headers.update(headers)
    time.sleep(max(0.0, start_at - time.monotonic()))
    cpu0 = time.process_time()
    latencies, nbytes, errors = [], 0, 0
    for url in urls:
        t0 = time.monotonic()
        resp = sess.get(url, timeout=60)
        latencies.append(time.monotonic() - t0)
        nbytes += len(resp.content)
        errors += resp.status_code != 200
    return {"end": time.monotonic(), "latencies": latencies, "bytes": nbytes, "errors": errors,
            "cpu_s": time.process_time() - cpu0}  # fmt: skip


def get_all(urls: Sequence[str], headers: Mapping[str, str], connections: int) -> dict:
    """GET every URL once over ``connections`` client processes started together, one session each.

    Processes rather than threads: with few cores a GIL-bound client would cap the concurrent figure.
    Returns wall seconds, per-request latencies, bytes, non-200 answers and the clients' CPU seconds.
    """
    with ProcessPoolExecutor(connections, mp_context=get_context("fork")) as pool:
        list(pool.map(abs, range(connections * 4)))  # every worker is up before the clock starts
        start_at = time.monotonic() + 0.3
        chunks = [list(urls[i::connections]) for i in range(connections)]
        outs = list(pool.map(_get_worker, chunks, [headers] * connections, [start_at] * connections))
    return {
        "seconds": max(o["end"] for o in outs) - start_at,
        "latencies": [t for o in outs for t in o["latencies"]],
        "bytes": sum(o["bytes"] for o in outs),
        "errors": sum(o["errors"] for o in outs),
        "client_cpu_s": round(sum(o["cpu_s"] for o in outs), 2),
    }
