"""
Whether the workers' connection pools fit the server's ``max_connections``.

``manage.py check --deploy`` asks (counterproject.checks), and so does the
gunicorn master before it starts its workers (#23). This module imports
nothing of ``django.db``: in the master, that import would make Django's
per-thread registry of connections before a gevent worker patches
threading, and all the greenlets of the worker would share one connection.
"""

from contextlib import closing

WARNING_ID = "counterproject.W001"
HINT = (
    "Lower DATABASE_POOL_SIZE or GUNICORN_WORKERS, or raise max_connections "
    "on the server."
)

# Connections left free beyond the server's own reserve: manage.py
# commands, migrations, psql, monitoring.
OPERATOR_CONNECTIONS = 5

# A check must not hang on a server that does not answer.
CONNECT_TIMEOUT = 3

LIMITS = (
    "SELECT name, setting::int FROM pg_settings WHERE name IN"
    " ('max_connections', 'superuser_reserved_connections', 'reserved_connections')"
)

# DATABASES keys and the libpq parameters they are.
CONNECT_FIELDS = {
    "NAME": "dbname",
    "USER": "user",
    "PASSWORD": "password",
    "HOST": "host",
    "PORT": "port",
}


def pool_shortfall(database: dict, workers: int) -> str | None:
    """
    Return why ``workers`` full pools of ``database`` and the reserve exceed
    the server's ``max_connections``, or None if they fit.

    None too when the server cannot be reached: a deployment may be checked
    before its database is up.
    """
    limits = server_limits(database)
    if limits is None:
        return None
    most, reserved = limits
    size = database["OPTIONS"]["pool_size"]
    needed = workers * size + reserved + OPERATOR_CONNECTIONS
    if needed <= most:
        return None
    return (
        f"{workers} workers with {size} pooled connections each, {reserved} "
        f"connections PostgreSQL reserves and {OPERATOR_CONNECTIONS} for "
        f"operators make {needed}, more than the server's max_connections of "
        f"{most}: requests would fail with 'too many clients'."
    )


def server_limits(database: dict) -> tuple[int, int] | None:
    """Return the server's max_connections and reserved connections, or None."""
    import psycopg2

    # libpq's own parameters only: the pool's are the backend's.
    params = {
        key: value
        for key, value in database["OPTIONS"].items()
        if not key.startswith("pool_")
    }
    params |= {
        name: database[key] for key, name in CONNECT_FIELDS.items() if database[key]
    }
    params["connect_timeout"] = min(
        int(params.get("connect_timeout") or CONNECT_TIMEOUT), CONNECT_TIMEOUT
    )
    try:
        with closing(psycopg2.connect(**params)) as connection:
            with connection.cursor() as cursor:
                cursor.execute(LIMITS)
                found = dict(cursor.fetchall())
    except psycopg2.Error:
        return None
    reserved = found.get("superuser_reserved_connections", 0)
    return found["max_connections"], reserved + found.get("reserved_connections", 0)
