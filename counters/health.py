"""What the health check reports: can the app reach its database and cache?"""

import logging

from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.db import DatabaseError, connection
from django_redis import get_redis_connection

logger = logging.getLogger(__name__)

# Seconds a client should wait before retrying while the database is down.
RETRY_AFTER = "5"

OK = "ok"
ABSENT = "absent"
UNAVAILABLE = "unavailable"


# A transaction that commits as a take's does. On PostgreSQL a transactional
# logical message is given a transaction id and written to the WAL (a few
# bytes, decoded by no one here), so its COMMIT waits, as a take's, for a
# synchronous standby: a primary that answers queries but cannot commit
# (its standby cut off) is unavailable, as it is to every take (#24).
COMMITTING_QUERY = {
    "postgresql": "SELECT pg_logical_emit_message(true, 'counters', 'healthz')"
}


def database_status() -> str:
    """Return "ok" when a transaction commits, else "unavailable"."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(COMMITTING_QUERY.get(connection.vendor, "SELECT 1"))
    except DatabaseError:
        logger.warning("Health check: the database is unavailable", exc_info=True)
        return UNAVAILABLE
    return OK


def cache_status() -> str:
    """Return "ok", "absent" (no shared cache configured) or "unavailable"."""
    cache = caches["default"]
    if isinstance(cache, DummyCache):
        return ABSENT
    try:
        # django-redis turns errors into misses (IGNORE_EXCEPTIONS), so ask
        # the server itself.
        get_redis_connection("default").ping()
    except Exception:
        logger.warning("Health check: the cache is unavailable", exc_info=True)
        return UNAVAILABLE
    return OK
