"""
Of the servers a multi-host DATABASE_URL lists, the primary on the newest
timeline (#24).

libpq, given several hosts and ``target_session_attrs=read-write``, keeps
the first host that accepts writes. After a failover the old primary may
accept writes still: cut off from its standby while the app servers reach
it, or back after a partition. libpq would keep choosing it, and it would
hand out numbers the promoted standby hands out again (with an asynchronous
standby), or hold every take until the deadline for a standby that is gone
(with a synchronous one).

A promotion starts a new timeline. So a new connection asks every listed
host, keeps the one that accepts writes on the newest timeline, and closes
the others; and a process never uses a server on an older timeline than one
it has seen: such a server is refused even when it is the only one that
answers (a 503), and its pooled connections are dropped. That is how every
app server moves to a promoted standby by itself. A process that has just
started knows no timeline yet, so fencing the old primary (stopping it, or
rebuilding it as a standby of the new one) stays the operator's, or the
failover manager's, job.

Each host's try, connecting and asking, ends within libpq's
``connect_timeout`` (or the query deadline, if shorter): a silent host costs
that, once per new connection.
"""

import threading
import weakref
from typing import Any

from psycopg2 import Error as DriverError
from psycopg2 import OperationalError as DriverOperationalError

from . import waiting

# The timeline of the WAL the server writes; it fails on a standby.
TIMELINE = "SELECT pg_walfile_name(pg_current_wal_insert_lsn())"
WRITABLE = {"read-write", "primary"}

_newest: dict[str, int] = {}  # the hosts' list -> the newest timeline seen
_lock = threading.Lock()
# A connection this module chose -> (its hosts' list, its server's timeline).
_chosen: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def servers(params: dict) -> list[tuple[str, str]] | None:
    """
    Return the (host, port) pairs to choose from, or None when libpq
    chooses alone: one host, or a connection not asked to accept writes.
    """
    hosts = str(params.get("host") or "").split(",")
    if len(hosts) < 2 or params.get("target_session_attrs") not in WRITABLE:
        return None
    ports = str(params.get("port") or "").split(",")
    if len(ports) == 1:  # libpq: one port for every host
        ports *= len(hosts)
    return list(zip(hosts, ports, strict=True))


def connect_to_primary(params: dict, connect):
    """
    Return ``connect(params)`` to the primary on the newest timeline of the
    hosts ``params`` lists; raise a psycopg2 OperationalError if there is none.
    """
    hosts = servers(params)
    if hosts is None:
        return connect(params)
    key = ",".join(f"{host}:{port}" for host, port in hosts)
    found: list[tuple[int, Any]] = []
    problems: list[str] = []
    for host, port in hosts:
        try:
            found.append(_ask(connect, {**params, "host": host, "port": port}))
        except DriverError as exc:
            problems.append(f"{host}:{port}: {str(exc).strip()}")
    if not found:
        raise DriverOperationalError(
            "No database server accepts writes. " + " ".join(problems)
        )
    timeline, connection = max(found, key=lambda pair: pair[0])  # first of ties
    for _, other in found:
        if other is not connection:
            other.close()
    with _lock:
        newest = _newest[key] = max(_newest.get(key, 0), timeline)
    if timeline < newest:
        connection.close()
        raise DriverOperationalError(
            f"The only database server that accepts writes is on timeline "
            f"{timeline}, older than timeline {newest} seen before: an old "
            "primary, not used again."
        )
    _chosen[connection] = (key, timeline)
    return connection


def stale(connection) -> bool:
    """Return whether ``connection`` is to a server on a superseded timeline."""
    chosen = _chosen.get(connection)
    return chosen is not None and chosen[1] < _newest.get(chosen[0], 0)


def _ask(connect, params: dict) -> tuple[int, object]:
    """Connect to one host; return its timeline and the connection."""
    seconds = int(params.get("connect_timeout") or 0)
    # As libpq counts it: 0 is no limit, and 1 is taken as 2.
    with waiting.at_most(max(2, seconds) if seconds > 0 else None):
        connection = connect(params)
        try:
            with connection.cursor() as cursor:
                cursor.execute(TIMELINE)
                (wal_file,) = cursor.fetchone()
            connection.rollback()
        except BaseException:
            connection.close()
            raise
    # A WAL file's name begins with its timeline, 8 hex digits.
    return int(wal_file[:8], 16), connection
