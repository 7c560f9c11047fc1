"""Container probes for the Okapi image, run by platform/entrypoint.sh and by docker-compose health checks.

    python probe.py wait [--timeout S]   wait until the database (and Redis, if REDIS_URL is set) answer
    python probe.py web [--port P]       health check of the web role: GET /api/v1/health must answer 200
    python probe.py dicom [--port P]     health check of the DICOM listener: a DICOM association (C-ECHO)

It is a script, not a module of the project (platform/ must never become a Python package: it would shadow the
standard library's ``platform``). Exit status 0 means ready / healthy.
"""

import argparse
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request


def _say(message: str) -> None:
    print(f"okapi-probe: {message}", file=sys.stderr, flush=True)


def wait(timeout: float) -> int:
    """Wait for the database the app is configured with (any Django engine) and for Redis."""
    deadline = time.monotonic() + timeout
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connections

    pending = ["database"] + (["redis"] if os.environ.get("REDIS_URL") else [])
    last_error = ""
    while pending:
        if pending[0] == "database":
            connection = connections["default"]
            try:
                connection.ensure_connection()
                connection.close()
                pending.pop(0)
                continue
            except Exception as exc:  # OperationalError and friends: not up yet
                last_error = f"database ({connection.vendor}): {exc}".strip()
                connection.close()
        else:
            import redis

            try:
                redis.Redis.from_url(os.environ["REDIS_URL"], socket_connect_timeout=3, socket_timeout=3).ping()
                pending.pop(0)
                continue
            except Exception as exc:
                last_error = f"redis: {exc}"
        if time.monotonic() > deadline:
            _say(f"gave up after {timeout:.0f}s waiting for {last_error}")
            return 1
        _say(f"waiting for {last_error.splitlines()[0]}")
        time.sleep(2)
    return 0


def _health_host() -> str:
    """A Host header that ALLOWED_HOSTS accepts: the first entry of OKAPI_ALLOWED_HOSTS, made concrete."""
    hosts = [h.strip() for h in os.environ.get("OKAPI_ALLOWED_HOSTS", "127.0.0.1").split(",") if h.strip()]
    host = hosts[0] if hosts else "127.0.0.1"
    if host == "*":
        return "localhost"
    return host.lstrip(".")  # ".example.org" allows example.org and its subdomains


def web(port: int) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/health", headers={"Host": _health_host()})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:  # 503: a dependency is down; the body says which
        body = exc.read(2000).decode("utf-8", "replace")
        try:
            report = json.loads(body)
            body = ", ".join(f"{k}: {v.get('status')}" for k, v in report.items() if isinstance(v, dict))
        except ValueError:
            pass
        _say(f"HTTP {exc.code}: {body}")
        return 1
    except Exception as exc:
        _say(f"no answer: {exc}")
        return 1


def dicom(port: int) -> int:
    """Associate with the listener and send a C-ECHO. A rejected association still proves it is serving."""
    from pynetdicom import AE

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    ae = AE(ae_title="OKAPI-HEALTH")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.connection_timeout = 5
    ae.add_requested_context("1.2.840.10008.1.1")  # Verification SOP Class
    assoc = ae.associate("127.0.0.1", port, ae_title=os.environ.get("OKAPI_DICOM_AE_TITLE", "OKAPI") or "OKAPI")
    if assoc.is_established:
        assoc.send_c_echo()
        assoc.release()
        return 0
    if assoc.is_rejected:  # e.g. OKAPI_DICOM_ALLOWED_AETS does not list OKAPI-HEALTH
        return 0
    _say(f"no DICOM association on port {port}")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="probe.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("wait")
    p.add_argument("--timeout", type=float, default=120)
    p = sub.add_parser("web")
    p.add_argument("--port", type=int, default=8000)
    p = sub.add_parser("dicom")
    p.add_argument("--port", type=int, default=11112)
    args = parser.parse_args(argv)
    if args.command == "wait":
        return wait(args.timeout)
    if args.command == "web":
        return web(args.port)
    return dicom(args.port)


if __name__ == "__main__":
    sys.exit(main())
