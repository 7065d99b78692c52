"""The bounded connection pool of counterproject.postgresql (#11)."""

import gc
import time
import weakref

import pytest
from django.db import OperationalError, connection

from counterproject.postgresql.base import DatabaseWrapper

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pooled(postgres):
    """Return a factory of connections sharing a pool of 2 (wait 0.2 s)."""
    settings = {
        **connection.settings_dict,
        "OPTIONS": {
            **connection.settings_dict["OPTIONS"],
            "pool_size": 2,
            "pool_timeout": 0.2,
        },
    }
    made = weakref.WeakSet()  # dropping a wrapper must really drop it

    def connect() -> DatabaseWrapper:
        wrapper = DatabaseWrapper(settings, alias="pool-test")
        made.add(wrapper)
        return wrapper

    yield connect
    for wrapper in list(made):
        wrapper.close()
    connect().close_pool()


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


def gone_or_fail(cursor, pid: int, *, seconds: float = 10) -> None:
    """Return once the backend ``pid`` has exited (polled, bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        if not cursor.fetchone()[0]:
            return
        time.sleep(0.02)
    raise AssertionError(f"Backend {pid} did not exit.")
