"""
gunicorn configuration: ``gunicorn -c gunicorn.conf.py``.

Production defaults that an operator overrides from the environment (or the
command line, which wins):

- ``GUNICORN_BIND`` (127.0.0.1:8000), ``GUNICORN_WORKERS`` (one worker per
  core), ``GUNICORN_THREADS`` (16 per worker), ``GUNICORN_TIMEOUT`` (30 s),
  ``GUNICORN_GRACEFUL_TIMEOUT`` (30 s), ``GUNICORN_KEEPALIVE`` (5 s; 0 turns
  keep-alive off). Each other number must be 1 or more; a bad value stops
  the master with one line naming the variable.
- Not ``WEB_CONCURRENCY``: gunicorn parses that one itself, before this file
  runs, and a bad value ends in its traceback (#12).
- Graceful restarts: ``kill -HUP <master>`` replaces the workers after they
  finish their requests; ``kill -TERM`` stops after at most the graceful
  timeout. A worker that dies is replaced by the master.
- Under ``-k asgi`` on TCP addresses, each worker listens on a socket of its
  own (``SO_REUSEPORT``), so that the kernel spreads connections over the
  workers; a port another server holds stops the master with one line.
- Access and error logs go to stdout in the project's one log format
  (``LOG_FORMAT``: text, or json with Django logging each answer).
- ``PROMETHEUS_MULTIPROC_DIR``: where the workers keep their metrics (#25);
  by default a directory of the master's own, removed when it exits.
"""

import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "counterproject.settings")


def _load_settings():
    """Load Django's settings, or exit with one line naming what to fix."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.SECRET_KEY  # noqa: B018 - reading it loads the settings
    except ImproperlyConfigured as exc:
        sys.exit(f"Error: {exc}")
    return settings


def _setting(name: str, default: int, *, minimum: int = 1) -> int:
    """Return a setting of ``minimum`` or more from the environment, or exit."""
    from django.core.exceptions import ImproperlyConfigured

    from counterproject.env import env_int

    # 0 would mean no workers, no threads (a worker that fails to boot) or
    # no timeout: never what an operator means. Only keep-alive takes 0 (off).
    try:
        return env_int(name, default=default, minimum=minimum)
    except ImproperlyConfigured as exc:
        sys.exit(f"Error: {exc}")


def _bind(name: str, default: str) -> str:
    """Return an address to listen on from the environment, or exit naming it."""
    from counterproject.env import parse_integer

    raw = os.environ.get(name, "").strip() or default
    if raw.startswith(("unix:", "fd://")):
        return raw
    host, colon, port = raw.rpartition(":")
    try:
        valid = bool(colon and host) and 1 <= parse_integer(port) <= 65535
    except ValueError:
        valid = False
    if not valid:
        sys.exit(
            f"Error: Set {name} to HOST:PORT (such as 127.0.0.1:8000) or "
            f"unix:PATH, not {raw!r}."
        )
    return raw


# Settings first: a configuration mistake stops the master before any worker.
_settings = _load_settings()

wsgi_app = "counterproject.wsgi:application"
bind = _bind("GUNICORN_BIND", "127.0.0.1:8000")
# One process per core, each serving many requests at once: the counter is
# correct across both because its state lives in the database, and the
# requests of a worker share one transaction per batch of takes.
workers = _setting("GUNICORN_WORKERS", multiprocessing.cpu_count())
# On PostgreSQL, gevent: its greenlets wait for the database without a
# thread each, so a worker batches the takes of every waiting request, and it
# served the take faster than 16 threads in every run (docs/benchmarks.md).
# On SQLite, threads: a call into SQLite cannot yield to other greenlets, so
# one waiting for another process's write lock would stall its whole worker.
# ``-k gthread``, ``-k gevent`` and ``-k asgi counterproject.asgi:application``
# each work with no other change.
_sqlite = _settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
worker_class = "gthread" if _sqlite else "gevent"
threads = _setting("GUNICORN_THREADS", 16)
timeout = _setting("GUNICORN_TIMEOUT", 30)
graceful_timeout = _setting("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _setting("GUNICORN_KEEPALIVE", 5, minimum=0)
accesslog = "-"
errorlog = "-"
# Manage the master with signals (HUP, TERM); a control socket at one fixed
# path would be shared by every master on the host.
control_socket_disable = True


def on_starting(server):
    """
    Warn if the workers' connection pools exceed the database's
    ``max_connections``; spread an ASGI server's connections over its
    workers; start the naive demo's Manager in the master, for its workers
    to share.
    """
    _warn_unless_pools_fit(server)
    _empty_metrics_dir()
    if _spreads_connections(server.cfg):
        # A port another server holds would make each worker fail to bind,
        # and the master replace it, forever: stop here with one line.
        for address in server.cfg.address:
            _check_free(address)
        server.cfg.set("reuse_port", True)
    if _settings.COUNTERS_NAIVE_DEMO:
        # Before the first fork, so that every worker inherits it (#13).
        from naive_demo import manager as naive_manager

        server.naive_manager = naive_manager.start()


def _warn_unless_pools_fit(server) -> None:
    """Log the pool check's warning, if any, and go on starting (#23)."""
    # The test of manage.py check --deploy, with the workers gunicorn will
    # really start: the command line's --workers is known only here. Not
    # through Django's checks: they import django.db (see capacity.py).
    from counterproject.postgresql.capacity import HINT, WARNING_ID, pool_shortfall

    database = _settings.DATABASES["default"]
    if (
        database["ENGINE"] != "counterproject.postgresql"
        or WARNING_ID in _settings.SILENCED_SYSTEM_CHECKS
    ):
        return
    shortfall = pool_shortfall(database, server.cfg.workers)
    if shortfall is not None:
        server.log.warning("%s %s (%s)", shortfall, HINT, WARNING_ID)


def on_reload(server):
    """Keep each ASGI worker's own socket across ``kill -HUP``."""
    # The reload reads this file and the command line again, and the master
    # holds no socket to hand new workers: they must make their own again.
    if _spreads_connections(server.cfg):
        server.cfg.set("reuse_port", True)


def _spreads_connections(cfg) -> bool:
    """
    Whether each worker should listen on a socket of its own (SO_REUSEPORT).

    gunicorn's ASGI worker accepts every connection waiting when it wakes:
    on the one socket all workers share, one of them can take a whole burst
    of clients while the others idle (57, 59 and 60 of 60 connections opened
    at once, in three tries with two workers).
    With a socket each, the kernel spreads new connections over the
    workers. Only for TCP addresses that gunicorn binds itself: each worker
    would replace the last one's Unix socket file, and a socket handed over
    by systemd or a re-executing master is already bound.
    """
    from gunicorn.workers.gasgi import ASGIWorker

    return (
        issubclass(cfg.worker_class, ASGIWorker)
        and all(isinstance(address, tuple) for address in cfg.address)
        and not {"LISTEN_FDS", "GUNICORN_FD"} & set(os.environ)
        and hasattr(socket, "SO_REUSEPORT")
    )


def _check_free(address: tuple) -> None:
    """Exit with one line if ``address`` cannot be bound (another server)."""
    host, port = address[:2]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As gunicorn binds, but without SO_REUSEPORT: a server that set it
        # too would otherwise share the port, and its clients, silently.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            sys.exit(f"Error: Cannot listen on {host}:{port}: {exc.strerror}.")


def _empty_metrics_dir() -> None:
    """Remove the figures of an earlier run: they would add up with these."""
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.db"):
        old.unlink()


def child_exit(server, worker):
    """
    Keep what a worker that ended counted (its counters and histograms go on
    adding up), but not its gauges, which count what it held.
    """
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Stop the naive demo's Manager, if any; remove the master's metrics."""
    manager = getattr(server, "naive_manager", None)
    if manager is not None:
        from naive_demo import manager as naive_manager

        naive_manager.stop(manager)
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if directory.name.startswith(METRICS_DIR_PREFIX) and directory.parent == Path(
        tempfile.gettempdir()
    ):
        shutil.rmtree(directory, ignore_errors=True)


def post_worker_init(worker):
    """
    Bound every wait of the worker for PostgreSQL, and make a gevent
    worker's waits and turns fair to its other requests.
    """
    # psycopg2 waits through counterproject.postgresql.waiting: each wait
    # ends at DATABASE_QUERY_DEADLINE, and under gevent it waits on the hub
    # (inside libpq, one slow query would stall every request of the worker).
    from counterproject.postgresql.waiting import set_deadline

    set_deadline(_settings.DATABASE_QUERY_DEADLINE)
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        from counterproject.turnstile import Turnstile

        worker.after_request = Turnstile().wait


def post_request(worker, req, environ, resp):
    """
    Under gevent, let the connections that waited for I/O go first after
    each request, so that a client flooding cheap requests on kept-alive
    connections starves no other (#23; counterproject/turnstile.py).
    """
    # The threaded worker puts a kept-alive connection back in its poller
    # after each request, and asyncio's loop takes turns: they need nothing.
    after_request = getattr(worker, "after_request", None)
    if after_request is not None:
        after_request()


# The project's one logging configuration (counterproject/settings.py), with
# gunicorn's own loggers in it.
logconfig_dict = _settings.LOGGING

# Prometheus' multiprocess mode (#25): every worker writes its figures to
# files in this directory, and /metrics adds them up. Set at the end of this
# file, so that a start stopped by a bad setting leaves no directory, and
# before anything imports prometheus_client, which reads it once. A
# directory of the master's own unless PROMETHEUS_MULTIPROC_DIR names one
# (one per master: on_starting empties it).
METRICS_DIR_PREFIX = "counters-metrics-"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=METRICS_DIR_PREFIX)
