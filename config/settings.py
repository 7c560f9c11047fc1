"""Okapi settings: every value comes from the environment, with embedded defaults.

With no variable set, Okapi runs on SQLite, files under ``OKAPI_DATA_DIR`` (default ``./data``), Celery on
kombu's filesystem transport and an in-process channel layer: nothing to install beyond the Python packages.
``DATABASE_URL``, ``REDIS_URL`` and ``OKAPI_S3_BUCKET`` (with the usual AWS_* variables) switch the same code
to PostgreSQL, Redis and S3-compatible object storage.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    """The variable's value; unset or empty means the default (compose files often pass empty strings)."""
    return os.environ.get(name) or default


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DATA_DIR = Path(env("OKAPI_DATA_DIR", str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("OKAPI_DEBUG", False)
SECRET_KEY = env("OKAPI_SECRET_KEY", "")
if not SECRET_KEY:
    # Embedded mode: a per-installation key kept in the data folder, never a key shipped in the code.
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        import secrets

        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    SECRET_KEY = key_file.read_text().strip()

ALLOWED_HOSTS = env_list("OKAPI_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("OKAPI_CSRF_TRUSTED_ORIGINS")
if env_bool("OKAPI_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "core",
    "imaging",
    "annotation",
    "learning",
    "frontend",
]

MIDDLEWARE = [
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
APPEND_SLASH = False  # DICOMweb clients never send trailing slashes

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{DATA_DIR / 'okapi.sqlite3'}"),
        conn_max_age=env_int("OKAPI_DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("OKAPI_DB_POOL", False):
    # Optional psycopg pool (many web processes against one PostgreSQL). HTTP requests run on a fixed thread
    # pool (config/asgi.py), so by default each thread keeps its own persistent connection instead.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("OKAPI_DB_POOL_MIN", 2), "max_size": env_int("OKAPI_DB_POOL_MAX", 20), "timeout": 30,
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, DICOM listener) share the file: WAL and a busy timeout avoid
    # "database is locked" under concurrent ingest.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
# The OHIF viewer's origin when it is served apart from Okapi (empty: Okapi serves it at /viewer/)
OKAPI_VIEWER_URL = env("OKAPI_VIEWER_URL", "")
# "Next case" randomises among this many top-ranked free cases, never the whole pool
OKAPI_CLAIM_TOP_FEW = env_int("OKAPI_CLAIM_TOP_FEW", 3)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "core.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# `make run` and the image collect static files into STATIC_ROOT (compressed, served by WhiteNoise). Where that
# step has not run (the test suite, a bare checkout) WhiteNoise serves them from the apps' folders instead, so the
# pages' scripts and styles are there either way.
WHITENOISE_USE_FINDERS = not any(STATIC_ROOT.iterdir())
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

# --- storage ---------------------------------------------------------------------------------------------------
S3_BUCKET = env("OKAPI_S3_BUCKET")
if S3_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env("OKAPI_S3_ENDPOINT_URL") or None,
            "access_key": env("AWS_ACCESS_KEY_ID") or None,
            "secret_key": env("AWS_SECRET_ACCESS_KEY") or None,
            "region_name": env("AWS_S3_REGION_NAME") or None,
            "file_overwrite": True,
            "default_acl": None,
            "querystring_auth": False,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(DATA_DIR / "storage")},
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Temporary files (STOW bodies, uploads) live beside the storage so that a finished file is renamed, not copied.
FILE_UPLOAD_TEMP_DIR = str(DATA_DIR / "tmp")
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.TemporaryFileUploadHandler"]
FILE_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("OKAPI_MAX_UPLOAD_FILES", 10000)

# How long a web process may trust a token or an access answer it checked (revocation elsewhere takes
# effect within this time; 0: ask the database on every request).
OKAPI_AUTH_CACHE_SECONDS = float(env("OKAPI_AUTH_CACHE_SECONDS", "5"))
# Threads serving HTTP in each web process (each keeps its own database connection).
OKAPI_WEB_THREADS = env_int("OKAPI_WEB_THREADS", 16)

# Worker processes that parse incoming DICOM while the web thread indexes (1: parse in the request thread).
OKAPI_INGEST_PROCESSES = env_int("OKAPI_INGEST_PROCESSES", min(os.cpu_count() or 1, 4))
# Instances of one STOW-RS request / import indexed per transaction (one commit for the group; 1: each alone)
OKAPI_INGEST_GROUP = env_int("OKAPI_INGEST_GROUP", 32)

# --- limits and DICOM ------------------------------------------------------------------------------------------
OKAPI_MAX_UPLOAD_BYTES = env_int("OKAPI_MAX_UPLOAD_BYTES", 2 * 1024**3)  # one request (STOW body, upload)
OKAPI_MAX_INSTANCE_BYTES = env_int("OKAPI_MAX_INSTANCE_BYTES", 1024**3)  # one DICOM file
OKAPI_DEIDENTIFY = env_bool("OKAPI_DEIDENTIFY", False)
OKAPI_DEID_SECRET = env("OKAPI_DEID_SECRET", SECRET_KEY)
# Root under which Okapi makes UIDs it has to invent (repairing an empty StudyInstanceUID): 2.25 is the
# UUID-derived root that needs no registration.
OKAPI_UID_ROOT = env("OKAPI_UID_ROOT", "2.25.")
OKAPI_DICOM_AE_TITLE = env("OKAPI_DICOM_AE_TITLE", "OKAPI")
OKAPI_DICOM_PORT = env_int("OKAPI_DICOM_PORT", 11112)
OKAPI_DICOM_HOST = env("OKAPI_DICOM_HOST", "127.0.0.1")
# Calling AE titles allowed to push (C-STORE); empty: any. Comma separated.
OKAPI_DICOM_ALLOWED_AETS = env_list("OKAPI_DICOM_ALLOWED_AETS")
# e.g. https://okapi.example.org: the base of RetrieveURL / BulkDataURI behind a proxy (else the request's host)
OKAPI_PUBLIC_URL = env("OKAPI_PUBLIC_URL")
# Server folders that server-side imports may read (comma separated); default: <data dir>/import
OKAPI_IMPORT_ROOTS = env_list("OKAPI_IMPORT_ROOTS", str(DATA_DIR / "import"))

# --- broker, channel layer, cache ------------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CHANNEL_LAYERS = {
        # A read timeout longer than channels-redis's 5 s blocking receive: redis-py 8 defaults socket_timeout
        # to 5 s too, and a receive whose empty answer arrives a little late would kill the websocket.
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                    "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]}}
    }
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
else:
    _broker_dir = DATA_DIR / "broker"
    for sub in ("in", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "in"),
        "data_folder_out": str(_broker_dir / "in"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CELERY_RESULT_BACKEND = None  # the job row in the database is the result
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ALWAYS_EAGER = env_bool("OKAPI_CELERY_EAGER", False)
CELERY_BEAT_SCHEDULE = {
    "recover-stale-jobs": {"task": "core.recover_stale_jobs", "schedule": 300.0},
    "sweep-temp-files": {"task": "imaging.sweep_temp_files", "schedule": 3600.0},
    "learning-auto-rounds": {"task": "learning.auto_rounds", "schedule": 120.0},
}
# A running job without a heartbeat for this long has lost its worker: retried (if its kind allows) or failed
OKAPI_JOB_STALE_MINUTES = env_int("OKAPI_JOB_STALE_MINUTES", 30)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# --- REST, OpenAPI, CORS -----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Okapi API",
    "DESCRIPTION": "Labelled medical-imaging datasets for rare diseases. DICOMweb lives under /dicomweb.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a "state" or "role": one named enum each in the schema
    "ENUM_NAME_OVERRIDES": {
        "CaseStateEnum": "annotation.models.CaseState", "ClaimStateEnum": "annotation.models.ClaimState",
        "ReadStateEnum": "annotation.models.ReadState", "JobStateEnum": "core.models.JobState",
        "ProjectRoleEnum": "annotation.models.ProjectRole", "RoleEnum": "core.models.Role",
    },
}
CORS_ALLOWED_ORIGINS = env_list("OKAPI_CORS_ORIGINS")
CORS_URLS_REGEX = r"^/(dicomweb|api)/.*$"
CORS_ALLOW_HEADERS = ["accept", "authorization", "content-type", "range", "user-agent", "x-csrftoken",
                      "x-requested-with"]
CORS_PREFLIGHT_MAX_AGE = 7200

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("OKAPI_LOG_LEVEL", "WARNING")},
    "loggers": {"okapi": {"level": env("OKAPI_LOG_LEVEL", "INFO")}},
}
