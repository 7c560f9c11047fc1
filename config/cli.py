"""The ``okapi`` command: run the platform, import DICOM, manage users and tokens.

    okapi run                      web + worker + beat + DICOM listener on 127.0.0.1 (port from PORT, default 8000)
    okapi serve [--workers N]      the web server only (ASGI: HTTP, DICOMweb, websockets)
    okapi worker                   a Celery worker (queues default, ingest, export, gpu) with beat
    okapi dicom-listen             the DICOM C-STORE receiver (a PACS or storescu pushes to it)
    okapi import PATH...           import DICOM files, folders and zip archives, with a progress bar
    okapi export PROJECT           build a versioned dataset export of a project and save its zip
    okapi user create NAME --role R [--password P]
    okapi token NAME               print a new bearer token for NAME
    okapi manage ARGS...           any Django management command
"""

import argparse
import os
import signal
import subprocess
import sys
import time


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def cmd_serve(args) -> int:
    import uvicorn

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    uvicorn.run("config.asgi:application", host=args.host, port=args.port, workers=args.workers,
                log_level=args.log_level, lifespan="off", proxy_headers=True, access_log=args.access_log)
    return 0


def cmd_worker(args) -> int:
    from config.celery_app import app

    argv = ["worker", "-Q", args.queues, "--concurrency", str(args.concurrency), "--loglevel", args.log_level]
    if args.beat:
        argv.append("--beat")
    app.worker_main(argv)
    return 0


def cmd_dicom_listen(args) -> int:
    _setup()
    from imaging.dimse import serve_forever

    serve_forever(host=args.host, port=args.port)
    return 0


def cmd_run(args) -> int:
    """Start web, worker (+beat) and DICOM listener as child processes and stop them together."""
    from django.conf import settings

    _setup()
    exe = [sys.executable, "-m", "config.cli"]
    # The in-process channel layer cannot cross processes: one web process unless Redis carries events.
    workers = args.workers or (2 if settings.REDIS_URL else 1)
    children = [
        subprocess.Popen(exe + ["serve", "--host", args.host, "--port", str(args.port), "--workers", str(workers)]),
        subprocess.Popen(exe + ["worker", "--beat", "--concurrency", "1"]),
        subprocess.Popen(exe + ["dicom-listen", "--host", args.host, "--port", str(settings.OKAPI_DICOM_PORT)]),
    ]
    print(f"Okapi is running at http://{args.host}:{args.port}/  (DICOM C-STORE: "
          f"{settings.OKAPI_DICOM_AE_TITLE}@{args.host}:{settings.OKAPI_DICOM_PORT}; Ctrl-C stops)", flush=True)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.5)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
    failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM, None)]
    return 1 if failed and not stopping else 0


def cmd_import(args) -> int:
    _setup()
    from tqdm import tqdm

    from imaging.services.batch import count_items, ingest_paths

    total = count_items(args.paths)
    with tqdm(total=total, unit="file", desc="Importing", disable=args.quiet) as bar:
        def progress(result):
            bar.update(1)
            bar.set_postfix_str(result.status)

        summary = ingest_paths(args.paths, source="cli", on_result=progress,
                               **({"deidentify": True} if args.deidentify else {}))
    counts = summary.counts()
    print(f"stored {counts['stored']}, skipped as duplicate {counts['duplicate']}, rejected {counts['rejected']}")
    for result in summary.results:
        if result.status == "rejected":
            print(f"  rejected {result.name}: {result.reason}")
        elif result.repairs and args.verbose:
            print(f"  repaired {result.name}: " + "; ".join(r["reason"] for r in result.repairs))
    return 1 if counts["rejected"] and not (counts["stored"] or counts["duplicate"]) else 0


def cmd_export(args) -> int:
    """Build an export in this process (no worker needed) and copy its archive to --out."""
    _setup()
    from django.contrib.auth import get_user_model
    from tqdm import tqdm

    from annotation.exports.build import export_build
    from annotation.exports.services import check_may_export, export_params
    from annotation.models import Project
    from annotation.selectors import project_roles
    from core.errors import OkapiError
    from imaging import storage

    project = Project.objects.filter(pk=int(args.project)).first() if args.project.isdigit() else \
        Project.objects.filter(name=args.project).first()
    if project is None:
        print(f"error: no project {args.project!r} (give its id or exact name)", file=sys.stderr)
        return 2
    user = None
    if args.user:
        user = get_user_model().objects.filter(username=args.user).first()
        if user is None:
            print(f"error: no user {args.user!r}", file=sys.stderr)
            return 2
    raw = {"cases": args.cases, "schema_version": args.schema_version, "series_uids": args.series or [],
           "modality": args.modality, "date_from": args.date_from, "date_to": args.date_to,
           "deidentified": not args.identified, "images": args.images, "licence": args.licence,
           "split": {"validation": args.validation, "test": args.test, "seed": args.seed}}
    try:
        request = export_params(raw, project=project)
        if user is not None:
            check_may_export(project_roles(user, project.pk), request)
    except OkapiError as exc:
        print(f"error: {exc.message} {exc.detail or ''}", file=sys.stderr)
        return 2
    with tqdm(total=100, unit="%", desc=f"Exporting {project.name}", disable=args.quiet) as bar:
        def progress(fraction: float, message: str) -> None:
            bar.update(round(fraction * 100) - bar.n)
            bar.set_postfix_str(message)

        built = export_build(project=project, request=request, user=user, on_progress=progress)
    export = built.export
    print(f"project {project.pk} export version {export.version}{' (same content as before)' if built.reused else ''}"
          f": {export.size} bytes, content hash {export.content_hash}")
    if args.no_download:
        return 0
    out = args.out or f"okapi-project{project.pk}-v{export.version}.zip"
    with open(out, "wb") as fh:
        for chunk in storage.iter_file(export.file):
            fh.write(chunk)
    print(f"saved {out}")
    return 0


def cmd_user_create(args) -> int:
    _setup()
    from core.auth import user_create
    from core.errors import OkapiError

    try:
        user = user_create(username=args.username, password=args.password, role=args.role, email=args.email or "")
    except OkapiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"created {user.username} ({user.role})")
    return 0


def cmd_token(args) -> int:
    _setup()
    from django.contrib.auth import get_user_model

    from core.auth import token_create

    user = get_user_model().objects.filter(username=args.username).first()
    if user is None:
        print(f"error: no user {args.username!r}", file=sys.stderr)
        return 2
    _, raw = token_create(user=user, name=args.name)
    print(raw)
    return 0


def cmd_manage(args) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["okapi manage"] + args.rest)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="okapi", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    port = int(os.environ.get("PORT", "8000"))

    p = sub.add_parser("run", help="web + worker + beat + DICOM listener")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=port)
    p.add_argument("--workers", type=int, default=0)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="web server only")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=port)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-level", default="warning")
    p.add_argument("--access-log", action="store_true")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="Celery worker")
    p.add_argument("--queues", default="default,ingest,export,gpu")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--beat", action="store_true")
    p.add_argument("--log-level", default="warning")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("dicom-listen", help="DICOM C-STORE receiver")
    p.add_argument("--host", default=os.environ.get("OKAPI_DICOM_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("OKAPI_DICOM_PORT", "11112")))
    p.set_defaults(func=cmd_dicom_listen)

    p = sub.add_parser("import", help="import DICOM files, folders, zip archives")
    p.add_argument("paths", nargs="+")
    p.add_argument("--deidentify", action="store_true", help="apply the PS3.15 basic profile (docs/deidentification.md)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="build a dataset export of a project and save its zip")
    p.add_argument("project", help="project id or exact name")
    p.add_argument("--out", help="where to save the zip (default okapi-project<ID>-v<VERSION>.zip)")
    p.add_argument("--user", help="export as this user (their project role decides what is allowed); "
                   "default: the operator, like okapi import")
    p.add_argument("--cases", choices=["consensus", "all"], default="consensus")
    p.add_argument("--schema-version", type=int)
    p.add_argument("--series", action="append", help="a SeriesInstanceUID to include (repeatable)")
    p.add_argument("--modality", default="")
    p.add_argument("--date-from", default="", help="StudyDate from, YYYY-MM-DD")
    p.add_argument("--date-to", default="", help="StudyDate to, YYYY-MM-DD")
    p.add_argument("--identified", action="store_true", help="keep identifying data (default: de-identified)")
    p.add_argument("--images", choices=["nifti", "dicom", "both"], default="nifti")
    p.add_argument("--validation", type=float, default=0.15)
    p.add_argument("--test", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--licence", default="")
    p.add_argument("--no-download", action="store_true", help="build and record the version, save nothing")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("user", help="manage users")
    user_sub = p.add_subparsers(dest="user_command", required=True)
    c = user_sub.add_parser("create")
    c.add_argument("username")
    c.add_argument("--role", required=True, choices=["admin", "lead", "radiologist", "data_scientist"])
    c.add_argument("--password")
    c.add_argument("--email")
    c.set_defaults(func=cmd_user_create)

    p = sub.add_parser("token", help="print a new bearer token for a user")
    p.add_argument("username")
    p.add_argument("--name", default="cli")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("manage", help="a Django management command")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_manage)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
