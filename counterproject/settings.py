"""
Settings for counterproject, read from the environment.

The embedded default (no environment) is an SQLite file beside manage.py and
no shared cache; production sets DATABASE_URL, REDIS_URL, SECRET_KEY and
ALLOWED_HOSTS. The same module serves both, so the tests run production code.
"""

import ipaddress
import os
import re
import sys
import urllib.parse
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

# The project's one reading of a number typed as text (plain Python: it
# imports nothing from Django).
from counters.parsing import parse_integer

BASE_DIR = Path(__file__).resolve().parent.parent


def env_flag(name: str, *, default: bool) -> bool:
    """Return the boolean environment variable ``name`` (``1``/``0``)."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"Set {name} to 1 or 0, not {raw!r}.")


def env_list(name: str, *, default: str) -> list[str]:
    """Return the comma-separated environment variable ``name`` as a list."""
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_int(name: str, *, default: int, minimum: int = 1) -> int:
    """Return the whole-number environment variable ``name``, at least ``minimum``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        number = parse_integer(raw)
    except ValueError:
        raise ImproperlyConfigured(
            f"Set {name} to a whole number, not {raw!r}."
        ) from None
    if number < minimum:
        raise ImproperlyConfigured(f"Set {name} to {minimum} or more, not {raw!r}.")
    return number


def missing(name: str, hint: str = ""):
    """Raise ImproperlyConfigured naming the variable that must be set."""
    raise ImproperlyConfigured(f"Set the {name} environment variable{hint}.")


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

SQLITE_OPTIONS = {
    # select_for_update() is a no-op on SQLite, so take the write lock at
    # BEGIN: concurrent writers then queue on the busy timeout instead of
    # failing with "database is locked" when a read lock cannot be upgraded.
    "transaction_mode": "IMMEDIATE",
    # Seconds a writer waits for the lock held by another worker process.
    "timeout": 20,
    # WAL lets readers go on while one writer commits; NORMAL sync is durable
    # across application crashes, the usual pairing with WAL.
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}

POSTGRES_OPTIONS = {
    # A database that does not answer turns into an error (and a 503) in
    # seconds instead of a request that hangs, and with it every take
    # batched behind it (#24; docs/deployment.md, "Network faults"):
    # connecting (a command's; a server's waits end at
    # DATABASE_QUERY_DEADLINE, below) ...
    "connect_timeout": 5,
    # ... data sent and not acknowledged for 10 s (a peer cut off mid-query;
    # Linux's own retransmissions would take about 15 minutes) ...
    "tcp_user_timeout": 10_000,
    # ... an idle connection whose peer is gone: probes after 10 s of
    # silence, 3 s apart, 3 unanswered (19 s) ...
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
    # ... a row lock held elsewhere; and, on the server, a session left idle
    # in a transaction (an app server cut off while it held the counter's
    # row lock) ends after 30 s, letting the lock go.
    "options": "-c lock_timeout=10s -c idle_in_transaction_session_timeout=30s",
}

SUPPORTED_ENGINES = {
    "django.db.backends.postgresql",
    "django.db.backends.sqlite3",
}


# The pool of PostgreSQL connections of each worker process, whatever its kind
# (threads, gevent, ASGI): its size, how long a request waits for one of its
# connections, and how long one serves. DATABASE_POOL_SIZE,
# DATABASE_POOL_TIMEOUT and DATABASE_POOL_MAX_AGE (or the URL's pool_size,
# pool_timeout and pool_max_age) set them.
POOL_OPTIONS = {
    # As many as a gthread worker has threads (GUNICORN_THREADS), so that they
    # never wait for one another: five workers of 16 and the server's reserve
    # fit PostgreSQL's default max_connections of 100. check --deploy and the
    # gunicorn master warn (counterproject.W001) when the workers do not fit.
    "pool_size": 16,
    # Seconds a request waits when all are busy, then it answers 503.
    "pool_timeout": 10,
    # Seconds a connection serves before it is replaced: a backend's caches
    # only grow, and ALTER ROLE/DATABASE … SET reaches only new sessions.
    "pool_max_age": 1800,
}

# Above a day, no pool number makes sense; and a wait longer than
# threading.TIMEOUT_MAX would fail (OverflowError) when the pool is full.
MAX_POOL_SECONDS = 86_400
SECONDS_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def positive_integer(text: str) -> int:
    """Return the whole number 1 or more that ``text`` spells (or ValueError)."""
    number = parse_integer(text)
    if number < 1:
        raise ValueError(f"{text!r} is less than 1.")
    return number


def positive_seconds(text: str) -> float:
    """Return the seconds, above 0 and at most a day, ``text`` spells."""
    # ASCII digits and a point only: float() also takes "nan", "1e3", "1_0".
    if not SECONDS_TEXT.fullmatch(text) or not 0 < float(text) <= MAX_POOL_SECONDS:
        raise ValueError(f"{text!r} is not a number of seconds.")
    return float(text)


SECONDS = f"seconds above 0 and at most {MAX_POOL_SECONDS} (such as 2.5)"

# Seconds a served request waits for PostgreSQL at most in any one wait,
# connecting included: a server cut off by the network, or a primary whose
# synchronous standby is, answers nothing, and no server setting ends that
# wait (#24; counterproject/postgresql/waiting.py). Above the pool's
# lock_timeout (10 s), so that a lock wait ends as PostgreSQL's own error.
# gunicorn's workers apply it; commands (a long migration) wait as long as
# their statements take.
DATABASE_QUERY_DEADLINE = 15.0
if raw_deadline := os.environ.get("DATABASE_QUERY_DEADLINE", "").strip():
    try:
        DATABASE_QUERY_DEADLINE = positive_seconds(raw_deadline)
    except ValueError:
        raise ImproperlyConfigured(
            f"Set DATABASE_QUERY_DEADLINE to {SECONDS}, not {raw_deadline!r}."
        ) from None
# Each pool option: its environment variable, its reader and what it takes.
POOL_VARIABLES = {
    "pool_size": ("DATABASE_POOL_SIZE", positive_integer, "a whole number, 1 or more"),
    "pool_timeout": ("DATABASE_POOL_TIMEOUT", positive_seconds, SECONDS),
    "pool_max_age": ("DATABASE_POOL_MAX_AGE", positive_seconds, SECONDS),
}


def read_pool_option(key: str, text: str, where: str) -> int | float:
    """Return the pool option ``key`` that ``text`` spells, or refuse it."""
    _, read, what = POOL_VARIABLES[key]
    try:
        return read(text)
    except ValueError:
        raise ImproperlyConfigured(f"Set {where} to {what}, not {text!r}.") from None


def pool_options(url_options: dict) -> dict:
    """
    Return the pool's options: each from its environment variable or the URL
    parameter of the same name (``?pool_size=8``), else the default.

    Both may be set, to the same value only: an operator who changes one of
    them must not find the change silently outweighed by the other.
    """
    options = {}
    for key, default in POOL_OPTIONS.items():
        variable = POOL_VARIABLES[key][0]
        from_env = os.environ.get(variable, "").strip()
        from_url = url_options.get(key)
        if isinstance(from_url, list):
            missing("DATABASE_URL", f" with each parameter once, not {key} twice")
        values = {read_pool_option(key, from_env, variable)} if from_env else set()
        if from_url is not None:
            values.add(read_pool_option(key, str(from_url), f"DATABASE_URL's {key}"))
        if len(values) > 1:
            raise ImproperlyConfigured(
                f"Set {variable} or DATABASE_URL's {key}, not both to different "
                f"values ({from_env!r} and {str(from_url)!r})."
            )
        options[key] = values.pop() if values else default
    return options


URL_FORM = " to postgres://user:password@host:port/name or sqlite:///path"

# One entry of libpq's list of hosts: a name or IPv4 address, or an IPv6
# address in brackets, with an optional port.
HOST_ENTRY = re.compile(
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/?#\[\]@,]+)(?::(?P<port>\d*))?"
)

# What libpq 14 and later accept for target_session_attrs.
SESSION_ATTRS = {
    "any",
    "read-write",
    "read-only",
    "primary",
    "standby",
    "prefer-standby",
}


def split_hosts(url: str) -> tuple[str, list[tuple[str, str]]]:
    """
    Return ``url`` without its list of hosts, and the list's (host, port) pairs.

    libpq's URL form names several servers as ``host1:port1,host2:port2``,
    which no URL parser takes (a port is one number). A URL with one host
    comes back unchanged, with an empty list.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url, []  # refused below, with the URL's expected form
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    if "," not in hostlist:
        return url, []
    hosts = []
    for entry in hostlist.split(","):
        match = HOST_ENTRY.fullmatch(entry)
        port = match and match["port"]
        if not match or (port and not 1 <= int(port) <= 65535):
            missing(
                "DATABASE_URL",
                f" with host:port pairs separated by commas, each port from 1 to "
                f"65535; {entry!r} is not one",
            )
        hosts.append((urllib.parse.unquote(match["host"].strip("[]")), port or ""))
    # The hosts go into HOST and PORT; this stands in for them while the rest
    # of the URL is parsed.
    netloc = f"{userinfo}{at}hosts"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), hosts


def check_libpq_options(config: dict) -> None:
    """Refuse, at start-up, parameters that libpq would refuse at connect."""
    from psycopg2 import ProgrammingError
    from psycopg2.extensions import make_dsn, parse_dsn

    options = {k: v for k, v in config["OPTIONS"].items() if k not in POOL_OPTIONS}
    for name, value in options.items():
        if isinstance(value, list):
            missing("DATABASE_URL", f" with each parameter once, not {name} twice")
    try:
        parse_dsn(make_dsn(**options))
    except ProgrammingError as exc:
        problem = str(exc).strip().removeprefix("invalid dsn: ")
        missing("DATABASE_URL", f" with parameters libpq knows ({problem})")
    attrs = options.get("target_session_attrs", "any")
    if attrs not in SESSION_ATTRS:
        missing(
            "DATABASE_URL",
            f" with target_session_attrs one of {', '.join(sorted(SESSION_ATTRS))}, "
            f"not {attrs!r}",
        )
    timeout = options.get("connect_timeout", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        missing(
            "DATABASE_URL", f" with connect_timeout in whole seconds, not {timeout!r}"
        )


def database_from_url(url: str) -> dict:
    """
    Return the DATABASES entry for ``url`` (PostgreSQL or SQLite).

    A PostgreSQL URL may name several servers, as libpq does
    (``postgres://u:p@h1:5432,h2:5432/name?target_session_attrs=read-write``):
    HOST and PORT then hold the comma-separated lists libpq takes, and each
    new connection goes to the first server that answers as asked (#15).
    """
    url, hosts = split_hosts(url)
    try:
        # Connections are not kept by a thread between requests: each goes
        # back to its process's pool (PostgreSQL) or is closed (SQLite).
        config = dj_database_url.parse(url, conn_max_age=0)
    except ValueError:
        config = {}
    # Read on SQLite too, where they do nothing: a bad value is refused
    # before the day the URL names PostgreSQL.
    pool = pool_options(config.get("OPTIONS", {}))
    if config.get("ENGINE") not in SUPPORTED_ENGINES or (
        hosts and config["ENGINE"] != "django.db.backends.postgresql"
    ):
        missing("DATABASE_URL", URL_FORM)
    if config["ENGINE"] == "django.db.backends.postgresql":
        if hosts:
            config["HOST"] = ",".join(host for host, _ in hosts)
            # An empty entry is libpq's default port; all empty, no list.
            ports = [port for _, port in hosts]
            config["PORT"] = ",".join(ports) if any(ports) else ""
        # Django's backend with a bounded pool per process (#11).
        config["ENGINE"] = "counterproject.postgresql"
        config["OPTIONS"] = {**POSTGRES_OPTIONS, **config.get("OPTIONS", {}), **pool}
        check_libpq_options(config)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # sqlite:///name is relative to the project, sqlite:////name absolute.
        config["NAME"] = str(BASE_DIR / config["NAME"])
        config["OPTIONS"] = {**SQLITE_OPTIONS, **config.get("OPTIONS", {})}
    return config


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

# One rate in the notation of the limits library ("60/minute", "10/2
# minutes"), with s, m, h and d short for second, minute, hour and day.
RATE_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day"}


def env_rate(name: str, *, default: str) -> str | None:
    """Return the rate limit ``name`` as limits' notation, or None for ``off``."""
    from limits import parse

    raw = os.environ.get(name, "").strip() or default
    if raw.lower() == "off":
        return None
    amount, slash, unit = raw.partition("/")
    rate = f"{amount.strip()}/{RATE_UNITS.get(unit.strip(), unit.strip())}"
    try:
        valid = bool(slash) and ";" not in raw and parse(rate).amount > 0
    except ValueError:
        valid = False
    if not valid:
        raise ImproperlyConfigured(
            f"Set {name} to a rate such as 60/minute (or off), not {raw!r}."
        )
    return rate


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

# --- Internationalization ---------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
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
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": LOG_STREAM,
            "formatter": "default",
        },
    },
    "root": {"handlers": ["stdout"], "level": "INFO"},
    # One line per answer, in JSON only: gunicorn's access log has them in text.
    "loggers": {
        "counterproject.requests": {
            "level": "INFO" if LOG_FORMAT == "json" else "WARNING"
        }
    },
}

# --- Metrics (#25) --------------------------------------------------------------

# /metrics answers the addresses and networks in METRICS_ALLOW
# (comma-separated, such as 10.0.0.0/8,127.0.0.1) and requests bearing
# METRICS_TOKEN ("Authorization: Bearer <token>"); 404 to anyone else, and
# to everyone when neither is set.


def env_networks(name: str) -> list:
    """Return the addresses and networks listed in ``name``."""
    networks = []
    for item in env_list(name, default=""):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            missing(name, f" to addresses or networks such as 10.0.0.0/8, not {item!r}")
    return networks


METRICS_ALLOW = env_networks("METRICS_ALLOW")
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    missing("METRICS_TOKEN", " to a secret of 16 characters or more")
# Figures are collected only when someone may read them: each costs a little
# on every request (bench/metrics_cost.py).
METRICS_ENABLED = bool(METRICS_ALLOW or METRICS_TOKEN)
