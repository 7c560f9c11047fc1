#!/bin/sh
# Okapi container entrypoint: wait for the database (and Redis), migrate if asked to, then become one role.
#
#   web          okapi serve           HTTP, REST, DICOMweb, websockets on :8000 (any number of replicas)
#   worker       okapi worker          Celery worker for OKAPI_WORKER_QUEUES, no beat (any number of replicas)
#   beat         okapi worker --beat   the periodic-task scheduler, with a worker on the default queue:
#                                      run EXACTLY ONE (two would fire every periodic task twice)
#   gpu-worker   okapi worker          Celery worker for the gpu queue (training, scoring), concurrency 1
#   dicom        okapi dicom-listen    DICOM C-STORE receiver on :11112
#   migrate      manage.py migrate     apply database migrations and exit (docker-compose runs it once per `up`)
#   anything else is executed as given (`okapi user create ...`, `python manage.py shell`, `bash`).
#
# Extra arguments after a role are passed on: `web --access-log`, `worker --concurrency 8`.
# Variables read here (not by Django): OKAPI_MIGRATE, OKAPI_WAIT_TIMEOUT, OKAPI_WEB_WORKERS, OKAPI_WEB_LOG_LEVEL,
# OKAPI_WORKER_QUEUES, OKAPI_WORKER_CONCURRENCY, OKAPI_WORKER_LOG_LEVEL, OKAPI_GPU_CONCURRENCY; see
# platform/env.example.
set -eu

DATA_DIR="${OKAPI_DATA_DIR:-/data}"
IMAGE_STATIC=/opt/okapi/static
PROBE=/opt/okapi/probe.py

log() { echo "okapi-entrypoint: $*" >&2; }

prepare_data_dir() {
    # settings.py creates $OKAPI_DATA_DIR/tmp at import; fail here with a readable message rather than there.
    if ! mkdir -p "$DATA_DIR/tmp" 2>/dev/null || [ ! -w "$DATA_DIR" ]; then
        log "$DATA_DIR is not writable by uid $(id -u): mount a volume owned by $(id -u):$(id -g) there"
        exit 1
    fi
}

link_static() {
    # STATIC_ROOT is $OKAPI_DATA_DIR/static; the files themselves are in the image (see platform/Dockerfile).
    # Several web replicas may start at once on the shared volume: the link is made under a private name and
    # renamed into place, which replaces an old link atomically.
    target="$DATA_DIR/static"
    [ "$(readlink "$target" 2>/dev/null || true)" = "$IMAGE_STATIC" ] && return 0
    if [ -d "$target" ] && [ ! -L "$target" ]; then
        # A real directory: collectstatic output from an older image. Generated files only, safe to drop.
        rm -rf "$target" 2>/dev/null || true
    fi
    ln -s "$IMAGE_STATIC" "$target.$$"
    mv -fT "$target.$$" "$target" 2>/dev/null || rm -f "$target.$$"
    [ "$(readlink "$target" 2>/dev/null || true)" = "$IMAGE_STATIC" ] || log "warning: $target is not a link to $IMAGE_STATIC"
}

wait_for_services() {
    python "$PROBE" wait --timeout "${OKAPI_WAIT_TIMEOUT:-120}"
}

migrate() {
    log "applying database migrations"
    python /app/manage.py migrate --noinput "$@"
}

role="${1:-web}"
if [ "$#" -gt 0 ]; then shift; fi

case "$role" in
    web|worker|beat|gpu-worker|dicom|migrate)
        prepare_data_dir
        wait_for_services
        # OKAPI_MIGRATE=1: migrate before starting this role (a single-container install). With docker-compose
        # the one-shot `migrate` service does it instead, so that web replicas never race each other.
        if [ "$role" != migrate ] && [ "${OKAPI_MIGRATE:-0}" = 1 ]; then
            migrate
        fi
        ;;
esac

case "$role" in
    web)
        link_static
        exec okapi serve --host 0.0.0.0 --port 8000 \
            --workers "${OKAPI_WEB_WORKERS:-2}" --log-level "${OKAPI_WEB_LOG_LEVEL:-warning}" "$@"
        ;;
    worker)
        exec okapi worker --queues "${OKAPI_WORKER_QUEUES:-default,ingest,export}" \
            --concurrency "${OKAPI_WORKER_CONCURRENCY:-2}" --log-level "${OKAPI_WORKER_LOG_LEVEL:-info}" "$@"
        ;;
    beat)
        # The schedule state goes to $OKAPI_DATA_DIR/celerybeat-schedule (CELERY_BEAT_SCHEDULE_FILENAME).
        exec okapi worker --queues default --concurrency 1 --beat --log-level "${OKAPI_WORKER_LOG_LEVEL:-info}" "$@"
        ;;
    gpu-worker)
        exec okapi worker --queues gpu --concurrency "${OKAPI_GPU_CONCURRENCY:-1}" \
            --log-level "${OKAPI_WORKER_LOG_LEVEL:-info}" "$@"
        ;;
    dicom)
        exec okapi dicom-listen --host 0.0.0.0 --port 11112 "$@"
        ;;
    migrate)
        migrate "$@"
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
