"""
Every wait for PostgreSQL ends: the deadline of psycopg2's waits, and a
commit that its synchronous standby never confirmed (#24).

A primary with ``synchronous_standby_names = '*'`` and no standby holds
every COMMIT forever: the case of a standby cut off by the network, where
no server timeout ends the wait.
"""

import sys
import threading
import time

import psycopg2
import pytest
from django.db import OperationalError, connections
from psycopg2 import extensions

from counterproject.database_url import database_from_url
from counterproject.postgresql import waiting
from counterproject.postgresql.base import DatabaseWrapper
from counterproject.testing.servers import PostgresCluster, project_command

from .support import started

# The bound checked on each wait: the deadline and a margin for a loaded
# machine. A correctness property of the deadline, not a speed claim.
DEADLINE = 1.0
MARGIN = 10.0


@pytest.fixture(scope="module")
def standby_less_primary():
    """Start a primary that waits for a synchronous standby it does not have."""
    cluster = PostgresCluster(max_connections=20, settings={"synchronous_commit": "on"})
    started(cluster, "PostgreSQL")
    cluster.psql("CREATE TABLE taken (number int)")
    # From now on every commit waits for a standby (as the table's did not).
    cluster.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")
    cluster.psql("SELECT pg_reload_conf()")
    yield cluster
    cluster.destroy()


@pytest.fixture(autouse=True)
def own_servers(django_db_blocker):
    """Let the tests reach their own PostgreSQL, not the test database."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def deadline():
    """Bound every wait of psycopg2 in this process to DEADLINE, then undo it."""
    before = extensions.get_wait_callback(), waiting.DEADLINE["seconds"]
    waiting.set_deadline(DEADLINE)
    yield DEADLINE
    extensions.set_wait_callback(before[0])
    waiting.DEADLINE["seconds"] = before[1]


def wrapper_for(cluster: PostgresCluster, url: str = "") -> DatabaseWrapper:
    """Return the project's backend, with its pool, on ``cluster`` (or ``url``)."""
    url = database_from_url(url or cluster.url("postgres"))
    # Django's defaults for each key the URL does not give.
    settings = connections.configure_settings({"default": url})["default"]
    return DatabaseWrapper(settings, alias="bounded")


def rows(cluster: PostgresCluster, number: int) -> int:
    """Return how many rows of ``taken`` hold ``number``, as others see them."""
    return int(cluster.psql(f"SELECT count(*) FROM taken WHERE number = {number}"))


def test_a_commit_the_standby_never_confirms_fails_at_the_deadline(
    standby_less_primary, deadline
):
    wrapper = wrapper_for(standby_less_primary)
    try:
        wrapper.set_autocommit(False)
        with wrapper.cursor() as cursor:
            cursor.execute("INSERT INTO taken VALUES (1)")
        began = time.monotonic()
        with pytest.raises(OperationalError) as excinfo:
            wrapper.commit()
        waited = time.monotonic() - began
    finally:
        wrapper.close()
        wrapper.close_pool()
    assert str(excinfo.value) == (
        "The database did not answer within 1 s (DATABASE_QUERY_DEADLINE)."
    )
    assert deadline <= waited < deadline + MARGIN


def test_a_query_that_outlasts_the_deadline_fails_and_the_pool_drops_it(
    standby_less_primary, deadline
):
    wrapper = wrapper_for(standby_less_primary)
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            [(slow,)] = cursor.fetchall()
        with pytest.raises(OperationalError), wrapper.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(30)")
        assert wrapper.connection.closed
        wrapper.close()
        with wrapper.cursor() as cursor:  # a new connection, from the pool
            cursor.execute("SELECT pg_backend_pid()")
            [(fresh,)] = cursor.fetchall()
    finally:
        wrapper.close()
        wrapper.close_pool()
    assert fresh != slow


def test_a_commit_whose_standby_wait_was_cancelled_is_not_a_success(
    standby_less_primary,
):
    # Cancelled on the server (an operator's pg_cancel_backend), the wait
    # ends in a WARNING and a COMMIT that succeeded here only.
    wrapper = wrapper_for(standby_less_primary)

    def cancel_the_wait() -> None:
        admin = psycopg2.connect(standby_less_primary.url("postgres"))
        admin.autocommit = True
        try:
            with admin.cursor() as cursor:
                for _ in range(200):  # bounded: 20 s
                    cursor.execute(
                        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
                        " WHERE wait_event = 'SyncRep'"
                    )
                    if cursor.fetchall():
                        return
                    time.sleep(0.1)
        finally:
            admin.close()

    canceller = threading.Thread(target=cancel_the_wait)
    try:
        wrapper.set_autocommit(False)
        with wrapper.cursor() as cursor:
            cursor.execute("INSERT INTO taken VALUES (2)")
        canceller.start()
        with pytest.raises(OperationalError) as excinfo:
            wrapper.commit()
        # Not pooled again: a standby may be promoted meanwhile.
        closed = wrapper.connection.closed
    finally:
        if canceller.ident is not None:
            canceller.join(30)
        wrapper.close()
        wrapper.close_pool()
    assert str(excinfo.value) == (
        "The commit was not confirmed by the synchronous standby."
    )
    assert closed
    # Committed on this server all the same: why it must not be answered.
    assert rows(standby_less_primary, 2) == 1


def test_a_silent_host_of_several_costs_a_new_connection_its_connect_timeout(
    standby_less_primary, network
):
    # Listed first, a host that drops every packet (no reset): each host's
    # try ends at libpq's connect_timeout, well within the deadline, and the
    # next host is asked (counterproject/postgresql/primary.py).
    silent = network.host("silent")
    # Every packet but ARP's (nftables' inet family): the host's address
    # resolves, so the kernel does not fail the connection itself with "No
    # route to host"; its SYNs go unanswered until tcp_user_timeout (10 s).
    silent.link.lossy(100)
    good = standby_less_primary
    before = extensions.get_wait_callback(), waiting.DEADLINE["seconds"]
    waiting.set_deadline(60)
    wrapper = wrapper_for(
        good,
        f"postgres://{good.user}@{silent.address}:{good.port},{good.host}:"
        f"{good.port}/postgres?target_session_attrs=read-write&connect_timeout=1",
    )
    try:
        began = time.monotonic()
        wrapper.ensure_connection()
        took = time.monotonic() - began
        assert wrapper.connection.info.host == good.host
    finally:
        wrapper.close()
        wrapper.close_pool()
        extensions.set_wait_callback(before[0])
        waiting.DEADLINE["seconds"] = before[1]
    # connect_timeout=1 is 2 s to libpq; and a margin.
    assert took < 2 + 3


@pytest.mark.parametrize("value", ["0", "-1", "soon", "1e3", "100000"])
def test_a_malformed_deadline_stops_with_one_line(value):
    result = project_command(
        [sys.executable, "manage.py", "check"],
        {"DEBUG": "1", "DATABASE_QUERY_DEADLINE": value},
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: Set DATABASE_QUERY_DEADLINE to seconds above 0 and at most 86400 "
        f"(such as 2.5), not {value!r}."
    ]
