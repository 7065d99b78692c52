"""The bounded connection pool of counterproject.postgresql (#11, #23)."""

import gc
import json
import sys
import time
import weakref
from contextlib import contextmanager

import pytest
from django.db import OperationalError, connection

from counterproject.postgresql.base import DatabaseWrapper
from counterproject.testing.servers import project_command

from .support import database_env, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def sharing_a_pool(alias: str, time_zone: str | None = None, **pool):
    """Yield a factory of connections sharing one pool with the options ``pool``."""
    settings = {
        **connection.settings_dict,
        "TIME_ZONE": time_zone,
        "OPTIONS": {**connection.settings_dict["OPTIONS"], **pool},
    }
    made = weakref.WeakSet()  # dropping a wrapper must really drop it

    def connect() -> DatabaseWrapper:
        wrapper = DatabaseWrapper(settings, alias=alias)
        made.add(wrapper)
        return wrapper

    yield connect
    for wrapper in list(made):
        wrapper.close()
    connect().close_pool()


@pytest.fixture
def pooled(postgres):
    """Return a factory of connections sharing a pool of 2 (wait 0.2 s)."""
    with sharing_a_pool("pool-test", pool_size=2, pool_timeout=0.2) as connect:
        yield connect


@pytest.fixture
def aging(postgres):
    """Return a factory of connections sharing a pool whose connections age fast."""
    with sharing_a_pool(
        "pool-age-test", pool_size=2, pool_timeout=0.2, pool_max_age=0.1
    ) as connect:
        yield connect


def backend_pid(wrapper: DatabaseWrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_a_full_pool_makes_a_caller_wait_then_fail_with_a_clear_error(pooled):
    first, second, third = pooled(), pooled(), pooled()
    first.ensure_connection()
    second.ensure_connection()
    with pytest.raises(OperationalError) as excinfo:
        third.ensure_connection()
    assert str(excinfo.value) == (
        "No database connection came free within 0.2 s (the pool holds 2)."
    )
    used = first.connection
    first.close()
    third.ensure_connection()
    assert third.connection is used  # handed back and reused, not reopened


def test_a_connection_dropped_without_closing_gives_its_slot_back(pooled):
    lost, kept = pooled(), pooled()
    lost.ensure_connection()
    kept.ensure_connection()
    del lost  # as when a thread ends without closing its connection
    gc.collect()  # a wrapper refers to itself (ops, features): a cycle
    late = pooled()
    late.ensure_connection()
    assert backend_pid(late) != backend_pid(kept)


def test_a_connection_the_server_ended_is_not_handed_out_again(pooled):
    first = pooled()
    ended = backend_pid(first)
    first.close()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [ended])
        gone_or_fail(cursor, ended)
    second = pooled()
    assert backend_pid(second) != ended


def test_a_connection_closed_inside_a_transaction_is_not_reused(pooled):
    first = pooled()
    before = backend_pid(first)
    first.connection.autocommit = False
    with first.connection.cursor() as cursor:
        cursor.execute("SELECT 1")  # psycopg2 opens a transaction
    first.close()
    assert backend_pid(pooled()) != before


def test_a_connection_comes_back_with_nothing_a_request_left_in_it(pooled):
    first = pooled()
    with first.cursor() as cursor:
        cursor.execute("SET statement_timeout = '1234ms'")
        cursor.execute("SET TIME ZONE 'America/New_York'")
        cursor.execute("SELECT pg_advisory_lock(23)")
        cursor.execute("CREATE TEMP TABLE left_behind (n int)")
    used = backend_pid(first)
    first.close()
    second = pooled()
    with second.cursor() as cursor:
        cursor.execute(
            "SELECT pg_backend_pid(), current_setting('statement_timeout'),"
            " current_setting('TimeZone'), current_setting('lock_timeout'),"
            " to_regclass('left_behind'),"
            " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            "  AND pid = pg_backend_pid())"
        )
        state = cursor.fetchone()
    # The same session, as it was opened: the server's statement timeout,
    # Django's time zone and the URL's lock timeout; no table, no lock.
    assert state == (used, "0", "UTC", "10s", None, 0)


def test_the_reset_itself_brings_back_djangos_time_zone(postgres):
    # A zone of the database's own (DATABASES TIME_ZONE), not the server's.
    with sharing_a_pool("pool-zone-test", "America/Chicago", pool_size=1) as pooled:
        first = pooled()
        with first.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'Asia/Tokyo'")
        session = first.connection
        first.close()
        # Before Django hands it out again (and would set the zone once
        # more): the zone is a startup parameter, which the reset restores.
        assert session.info.parameter_status("TimeZone") == "America/Chicago"
        second = pooled()
        second.ensure_connection()
        assert second.connection is session


def test_a_connection_whose_reset_fails_is_discarded_without_an_error(pooled):
    first = pooled()
    ended = backend_pid(first)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [ended])
        gone_or_fail(cursor, ended)
    first.close()  # the reset meets an ended session
    # Its slot came back: the pool's two connections can both be taken.
    second, third = pooled(), pooled()
    assert ended not in {backend_pid(second), backend_pid(third)}


def test_an_idle_connection_older_than_the_maximum_age_is_replaced(aging):
    first = aging()
    old = backend_pid(first)
    first.close()
    time.sleep(0.2)  # past the 0.1 s its connections serve
    assert backend_pid(aging()) != old
    with connection.cursor() as cursor:
        gone_or_fail(cursor, old)  # closed, not only left aside


def test_a_connection_that_aged_in_use_is_closed_when_put_back(aging):
    first = aging()
    old = backend_pid(first)
    time.sleep(0.2)
    first.close()
    with connection.cursor() as cursor:
        gone_or_fail(cursor, old)


def pool_run(mode: str, scenario: str, **pool: str) -> dict:
    """Run tests/pool_concurrency.py on the test database; return its report."""
    result = project_command(
        [sys.executable, "tests/pool_concurrency.py", mode, scenario],
        {**database_env(), **pool},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("mode", ["gevent", "threads"])
def test_many_workers_share_the_pool_without_passing_its_size(postgres, mode):
    assert pool_run(mode, "share", DATABASE_POOL_SIZE="4") == {
        "completed": 50,
        "errors": [],
        "backends": 4,
        "most_held_at_once": 4,
    }


@pytest.mark.parametrize("mode", ["gevent", "threads"])
def test_a_worker_that_finds_the_pool_full_gets_the_pools_error(postgres, mode):
    report = pool_run(
        mode, "timeout", DATABASE_POOL_SIZE="1", DATABASE_POOL_TIMEOUT="0.2"
    )
    assert report == {
        "holder": "held",
        "asker": "django.db.utils.OperationalError: No database connection came "
        "free within 0.2 s (the pool holds 1).",
    }


def gone_or_fail(cursor, pid: int, *, seconds: float = 10) -> None:
    """Return once the backend ``pid`` has exited (polled, bounded)."""

    def gone() -> bool:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return not cursor.fetchone()[0]

    assert wait_for(gone, seconds, interval=0.02), f"Backend {pid} did not exit."
