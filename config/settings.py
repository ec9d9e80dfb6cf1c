"""Settings of the platform, all from the environment (see config/env.py).

Production differs from development only in environment values; every
variable is listed in the README's configuration table.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

from config import env

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env.string("VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env.boolean("DEBUG", False)


def _secret_key() -> str:
    value = env.raw("SECRET_KEY")
    if value:
        if len(value) < 32:
            raise ImproperlyConfigured("SECRET_KEY: must be at least 32 characters long")
        return value
    # No key given: keep a generated one under var/, so sessions survive restarts
    # of a development box without anyone having to invent a key.
    path = VAR_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = get_random_secret_key()
        path.write_text(key)
        path.chmod(0o600)
        return key


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.string_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
# The port preview's own origin: each session and port at p<port>-<session>.PREVIEW_HOST
# (labs/preview.py). Empty: previews are served on the platform's origin (README).
PREVIEW_HOST = env.string("PREVIEW_HOST", "").strip().lower().strip(".")
if PREVIEW_HOST:
    if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", PREVIEW_HOST) or ".." in PREVIEW_HOST:
        raise ImproperlyConfigured(f"PREVIEW_HOST: expected a DNS name like preview.example.org; got {PREVIEW_HOST!r}")
    ALLOWED_HOSTS = [*ALLOWED_HOSTS, "." + PREVIEW_HOST]
CSRF_TRUSTED_ORIGINS = env.string_list("CSRF_TRUSTED_ORIGINS", "")
HOST = env.string("HOST", "127.0.0.1")
PORT = env.port("PORT", 8000)
SITE_NAME = env.string("SITE_NAME", "KubeLab")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "accounts",
    "courses",
    "labs",
    "grader",
    "lti",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # a preview origin (PREVIEW_HOST) gets its own URLconf before anything else looks
    "labs.preview.preview_host_middleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # outside sessions, CSRF and messages: an LTI session's cookies and framing (lti/embedding.py)
    "lti.embedding.LtiEmbeddingMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.site",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------

_database_url = env.url(
    "DATABASE_URL",
    f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
    schemes={"sqlite", "postgres", "postgresql", "pgsql"},
)
try:
    _database = dj_database_url.parse(_database_url, conn_max_age=60, conn_health_checks=True)
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL: {exc}") from exc
if _database["ENGINE"] == "django.db.backends.sqlite3":
    if not _database.get("NAME"):
        raise ImproperlyConfigured(f"DATABASE_URL: no database file in {_database_url!r}")
    _database["CONN_MAX_AGE"] = 0
    # A file, not memory, so that a real Celery worker started by the tests
    # sees the same test database as the test process.
    _database["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    # WAL lets the web, worker and beat processes read while one writes; the
    # busy timeout makes concurrent writers wait instead of failing.
    _database["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif not _database.get("NAME"):
    raise ImproperlyConfigured(f"DATABASE_URL: no database name in {_database_url!r}")
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis, channels, celery --------------------------------------------------

REDIS_URL = env.url(
    "REDIS_URL",
    f"unix://{VAR_DIR / 'run' / 'redis.sock'}",
    schemes={"redis", "rediss", "unix"},
)
_redis = urlparse(REDIS_URL)
if _redis.scheme == "unix" and not _redis.path:
    raise ImproperlyConfigured(f"REDIS_URL: no socket path in {REDIS_URL!r}")
if _redis.scheme in {"redis", "rediss"} and not _redis.hostname:
    raise ImproperlyConfigured(f"REDIS_URL: no host in {REDIS_URL!r}")

# channels_redis receives with BZPOPMIN blocking 5 s in Redis (RedisChannelLayer.brpop_timeout),
# and redis-py 5+ reads with a 5 s socket timeout by default: an idle receive's empty answer
# raced the client's timeout, and under a herd (daphne's loop late by a few ms) the timeout won,
# "Timeout reading from …/redis.sock". redis-py then dropped the connection with the answer
# unread: when that answer was a message, BZPOPMIN had already taken it out of Redis and it was
# lost (a page's `ready` push, issue #13), and the consumer whose receive failed was closed.
# Reads get a timeout well past the blocking pop; connects keep a short one.
CHANNEL_LAYER_SOCKET_TIMEOUT = 30
# All the consumers of one daphne process share ONE Redis key ("specific.<process>!"), and
# channels_redis' `capacity` (default 100) bounds that key: group_send silently drops what
# comes past it (logged at INFO). A class starting at once sends a status push per progress
# step and a queue place to everyone waiting at each claim, faster than daphne drains them:
# at 100 a page's `ready` was dropped (issue #13). Messages still expire after `expiry` (60 s),
# which bounds Redis memory (a message is under 2 kB: at most a few MB per daphne process).
CHANNEL_LAYER_CAPACITY = 2000
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT,
                    "socket_connect_timeout": 5,
                }
            ],
            "prefix": env.string("CHANNELS_PREFIX", "kubelab"),
            "capacity": CHANNEL_LAYER_CAPACITY,
        },
    }
}


# Django's cache lives in the same Redis, so what it counts is shared by every web process and
# replica (the editor's validation rate limit, labs/editor.py; the worker's heartbeat,
# config/tasks.py). The default per-process memory cache let each daphne count on its own.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.string("CHANNELS_PREFIX", "kubelab") + ":cache",
        "OPTIONS": {"socket_timeout": 5, "socket_connect_timeout": 5},
    }
}


def _celery_url(redis_url: str) -> str:
    # kombu spells a unix socket "redis+socket://"; redis-py spells it "unix://".
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://") :]
    return redis_url


CELERY_BROKER_URL = _celery_url(REDIS_URL)
CELERY_RESULT_BACKEND = _celery_url(REDIS_URL)
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_TIME_LIMIT = env.integer("CELERY_TASK_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env.integer("CELERY_TASK_SOFT_TIME_LIMIT", 240, minimum=1)
# A task is acknowledged only when it has finished, so a worker killed mid-task
# hands it to another worker instead of losing it (tasks are idempotent).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 60}
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_CONCURRENCY = env.integer("CELERY_WORKER_CONCURRENCY", 4, minimum=1)
# Queues: provisioning (slow, seconds a sandbox under a class's herd) and grading (fast)
# never share one, so 50 students pressing Start never make a Check wait. `make run`
# starts a worker for each (scripts/run.py); beat's housekeeping goes to the default queue,
# which the provisioning worker also consumes.
CELERY_TASK_DEFAULT_QUEUE = "celery"
PROVISIONING_QUEUE = "provisioning"
GRADER_QUEUE = env.string("GRADER_QUEUE", "grading")
if not GRADER_QUEUE.strip() or GRADER_QUEUE in {PROVISIONING_QUEUE, CELERY_TASK_DEFAULT_QUEUE}:
    raise ImproperlyConfigured(
        f"GRADER_QUEUE: a queue of its own, not empty, {PROVISIONING_QUEUE!r} or {CELERY_TASK_DEFAULT_QUEUE!r}; "
        f"got {GRADER_QUEUE!r}"
    )
CELERY_TASK_ROUTES = {
    "labs.tasks.provision_sandbox": {"queue": PROVISIONING_QUEUE},
    "labs.tasks.release_sandbox": {"queue": PROVISIONING_QUEUE},
    "labs.tasks.pause_sandbox": {"queue": PROVISIONING_QUEUE},
    "labs.tasks.resume_sandbox": {"queue": PROVISIONING_QUEUE},
    "grader.tasks.grade": {"queue": GRADER_QUEUE},
}
# Processes of each worker `make run` starts. Provisioning's also sets how many sandboxes are
# built at once, which the lab page's waiting-time estimate divides by. On 2 cores 6 or 8 built
# a class of 50 hardly faster than 4 and slowed terminals (README, Performance): 4 stays.
CELERY_PROVISIONING_CONCURRENCY = env.integer("CELERY_PROVISIONING_CONCURRENCY", CELERY_WORKER_CONCURRENCY, minimum=1)
CELERY_GRADING_CONCURRENCY = env.integer("CELERY_GRADING_CONCURRENCY", 2, minimum=1)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "heartbeat": {"task": "config.tasks.heartbeat", "schedule": 60.0},
    "labs-cull-idle": {"task": "labs.tasks.cull_idle_sessions", "schedule": 30.0},
    "labs-expire": {"task": "labs.tasks.expire_sessions", "schedule": 30.0},
    # a provisioning worker killed mid-build: its session is taken over when its lease ends
    "labs-requeue-stale-provisioning": {"task": "labs.tasks.requeue_stale_provisioning", "schedule": 30.0},
    "labs-expire-paused": {"task": "labs.tasks.expire_paused_sessions", "schedule": 600.0},
    # SANDBOX_BACKEND=kubernetes: sessions whose placeholder Pod was evicted (node drained or lost)
    "labs-end-lost-placements": {"task": "labs.tasks.end_lost_placements", "schedule": 15.0},
    "grader-requeue-stale": {"task": "grader.tasks.requeue_stale_submissions", "schedule": 30.0},
    "lti-expire-state": {"task": "lti.tasks.expire_state", "schedule": 3600.0},
    "lti-resend-stale-scores": {"task": "lti.tasks.resend_stale_scores", "schedule": 600.0},
}

# --- runtime --------------------------------------------------------------------

RUNTIME_SOCKET = env.string("RUNTIME_SOCKET", str(VAR_DIR / "run" / "runtimed.sock"))
RUNTIME_ROOT = env.string("RUNTIME_ROOT", str(VAR_DIR / "runtime"))
RUNTIME_REQUIRED = env.boolean("RUNTIME_REQUIRED", True)
# runtimed's admin credential (runtime.auth). Only the provisioning/grading worker needs it:
# `make run` gives it to the worker alone, never to the web process (SECURITY.md).
RUNTIME_ADMIN_TOKEN = env.string("RUNTIME_ADMIN_TOKEN", "")
# Lifetime of the per-grading sandbox token a worker mints for a check run.
GRADER_TOKEN_TTL = 15 * 60
SANDBOX_BACKEND = env.string("SANDBOX_BACKEND", "namespace")
if SANDBOX_BACKEND not in {"namespace", "docker", "kubernetes"}:
    raise ImproperlyConfigured(f"SANDBOX_BACKEND: expected namespace, docker or kubernetes; got {SANDBOX_BACKEND!r}")
# SANDBOX_BACKEND=kubernetes (runtime/placement.py, docs/scaling-out.md): placeholder Pods in
# SANDBOX_NAMESPACE of the cluster SANDBOX_KUBECONFIG names (empty: the pod's service account);
# each lab node's runtimed at https://<node InternalIP>:RUNTIME_NODE_PORT, its certificate signed
# by the CA whose PEM is RUNTIME_CA (usually given as RUNTIME_CA_FILE, a mounted Secret).
SANDBOX_KUBECONFIG = env.string("SANDBOX_KUBECONFIG", "")
SANDBOX_NAMESPACE = env.string("SANDBOX_NAMESPACE", "kubelab-sandboxes")
SANDBOX_CAPACITY_WAIT = env.duration("SANDBOX_CAPACITY_WAIT", "12m")
RUNTIME_CA = env.string("RUNTIME_CA", "")
RUNTIME_NODE_PORT = env.integer("RUNTIME_NODE_PORT", 7443, minimum=1, maximum=65535)
if SANDBOX_BACKEND == "kubernetes":
    if "-----BEGIN CERTIFICATE-----" not in RUNTIME_CA:
        raise ImproperlyConfigured(
            "RUNTIME_CA: required with SANDBOX_BACKEND=kubernetes: the PEM certificate of the CA that signed "
            "every lab node's runtimed certificate (RUNTIME_CA_FILE: a file holding it; docs/scaling-out.md)"
        )
    if not 10 <= SANDBOX_CAPACITY_WAIT <= 780:
        raise ImproperlyConfigured(
            "SANDBOX_CAPACITY_WAIT: between 10s and 13m (a provisioning task waits that long for room, "
            f"within its own 14-minute limit); got {SANDBOX_CAPACITY_WAIT}s"
        )

# --- labs -------------------------------------------------------------------

LAB_IDLE_TIMEOUT = env.duration("LAB_IDLE_TIMEOUT", "30m")
LAB_MAX_DURATION = env.duration("LAB_MAX_DURATION", "2h")
LAB_WARN_BEFORE = env.duration("LAB_WARN_BEFORE", "5m")
LAB_MAX_LIVE_PER_STUDENT = env.integer("LAB_MAX_LIVE_PER_STUDENT", 2, minimum=1)
LAB_MAX_TERMINALS = env.integer("LAB_MAX_TERMINALS", 4, minimum=1, maximum=16)
LAB_PROVISION_ATTEMPTS = env.integer("LAB_PROVISION_ATTEMPTS", 3, minimum=1)
# Resumable labs: a paused lab's sandbox is kept on disk this long, and one student's paused
# labs may keep at most this much disk (the allocated size of their sandboxes' disk images).
LAB_PAUSED_RETENTION = env.duration("LAB_PAUSED_RETENTION", "7d")
LAB_PAUSED_QUOTA = env.size("LAB_PAUSED_QUOTA", "2G")
TERMINAL_MAX_MESSAGE = env.integer("TERMINAL_MAX_MESSAGE", 64 * 1024, minimum=1024)
TERMINAL_INPUT_RATE = env.integer("TERMINAL_INPUT_RATE", 256 * 1024, minimum=1024)
# Output flow control: bytes sent to the browser but not yet written by xterm.js.
TERMINAL_HIGH_WATERMARK = env.integer("TERMINAL_HIGH_WATERMARK", 512 * 1024, minimum=4096)
TERMINAL_LOW_WATERMARK = env.integer("TERMINAL_LOW_WATERMARK", 128 * 1024, minimum=1024)
if TERMINAL_LOW_WATERMARK >= TERMINAL_HIGH_WATERMARK:
    raise ImproperlyConfigured("TERMINAL_LOW_WATERMARK: must be below TERMINAL_HIGH_WATERMARK")

# --- grading ------------------------------------------------------------------

GRADER_CHECKS_PER_MINUTE = env.integer("GRADER_CHECKS_PER_MINUTE", 20, minimum=1)
GRADER_REQUEUE_AFTER = env.integer("GRADER_REQUEUE_AFTER", 60, minimum=5)
GRADER_DOCKER_URL = env.string("GRADER_DOCKER_URL", "")
GRADER_KUBECONFIG = env.string("GRADER_KUBECONFIG", "")

# --- the live class view (courses/classview.py) -------------------------------

CLASS_STUCK_FAILED_CHECKS = env.integer("CLASS_STUCK_FAILED_CHECKS", 3, minimum=1)
CLASS_STUCK_IDLE = env.duration("CLASS_STUCK_IDLE", "10m")
CLASS_VIEW_POLL = env.integer("CLASS_VIEW_POLL", 5, minimum=1, maximum=300)

# --- accounts ---------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "courses:home"
LOGOUT_REDIRECT_URL = "courses:home"
DEMO_PASSWORD = env.string("DEMO_PASSWORD", "kubelab-demo")
SIGNUP_OPEN = env.boolean("SIGNUP_OPEN", True)

EMAIL_BACKEND = env.string("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.string("EMAIL_HOST", "localhost")
EMAIL_PORT = env.port("EMAIL_PORT", 25)
EMAIL_HOST_USER = env.string("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env.string("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env.boolean("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env.string("DEFAULT_FROM_EMAIL", "kubelab@localhost")

# --- i18n, static -----------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.string("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.string("STATIC_ROOT", str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

# --- security -----------------------------------------------------------------

SECURE_HTTPS = env.boolean("SECURE_HTTPS", False)
SESSION_COOKIE_SECURE = SECURE_HTTPS
CSRF_COOKIE_SECURE = SECURE_HTTPS
# Under HTTPS the platform's cookies are __Host- cookies: a browser takes one only from this
# host itself (Secure, Path=/, no Domain), so a page on a sibling or child name -- a student's
# app under PREVIEW_HOST included -- cannot plant a session or CSRF cookie here (cookie tossing).
SESSION_COOKIE_NAME = "__Host-sessionid" if SECURE_HTTPS else "sessionid"
CSRF_COOKIE_NAME = "__Host-csrftoken" if SECURE_HTTPS else "csrftoken"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SECURE_HTTPS else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "SAMEORIGIN"
SESSION_COOKIE_HTTPONLY = True

LOG_LEVEL = env.string("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL: expected DEBUG, INFO, WARNING or ERROR; got {LOG_LEVEL!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
