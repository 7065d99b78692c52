"""
Servers and fixtures shared by the suite.

The suite starts a throwaway PostgreSQL and points the test database at it,
so the in-process tests run against the database production uses. When a
server cannot start, its tests skip locally and fail under ``CI=true``: a
skipped test proves nothing in CI.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections

from counterproject.settings import database_from_url, redis_cache
from counters.models import GLOBAL, Counter

from .servers import PostgresCluster, RedisServer, gunicorn

IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(message: str):
    """Skip the test for lack of a server, or fail it under CI=true."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true: failing instead of skipping)", pytrace=False)
    pytest.skip(message)


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


def started(server, what: str):
    """Start ``server``, or skip/fail the test if it cannot start."""
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        server.destroy()
        unavailable(f"{what} could not start: {exc}")
    return server


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
def redis_cache_settings(settings, redis_server):
    """Cache sessions in the session's Redis, as REDIS_URL does."""
    redis_server.client().flushall()
    settings.CACHES = {"default": redis_cache(redis_server.url)}
    return redis_server


@pytest.fixture(scope="session")
def django_db_modify_db_settings(postgres) -> None:
    """Point the default database at the throwaway PostgreSQL cluster."""
    config = database_from_url(postgres.url("counters"))
    default = settings.DATABASES["default"]
    # Update in place: Django's connection handler holds this same dict.
    default.update(config)
    default["OPTIONS"] = config.get("OPTIONS", {})
    # Drop any wrapper made from the old settings (django.setup() may have
    # opened the default SQLite file); the next use builds a PostgreSQL one.
    connections.close_all()
    try:
        del connections[DEFAULT_DB_ALIAS]
    except AttributeError:
        pass


def database_url() -> str:
    """Return a URL for the test database, for processes the suite starts."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


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
    ):
        log = tmp_path / "gunicorn.log"
        server = gunicorn(
            {
                "DEBUG": "0",
                "SECRET_KEY": "insecure-key-for-tests-only",
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
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
            server.stop()

    return serve


class ServedURL(str):
    """The base URL of a gunicorn the suite started, with its master's pid."""

    def __new__(cls, url: str, master: int):
        served = super().__new__(cls, url)
        served.master = master
        return served


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
