"""
Of the servers a multi-host DATABASE_URL lists, the primary on the newest
timeline (#24; counterproject/postgresql/primary.py).

A primary and its standby on loopback; the standby is promoted while the
old primary runs on and accepts writes, as one cut off from its standby
does. libpq alone would keep choosing the first host listed.
"""

import pytest
from django.db import OperationalError, connections

from counterproject.database_url import database_from_url
from counterproject.postgresql import primary
from counterproject.postgresql.base import DatabaseWrapper
from counterproject.testing.servers import PostgresCluster

from .support import started, unavailable


@pytest.fixture
def old_and_promoted():
    """Start a primary and a standby of it; return them, the standby promoted."""
    old = started(PostgresCluster(max_connections=20), "PostgreSQL")
    new = PostgresCluster(max_connections=20)
    try:
        try:
            new.clone(old)
        except Exception as exc:  # noqa: BLE001 - any failure means "no standby"
            unavailable(f"pg_basebackup could not make a standby: {exc}")
        started(new, "PostgreSQL standby")
        yield old, new
    finally:
        new.destroy()
        old.destroy()


@pytest.fixture(autouse=True)
def own_servers(django_db_blocker):
    """Let the tests reach their own PostgreSQL, not the test database."""
    with django_db_blocker.unblock():
        yield


def url(*clusters: PostgresCluster, attrs: str = "read-write") -> str:
    hosts = ",".join(f"{c.host}:{c.port}" for c in clusters)
    return (
        f"postgres://{clusters[0].user}@{hosts}/postgres"
        f"?target_session_attrs={attrs}&connect_timeout=2"
    )


def wrapper_for(database_url: str) -> DatabaseWrapper:
    """Return the project's backend, with its pool, for ``database_url``."""
    settings = database_from_url(database_url)
    settings = connections.configure_settings({"default": settings})["default"]
    return DatabaseWrapper(settings, alias="primary")


def server_port(wrapper: DatabaseWrapper) -> int:
    wrapper.ensure_connection()
    return wrapper.connection.info.port


def test_a_new_connection_goes_to_the_promoted_standby_not_the_old_primary(
    old_and_promoted,
):
    old, new = old_and_promoted
    wrapper = wrapper_for(url(old, new))
    try:
        # Before the promotion: the only server that accepts writes.
        assert server_port(wrapper) == old.port
        wrapper.close()
        new.promote()
        # The pooled connection is reused: nothing told this process yet.
        assert server_port(wrapper) == old.port
        held = wrapper.connection
        # A second connection asks both servers, and the old primary, which
        # libpq alone would take (it is listed first and accepts writes), is
        # passed over for the newer timeline.
        other = wrapper_for(url(old, new))
        assert server_port(other) == new.port
        other.close()
        # And the connection to the old primary is not pooled again.
        wrapper.close()
        assert held.closed
        assert server_port(wrapper) == new.port
    finally:
        wrapper.close_pool()


def test_an_old_primary_is_refused_once_a_newer_timeline_was_seen(
    old_and_promoted,
):
    old, new = old_and_promoted
    new.promote()
    wrapper = wrapper_for(url(old, new))
    try:
        assert server_port(wrapper) == new.port
        wrapper.close()
        wrapper.close_pool()
        new.stop()
        # The old primary alone answers, and accepts writes: a 503, not it.
        with pytest.raises(OperationalError, match="older than timeline 2"):
            wrapper.ensure_connection()
    finally:
        wrapper.close_pool()


def test_with_no_servers_accepting_writes_the_error_names_each(old_and_promoted):
    old, new = old_and_promoted
    old.stop()
    wrapper = wrapper_for(url(old, new))
    with pytest.raises(OperationalError) as error:
        wrapper.ensure_connection()
    message = str(error.value)
    assert message.startswith("No database server accepts writes.")
    assert f"{old.host}:{old.port}" in message and f":{new.port}:" in message


@pytest.mark.parametrize(
    ("params", "chosen"),
    [
        ({"host": "a", "port": "5432", "target_session_attrs": "read-write"}, None),
        ({"host": "a,b", "port": "1,2", "target_session_attrs": "any"}, None),
        ({"host": "a,b", "port": "1,2"}, None),
        (
            {"host": "a,b", "port": "1,2", "target_session_attrs": "primary"},
            [("a", "1"), ("b", "2")],
        ),
        (
            {"host": "a,b", "port": "5433", "target_session_attrs": "read-write"},
            [("a", "5433"), ("b", "5433")],
        ),
    ],
)
def test_only_several_hosts_asked_for_writes_are_chosen_among(params, chosen):
    # Otherwise libpq chooses alone, as it would without this module.
    assert primary.servers(params) == chosen
