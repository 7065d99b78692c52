"""
Servers and fixtures shared by the suite.

A session runs the in-process tests on one database, chosen with
``--database``:

- ``postgresql`` (the default): the suite starts a throwaway PostgreSQL and
  points the test database at it, and runs every test, including those that
  serve the project with gunicorn over HTTP;
- ``sqlite``: the embedded default, a file-backed SQLite in WAL mode with
  ``BEGIN IMMEDIATE`` (the project's own settings), and only the in-process
  database tests; those that need PostgreSQL itself are deselected.

``make test`` runs both sessions, as django-sequences runs its tests once per
backend. A test needs PostgreSQL when it is marked ``postgresql`` or asks for
the ``postgres`` server. When a server cannot start, its tests skip locally
and fail under ``CI=true``: a skipped test proves nothing in CI.
"""

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from counterproject.database_url import database_from_url
from counterproject.settings import redis_cache
from counterproject.testing import netfaults, servers
from counterproject.testing.servers import PostgresCluster, RedisServer, gunicorn
from counters.models import GLOBAL, Counter

from . import support
from .support import POSTGRESQL, SQLITE, ServedURL, database_url, started, unavailable


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--database",
        choices=(POSTGRESQL, SQLITE),
        default=POSTGRESQL,
        help="the database of the in-process tests; sqlite runs only those",
    )


def on_sqlite(config) -> bool:
    return config.getoption("database") == SQLITE


def pytest_configure(config) -> None:
    support.SESSION_DATABASE = config.getoption("database")


def pytest_collection_modifyitems(config, items) -> None:
    """Mark the tests that need PostgreSQL; on SQLite, keep the others only."""
    for item in items:
        if "postgres" in item.fixturenames:
            item.add_marker(pytest.mark.postgresql)
    if not on_sqlite(config):
        return
    kept, deselected = [], []
    for item in items:
        in_process_database_test = (
            item.get_closest_marker("django_db") is not None
            or {"db", "transactional_db"} & set(item.fixturenames)
        ) and "serve" not in item.fixturenames
        if in_process_database_test and not item.get_closest_marker("postgresql"):
            kept.append(item)
        else:
            deselected.append(item)
    config.hook.pytest_deselected(items=deselected)
    items[:] = kept


def pytest_sessionfinish(session, exitstatus) -> None:
    # A selection (make test PYTEST_ARGS=…) with no in-process database test
    # leaves the SQLite session nothing to run: that is a success.
    if on_sqlite(session.config) and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """Start a throwaway PostgreSQL cluster for the whole session."""
    try:
        cluster = PostgresCluster(max_connections=300)
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        unavailable(f"PostgreSQL could not start: {exc}")
    started(cluster, "PostgreSQL")
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Start a throwaway Redis for the whole session."""
    server = started(RedisServer(), "Redis")
    yield server
    server.destroy()


@pytest.fixture
def redis_outage_server() -> Iterator[RedisServer]:
    """Start a Redis of the test's own, which the test may stop and restart."""
    server = started(RedisServer(), "Redis")
    yield server
    server.destroy()


@pytest.fixture
def network() -> Iterator[netfaults.Network]:
    """Return a network fault harness of the test's own, closed after it (#24)."""
    ok, reason = netfaults.available()
    if not ok:
        unavailable(f"The network fault harness cannot run: {reason}")
    with netfaults.Network() as harness:
        yield harness


@pytest.fixture
def redis_cache_settings(settings, redis_server):
    """Cache sessions in the session's Redis, as REDIS_URL does."""
    redis_server.client().flushall()
    settings.CACHES = {"default": redis_cache(redis_server.url)}
    return redis_server


@pytest.fixture(scope="session")
def django_db_modify_db_settings(request, tmp_path_factory) -> None:
    """Point the default database at PostgreSQL or an SQLite file (--database)."""
    if on_sqlite(request.config):
        # A file, never :memory:, so that every thread and process the tests
        # start opens the same database, each with its own connection.
        path = tmp_path_factory.mktemp("sqlite") / "counters.sqlite3"
        config = database_from_url(f"sqlite:///{path}")
        test = {**settings.DATABASES["default"].get("TEST", {}), "NAME": str(path)}
        config["TEST"] = test
    else:
        # Asked for here, not as an argument: a test that names ``postgres``
        # needs PostgreSQL itself; every database test does not.
        postgres = request.getfixturevalue("postgres")
        config = database_from_url(postgres.url("counters"))
        # The suite's own process runs up to 100 threads at once, some holding
        # their connection across many takes; a gunicorn worker has at most
        # its GUNICORN_THREADS (16), as many as the production pool.
        config["OPTIONS"]["pool_size"] = 64
    default = settings.DATABASES["default"]
    # Update in place: Django's connection handler holds this same dict.
    default.update(config)
    default["OPTIONS"] = config.get("OPTIONS", {})
    # Drop any wrapper made from the old settings (django.setup() may have
    # opened the default SQLite file); the next use builds the chosen one.
    connections.close_all()
    try:
        del connections[DEFAULT_DB_ALIAS]
    except AttributeError:
        pass


@pytest.fixture
def global_counter(db) -> Counter:
    """Return the ``global`` counter as migrated (flushes may have removed it)."""
    counter, _ = Counter.objects.update_or_create(
        name=GLOBAL, defaults={"value": 0, "public": True, "audit_takes": True}
    )
    return counter


@pytest.fixture
def serve(tmp_path):
    """Return a context manager that serves the project with gunicorn."""

    @contextmanager
    def serve(
        env: dict[str, str],
        *,
        workers: int = 4,
        threads: int | None = 8,
        args: tuple[str, ...] = (),
        graceful: bool = False,
    ):
        """
        Serve the project; stop it quickly afterwards, or with ``graceful``
        as production does (SIGTERM), for a test that reads its last lines.
        """
        log = tmp_path / "gunicorn.log"
        server = gunicorn(
            {
                "DEBUG": "0",
                "SECRET_KEY": servers.SECRET_KEY,
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                # Now and then a gevent worker stays in its hub when the
                # server stops, until the master kills it after this: 30 s
                # by default, 5 s here, where no request is in flight by then.
                "GUNICORN_GRACEFUL_TIMEOUT": "5",
                **env,
            },
            log=log,
            workers=workers,
            threads=threads,
            args=args,
        )
        try:
            server.start()
        except Exception as exc:
            server.stop()
            output = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"gunicorn did not start: {exc}\n{output}") from exc
        try:
            yield ServedURL(server.base_url, server.process.pid)
        finally:
            server.stop(stop_signal=signal.SIGTERM if graceful else None)

    return serve


@pytest.fixture
def served_postgres(transactional_db, serve):
    """Serve the project with gunicorn on the test PostgreSQL database."""
    with serve({"DATABASE_URL": database_url()}) as base_url:
        yield base_url


@pytest.fixture(scope="session", autouse=True)
def collected_static(django_db_blocker) -> None:
    """Collect static files once: production storage needs their manifest."""
    from django.core.management import call_command

    call_command("collectstatic", interactive=False, verbosity=0)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test (``rep_call``…) for its fixtures."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
