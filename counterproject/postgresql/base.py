"""
PostgreSQL through psycopg2, with a bounded connection pool in each process.

``ENGINE = "counterproject.postgresql"``; ``settings.database_from_url``
selects it for ``postgres://`` URLs. It is Django's own PostgreSQL backend,
except that a connection closed at the end of a request goes back to a pool
of at most ``OPTIONS["pool_size"]`` connections instead of to the server. A
request that needs a connection while all are in use waits for one, up to
``OPTIONS["pool_timeout"]`` seconds, and then fails with a database error
(a 503).

Django's persistent connections belong to a thread (or a greenlet, or an
ASGI request's thread): under gevent or ASGI a worker would hold one
connection per concurrent request, and enough clients exhaust the server's
``max_connections`` (#11). The pool bounds a worker whatever its kind.
Django pools connections itself only with psycopg 3; this project keeps
psycopg2, whose gevent support (psycogreen) it uses.
"""

import select
import threading
import weakref
from collections import deque

from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError
from django.db.backends.postgresql import base
from psycopg2 import Error as DriverError
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

POOL_OPTIONS = ("pool_size", "pool_timeout")


class Pool:
    """At most ``size`` connections to one database, reused most recent first."""

    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(size)
        self._idle: deque = deque()  # append and pop are atomic
        self.closed = False

    def get(self, connect):
        """Return an idle connection, or one from ``connect()``, and its lease."""
        if not self._slots.acquire(timeout=self.timeout):
            raise OperationalError(
                f"No database connection came free within {self.timeout:g} s "
                f"(the pool holds {self.size})."
            )
        lease = _Lease(self._slots)
        try:
            while self._idle:
                connection = self._idle.pop()
                if _alive(connection):
                    return connection, lease
                _discard(connection)
            return connect(), lease
        except BaseException:
            lease.release()
            raise

    def put(self, connection, lease: "_Lease") -> None:
        """Take ``connection`` back; keep it only if it is idle and healthy."""
        try:
            if (
                self.closed
                or connection.closed
                or connection.info.transaction_status != TRANSACTION_STATUS_IDLE
            ):
                _discard(connection)
            else:
                self._idle.append(connection)
        finally:
            lease.release()

    def close(self) -> None:
        """Close the idle connections; those in use close when put back."""
        self.closed = True
        while self._idle:
            _discard(self._idle.pop())


class _Lease:
    """
    A pool slot, given back once: when its connection is put back, or when
    its holder is dropped without closing it (a thread that ended).
    """

    __slots__ = ("__weakref__", "release")

    def __init__(self, slots: threading.BoundedSemaphore) -> None:
        self.release = weakref.finalize(self, slots.release)


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


class DatabaseWrapper(base.DatabaseWrapper):
    _pools: dict[tuple, Pool] = {}
    _pools_lock = threading.Lock()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._checkout: tuple[Pool, _Lease] | None = None
        if self._pool_options() and self.settings_dict.get("CONN_MAX_AGE"):
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
        return params

    def _pool(self, params: dict) -> Pool | None:
        options = self._pool_options()
        if self.alias == base.NO_DB_ALIAS or not options:
            return None
        # Keyed by the parameters too: the test runner renames the database.
        key = (self.alias, repr(sorted(params.items())))
        pool = self._pools.get(key)
        if pool is None or pool.closed:
            with self._pools_lock:
                pool = self._pools.get(key)
                if pool is None or pool.closed:
                    pool = self._pools[key] = Pool(
                        options.get("pool_size", 32), options.get("pool_timeout", 10)
                    )
        return pool

    def get_new_connection(self, conn_params):
        pool = self._pool(conn_params)
        if pool is None:
            return super().get_new_connection(conn_params)
        connection, lease = pool.get(
            lambda: super(DatabaseWrapper, self).get_new_connection(conn_params)
        )
        self._checkout = (pool, lease)
        return connection

    def _close(self):
        checkout, self._checkout = self._checkout, None
        if self.connection is None or checkout is None:
            return super()._close()
        pool, lease = checkout
        with self.wrap_database_errors:
            pool.put(self.connection, lease)

    def close_if_health_check_failed(self):
        if self._checkout is not None:
            return  # the pool hands out only connections that are alive
        return super().close_if_health_check_failed()

    def close_pool(self):
        super().close_pool()
        with self._pools_lock:
            for key in [key for key in self._pools if key[0] == self.alias]:
                self._pools.pop(key).close()
