"""
DATABASE_URL, and the DATABASE_POOL_* variables, as a DATABASES entry.

``database_from_url`` takes ``postgres://`` (one server or, as libpq does,
several) and ``sqlite:///`` URLs, and adds the project's defaults for each:
bounded waits on PostgreSQL, immediate transactions and WAL on SQLite. A URL
or value it cannot use raises ``ImproperlyConfigured`` with one sentence
naming the variable, at start-up rather than at the first connection.
"""

import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from counterproject.env import SECONDS, missing, positive_integer, positive_seconds

# manage.py's directory (settings.BASE_DIR): sqlite:///name is relative to it.
PROJECT_DIR = Path(__file__).resolve().parent.parent

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
    # DATABASE_QUERY_DEADLINE, in settings.py) ...
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

URL_FORM = " to postgres://user:password@host:port/name or sqlite:///path"

# --- The pool ---------------------------------------------------------------

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


# --- Several servers (#15) --------------------------------------------------

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
        return url, []  # refused by database_from_url, with the URL's form
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


# --- The entry --------------------------------------------------------------


def database_from_url(url: str) -> dict[str, Any]:
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
        config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=0))
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
        given = config.get("OPTIONS", {})
        config["OPTIONS"] = {**POSTGRES_OPTIONS, **given, **pool}
        if "options" in given:
            # Server settings given in the URL come after the project's own,
            # and win where they name the same one; the rest still hold.
            config["OPTIONS"]["options"] = (
                f"{POSTGRES_OPTIONS['options']} {given['options']}"
            )
        check_libpq_options(config)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # sqlite:///name is relative to the project, sqlite:////name absolute.
        config["NAME"] = str(PROJECT_DIR / config["NAME"])
        given = {
            key: value
            for key, value in config.get("OPTIONS", {}).items()
            if key not in POOL_OPTIONS  # checked above; SQLite has no pool
        }
        config["OPTIONS"] = {**SQLITE_OPTIONS, **given}
    return config
