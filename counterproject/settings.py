"""
Settings for counterproject, read from the environment.

The embedded default (no environment) is an SQLite file beside manage.py and
no shared cache; production sets DATABASE_URL, REDIS_URL, SECRET_KEY and
ALLOWED_HOSTS. The same module serves both, so the tests run production code.
"""

import os
import sys
from pathlib import Path

from counterproject.database_url import database_from_url
from counterproject.env import (
    env_flag,
    env_int,
    env_list,
    env_networks,
    env_rate,
    env_seconds,
    missing,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Core -------------------------------------------------------------------

DEBUG = env_flag("DEBUG", default=False)
SECRET_KEY = os.environ.get("SECRET_KEY") or (
    "django-insecure-local-only"
    if DEBUG
    else missing("SECRET_KEY", " (or DEBUG=1 for local development)")
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default="localhost,127.0.0.1")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "counters",
    # The project's own deployment checks (counterproject/checks.py).
    "counterproject",
    # manage.py loadtest; its client libraries are the loadtest extra.
    "loadtest",
]

MIDDLEWARE = [
    # First: it times, counts and logs every answer, static files too (#25).
    "counterproject.middleware.RequestObservationMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "counterproject.middleware.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "counterproject.urls"
WSGI_APPLICATION = "counterproject.wsgi.application"

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
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------

# Seconds a served request waits for PostgreSQL at most in any one wait,
# connecting included: a server cut off by the network, or a primary whose
# synchronous standby is, answers nothing, and no server setting ends that
# wait (#24; counterproject/postgresql/waiting.py). Above the pool's
# lock_timeout (10 s), so that a lock wait ends as PostgreSQL's own error.
# gunicorn's workers apply it; commands (a long migration) wait as long as
# their statements take.
DATABASE_QUERY_DEADLINE = env_seconds("DATABASE_QUERY_DEADLINE", default=15.0)

# DATABASE_URL, and DATABASE_POOL_SIZE, DATABASE_POOL_TIMEOUT and
# DATABASE_POOL_MAX_AGE for PostgreSQL's pool: counterproject/database_url.py
# reads them, with the defaults of each database and the reasons for them.
DATABASES = {
    "default": database_from_url(
        os.environ.get("DATABASE_URL") or "sqlite:///db.sqlite3"
    )
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, sessions and messages -------------------------------------------


def redis_cache(url: str) -> dict:
    """Return the CACHES entry for the Redis at ``url`` (django-redis)."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        missing("REDIS_URL", " to redis://host:port/db")
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": url,
        # Every key this project writes starts with "counters:", so the Redis
        # can be shared with other applications.
        "KEY_PREFIX": "counters",
        "OPTIONS": {
            # Short timeouts: a Redis that is down or unreachable costs a
            # request a fraction of a second, not a worker timeout.
            "SOCKET_CONNECT_TIMEOUT": 0.5,
            "SOCKET_TIMEOUT": 0.5,
            # An outage turns reads into misses and writes into logged no-ops;
            # sessions then fall back to the database.
            "IGNORE_EXCEPTIONS": True,
        },
    }


REDIS_URL = os.environ.get("REDIS_URL")
CACHES = {
    "default": redis_cache(REDIS_URL)
    if REDIS_URL
    # No shared cache: a per-process cache (LocMemCache) would give each
    # gunicorn worker its own copy of shared state.
    else {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True

# Sessions live in the database, cached in Redis when REDIS_URL is set; the
# engine keeps the per-user counter safe from concurrent writers (#3).
SESSION_ENGINE = "counters.sessions"
# Flash messages are session data, server-side like the rest of the session.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
CSRF_FAILURE_VIEW = "counterproject.errors.csrf_failure"

# --- Rate limits for anonymous clients (#23) --------------------------------

# Numbers one client may take a minute, page and API together: a person
# clicking takes a few; a script taking as fast as it can is what this stops.
# Staff in the admin and operators at a shell are never limited.
COUNTERS_TAKE_RATE = env_rate("COUNTERS_TAKE_RATE", default="60/minute")
# Changes of a visitor's own counter (it costs a session write each).
COUNTERS_VISITOR_RATE = env_rate("COUNTERS_VISITOR_RATE", default="120/minute")
# The client is the connecting address, unless this many proxies in front
# each append the address they saw to X-Forwarded-For: the client is then
# the address the outermost of them saw. Any other part of the header is
# the client's to forge, and is ignored.
COUNTERS_TRUSTED_PROXIES = env_int("COUNTERS_TRUSTED_PROXIES", default=0, minimum=0)

# --- Behind a TLS-terminating proxy ------------------------------------------

# HTTPS=1 when a proxy in front terminates TLS and sets X-Forwarded-Proto:
# redirect plain HTTP, send HSTS, and keep cookies off plain HTTP. Off by
# default, so that the embedded default works on http://127.0.0.1:8000/.
HTTPS = env_flag("HTTPS", default=False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # Load balancers probe the health check, and Prometheus scrapes each app
    # server, over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # 0 is how a site tells browsers to forget its HSTS: allowed.
    SECURE_HSTS_SECONDS = env_int("HSTS_SECONDS", default=31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    # Preloading is built into browsers, takes months to undo and binds every
    # subdomain, so it is an explicit opt-in (#12).
    SECURE_HSTS_PRELOAD = env_flag("HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        # check --deploy recommends preload (W021); leaving it off is this
        # project's deliberate default.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

# --- Demonstrations -----------------------------------------------------------

# Serve the naive counters at /api/naive/…/increment/: the module-level object
# (#5) and the alternatives people suggest for it (#13).
COUNTERS_NAIVE_DEMO = env_flag("COUNTERS_NAIVE_DEMO", default=False)
if COUNTERS_NAIVE_DEMO:
    # Installed and routed (counterproject/urls.py) only on demand.
    INSTALLED_APPS.append("naive_demo")

# --- Internationalization ---------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed files after collectstatic, served by WhiteNoise.
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Logging ----------------------------------------------------------------

# One format for every log line: Django's, the app's and gunicorn's
# (gunicorn.conf.py uses LOG_FORMATTER too). LOG_FORMAT=json makes each line
# one JSON object (python-json-logger), for log collectors, and logs each
# answer with its method, path, status, duration and, for a take, the
# counter and number (counterproject.middleware), in place of gunicorn's
# access log; text (the default) stays readable, with gunicorn's access log.
# gunicorn logs to stdout; anything else, a management command above all,
# keeps its stdout for its output (a new value, JSON), so log lines go to
# stderr. The choice is by what runs, not by the program's name: manage.py,
# python -m django and django-admin are all commands (#12). gunicorn has
# loaded its own modules before any configuration or application code runs.
LOG_TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LOG_FORMATTERS = {
    "text": {"format": LOG_TEXT},
    "json": {
        "()": "pythonjsonlogger.json.JsonFormatter",
        "fmt": LOG_TEXT,
        "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
    },
}
LOG_FORMAT = os.environ.get("LOG_FORMAT", "").strip().lower() or "text"
if LOG_FORMAT not in LOG_FORMATTERS:
    missing("LOG_FORMAT", " to text or json")
LOG_FORMATTER = LOG_FORMATTERS[LOG_FORMAT]
UNDER_GUNICORN = "gunicorn" in sys.modules
LOG_STREAM = "ext://sys.stdout" if UNDER_GUNICORN else "ext://sys.stderr"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"default": LOG_FORMATTER},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": LOG_STREAM,
            "formatter": "default",
        },
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    # gunicorn.conf.py hands this same dict to gunicorn (logconfig_dict).
    # One line per answer: Django's with more fields in JSON, gunicorn's
    # access log in text.
    "loggers": {
        "counterproject.requests": {
            "level": "INFO" if LOG_FORMAT == "json" else "WARNING"
        },
        "gunicorn.error": {
            "handlers": ["console"],
            "level": "INFO",
            "propagate": False,
        },
        "gunicorn.access": {
            "handlers": ["console"],
            "level": "INFO" if LOG_FORMAT == "text" else "WARNING",
            "propagate": False,
        },
    },
}

# --- Metrics (#25) --------------------------------------------------------------

# /metrics answers the addresses and networks in METRICS_ALLOW
# (comma-separated, such as 10.0.0.0/8,127.0.0.1) and requests bearing
# METRICS_TOKEN ("Authorization: Bearer <token>"); 404 to anyone else, and
# to everyone when neither is set.
METRICS_ALLOW = env_networks("METRICS_ALLOW")
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    missing("METRICS_TOKEN", " to a secret of 16 characters or more")
# Figures are collected only when someone may read them: each costs a little
# on every request (bench/metrics_cost.py). The app (counters.conf) reads it.
COUNTERS_METRICS = bool(METRICS_ALLOW or METRICS_TOKEN)
