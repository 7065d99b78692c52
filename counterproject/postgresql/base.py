"""
PostgreSQL through psycopg2, with a bounded connection pool in each process.

``ENGINE = "counterproject.postgresql"``; ``database_url.database_from_url``
selects it for ``postgres://`` URLs. It is Django's own PostgreSQL backend,
except that a connection closed at the end of a request goes back to a pool
of at most ``OPTIONS["pool_size"]`` connections instead of to the server. A
request that needs a connection while all are in use waits for one, up to
``OPTIONS["pool_timeout"]`` seconds, and then fails with a database error
(a 503). A connection goes back reset to the state it had when it was opened
(``DISCARD ALL``), and is closed once ``OPTIONS["pool_max_age"]`` seconds
old (#23).

Django's persistent connections belong to a thread (or a greenlet, or an
ASGI request's thread): under gevent or ASGI a worker would hold one
connection per concurrent client, and enough clients exhaust the server's
``max_connections`` (#11). The pool bounds a worker whatever its kind.
Django pools connections itself only with psycopg 3; this project keeps
psycopg2, whose wait callback serves gevent and bounded waits (waiting.py).
"""

import functools
import select
import threading
import time
import weakref
from collections import deque
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg2 import Error as DriverError
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from .. import metrics
from . import primary

POOL_OPTIONS = ("pool_size", "pool_timeout", "pool_max_age")

# Everything a request can leave in its session: settings (SET), advisory
# locks, temporary tables, prepared statements, open cursors, LISTEN. The
# session's settings go back to those it started with, libpq's ``options``
# among them.
RESET = "DISCARD ALL"

# The WARNING of a COMMIT whose wait for synchronous replication was cut short.
SYNC_WAIT_CANCELLED = "canceling wait for synchronous replication"


class Pool:
    """At most ``size`` connections to one database, reused most recent first."""

    def __init__(self, size: int, timeout: float, max_age: float) -> None:
        self.size = size
        self.timeout = timeout
        self.max_age = max_age
        self._slots = threading.BoundedSemaphore(size)
        # (connection, when it was opened); append and pop are atomic.
        self._idle: deque = deque()
        self.closed = False

    def get(self, connect):
        """Return an idle connection, or one from ``connect()``, and its lease."""
        if not self._slots.acquire(blocking=False) and not self._wait_for_slot():
            raise OperationalError(
                f"No database connection came free within {self.timeout:g} s "
                f"(the pool holds {self.size})."
            )
        lease = _Lease(self._slots)
        try:
            while (idle := self._pop_idle()) is not None:
                connection, lease.opened = idle
                if self._young(lease.opened) and _usable(connection):
                    return connection, lease
                _discard(connection)
            lease.opened = time.monotonic()
            return connect(), lease
        except BaseException:
            lease.release()
            raise

    def _wait_for_slot(self) -> bool:
        """Wait for a free slot up to the timeout; count the wait (#25)."""
        began = time.monotonic()
        got = self._slots.acquire(timeout=self.timeout)
        if metrics.collecting():
            metrics.POOL_WAITS.observe(time.monotonic() - began)
            if not got:
                metrics.POOL_TIMEOUTS.inc()
        return got

    def put(self, connection, lease: "_Lease") -> None:
        """Take ``connection`` back; keep it only if it is healthy and resets."""
        try:
            if self._reusable(connection, lease.opened) and self.reset(connection):
                self._idle.append((connection, lease.opened))
                if metrics.collecting():
                    metrics.POOL_IDLE.inc()
                if self.closed:  # closed while this one was being reset
                    self.close()
            else:
                _discard(connection)
        finally:
            lease.release()

    def reset(self, connection) -> bool:
        """Return the session to its state at connect; False if that failed."""
        try:
            # DISCARD ALL cannot run in a transaction block, which psycopg2
            # opens before a statement unless in autocommit. Django sets the
            # mode again when it hands the connection out.
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(RESET)
        except DriverError:
            return False
        return True

    def close(self) -> None:
        """Close the idle connections; those in use close when put back."""
        self.closed = True
        while (idle := self._pop_idle()) is not None:
            _discard(idle[0])

    def _pop_idle(self) -> tuple | None:
        # Not "while self._idle: pop()": another thread can take the last
        # one between the test and the pop.
        try:
            idle = self._idle.pop()
        except IndexError:
            return None
        if metrics.collecting():
            metrics.POOL_IDLE.dec()
        return idle

    def _young(self, opened: float) -> bool:
        return time.monotonic() - opened < self.max_age

    def _reusable(self, connection, opened: float) -> bool:
        return (
            not self.closed
            and not connection.closed
            and connection.info.transaction_status == TRANSACTION_STATUS_IDLE
            and self._young(opened)
            and not primary.stale(connection)
        )


class _Lease:
    """
    A pool slot, given back once: when its connection is put back, or when
    its holder is dropped without closing it (a thread that ended). It
    carries when its connection was opened.
    """

    __slots__ = ("__weakref__", "opened", "release")

    def __init__(self, slots: threading.BoundedSemaphore) -> None:
        if metrics.collecting():
            metrics.POOL_IN_USE.inc()
        self.release = weakref.finalize(self, _give_back, slots)
        self.opened = 0.0


def _give_back(slots: threading.BoundedSemaphore) -> None:
    slots.release()
    if metrics.collecting():
        metrics.POOL_IN_USE.dec()


def _usable(connection) -> bool:
    return _alive(connection) and not primary.stale(connection)


def _alive(connection) -> bool:
    # An idle connection has nothing to read. A server that restarted or
    # ended the session has sent its farewell and closed the socket: a
    # timeout-0 poll sees that without a round trip. (select.poll, not
    # select.select: a busy worker's descriptors pass 1024.)
    if connection.closed:
        return False
    waiting = select.poll()
    waiting.register(connection.fileno(), select.POLLIN)
    return not waiting.poll(0)


def _discard(connection) -> None:
    try:
        connection.close()
    except DriverError:
        pass


def _check_pool_options(options: dict) -> None:
    """Refuse pool options that would fail only once the pool is in use."""
    size: Any = options.get("pool_size")
    seconds: list[Any] = [options.get("pool_timeout"), options.get("pool_max_age")]
    # database_url.database_from_url reads them from text; a hand-written
    # DATABASES could still hold "2.5" (a TypeError when the pool is full)
    # or a wait longer than a lock can (an OverflowError).
    if not (
        type(size) is int
        and size >= 1
        and all(
            type(value) in (int, float) and 0 < value <= threading.TIMEOUT_MAX
            for value in seconds
        )
    ):
        raise ImproperlyConfigured(
            "A pooled database needs OPTIONS pool_size (a whole number, 1 or "
            "more), pool_timeout and pool_max_age (seconds above 0), not "
            f"{options!r}."
        )


class DatabaseWrapper(base.DatabaseWrapper):
    _pools: dict[tuple, Pool] = {}
    _pools_lock = threading.Lock()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._checkout: tuple[Pool, _Lease] | None = None
        options = self._pool_options()
        if options:
            _check_pool_options(options)
        if options and self.settings_dict.get("CONN_MAX_AGE"):
            # A persistent connection would hold its pool slot forever.
            raise ImproperlyConfigured(
                "A pooled database needs CONN_MAX_AGE = 0: its connections go "
                "back to the pool at the end of each request."
            )

    def _pool_options(self) -> dict:
        options = self.settings_dict["OPTIONS"]
        return {key: options[key] for key in POOL_OPTIONS if key in options}

    def get_connection_params(self) -> dict:
        params = super().get_connection_params()
        for key in POOL_OPTIONS:
            params.pop(key, None)
        if self._pool_options() and self.timezone_name:
            # The reset sets a session back to its startup parameters: with
            # Django's time zone among them, it survives the reset, and no
            # SET TIME ZONE follows each one (Django sets the zone whenever
            # the server reports another).
            zone = self.timezone_name.replace("\\", "\\\\").replace(" ", "\\ ")
            options = f"{params.get('options', '')} -c TimeZone={zone}"
            params["options"] = options.strip()
        return params

    def _pool(self, params: dict) -> Pool | None:
        options = self._pool_options()
        if self.alias == NO_DB_ALIAS or not options:
            return None
        # Keyed by the parameters too (the test runner renames the database),
        # and by the pool's own options.
        key = (self.alias, repr(sorted({**params, **options}.items())))
        pool = self._pools.get(key)
        if pool is None or pool.closed:
            with self._pools_lock:
                pool = self._pools.get(key)
                if pool is None or pool.closed:
                    pool = self._pools[key] = Pool(
                        options["pool_size"],
                        options["pool_timeout"],
                        options["pool_max_age"],
                    )
        return pool

    def get_new_connection(self, conn_params):
        # With several hosts, the primary on the newest timeline (primary.py).
        connect = functools.partial(
            primary.connect_to_primary, conn_params, super().get_new_connection
        )
        pool = self._pool(conn_params)
        if pool is None:
            return connect()
        connection, lease = pool.get(connect)
        self._checkout = (pool, lease)
        return connection

    def _close(self):
        checkout, self._checkout = self._checkout, None
        if self.connection is None or checkout is None:
            return super()._close()
        pool, lease = checkout
        with self.wrap_database_errors:
            pool.put(self.connection, lease)

    def _commit(self):
        if self.connection is None:
            return super()._commit()
        # A wait for a synchronous standby that is cancelled (by an operator,
        # or a server's timeout) ends in a WARNING, and the COMMIT succeeds:
        # committed here, perhaps on no standby. A failover would lose it,
        # and its numbers would be handed out again: not an answer (#24).
        del self.connection.notices[:]
        super()._commit()
        if any(SYNC_WAIT_CANCELLED in notice for notice in self.connection.notices):
            # Not put back in the pool: the next connection may find that a
            # standby was promoted meanwhile.
            self.connection.close()
            raise OperationalError(
                "The commit was not confirmed by the synchronous standby."
            )

    def close_if_health_check_failed(self):
        if self._checkout is not None:
            return  # the pool hands out only connections that are alive
        return super().close_if_health_check_failed()

    def close_pool(self):
        super().close_pool()
        with self._pools_lock:
            for key in [key for key in self._pools if key[0] == self.alias]:
                self._pools.pop(key).close()
