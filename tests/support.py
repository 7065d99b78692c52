"""
Helpers the tests share: the test database's URL for the processes they
start, the stored value of a counter, a row lock held by another client, a
server started or the test skipped (failed under ``CI=true``), and one
bounded poll.

Fixtures live in ``conftest.py``; plain functions live here, and test
modules import them from here.
"""

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import psycopg2
import pytest
from django.db import connection

from counterproject.testing import servers
from counterproject.testing.servers import PostgresCluster
from counters.models import GLOBAL, Counter

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRESQL, SQLITE = "postgresql", "sqlite"

# The database of this session (--database), set by conftest.pytest_configure.
SESSION_DATABASE = POSTGRESQL


def examples(count: int) -> int:
    """
    Return how many generated inputs a Hypothesis test draws in this session.

    All of them on PostgreSQL; a quarter on SQLite, which runs the same
    parsing and checks and differs only in the statements, so that the two
    sessions stay within the suite's time.
    """
    return count if SESSION_DATABASE == POSTGRESQL else max(1, count // 4)


def unavailable(message: str):
    """Skip the test for lack of a server, or fail it under CI=true."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true: failing instead of skipping)", pytrace=False)
    pytest.skip(message)


def started(server, what: str):
    """Start ``server``, or skip/fail the test if it cannot start."""
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server"
        server.destroy()
        unavailable(f"{what} could not start: {exc}")
    return server


def database_url() -> str:
    """Return a URL for the test database, for processes the suite starts."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"  # absolute: sqlite:////tmp/…
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def database_env() -> dict[str, str]:
    """Return the settings of a process the suite starts on the test database."""
    return {"DATABASE_URL": database_url(), "SECRET_KEY": servers.SECRET_KEY}


def manage_on_test_database(*args: str, **options):
    """Run ``manage.py *args`` in a subprocess on the test database."""
    return servers.manage(*args, env=database_env(), **options)


def stored_value(name: str = GLOBAL) -> int:
    """Return the named counter's value as the database holds it now."""
    return Counter.objects.get(name=name).value


@contextmanager
def row_lock_held(postgres: PostgresCluster, name: str) -> Iterator:
    """
    Hold the named counter's row lock from a connection of its own (another
    client's transaction) until the block ends, or until the block calls the
    function it is given.
    """
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        holder = psycopg2.connect(postgres.url(connection.settings_dict["NAME"]))
        try:
            with holder, holder.cursor() as cursor:  # one transaction
                cursor.execute(
                    "SELECT 1 FROM counters_counter WHERE name = %s FOR UPDATE",
                    [name],
                )
                holding.set()
                release.wait(30)
        finally:
            holder.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(30), "the row lock was not taken within 30 s"
        yield release.set
    finally:
        release.set()
        holder.join(30)


def transactions_of_takes(name: str) -> int:
    """
    Return how many transactions wrote the counter's audit entries after its
    first: PostgreSQL stamps the rows one transaction writes with one xmin.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(DISTINCT xmin::text) FROM counters_counterevent"
            " WHERE counter_name = %s AND new_value > 1",
            [name],
        )
        [(transactions,)] = cursor.fetchall()
    return transactions


class ServedURL(str):
    """The base URL of a gunicorn the suite started, with its master's pid."""

    def __new__(cls, url: str, master: int):
        served = super().__new__(cls, url)
        served.master = master
        return served

    @property
    def port(self) -> int:
        return urlsplit(self).port

    def workers(self) -> set[int]:
        """Return the pids of the master's workers."""
        result = subprocess.run(
            ["pgrep", "-P", str(self.master)], capture_output=True, text=True
        )
        return {int(pid) for pid in result.stdout.split()}


def wait_for(
    predicate: Callable[[], object], seconds: float = 20.0, interval: float = 0.25
) -> bool:
    """Poll ``predicate`` until it holds (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
