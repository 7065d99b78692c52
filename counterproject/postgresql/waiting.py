"""
Every wait for PostgreSQL ends within a deadline (#24).

A server that crashed refuses connections at once; one cut off by the
network does not answer at all, and a primary whose synchronous standby is
cut off holds every COMMIT until the standby comes back, perhaps never. Server
settings (``lock_timeout``, ``statement_timeout``) cannot end those waits, and
TCP keepalives end only some, after tens of seconds. So psycopg2 is made to
wait through this module (its wait callback, as psycogreen does for gevent):
each wait for the server, connecting included, ends after ``deadline``
seconds with ``ServerSilent``, an OperationalError, which the project answers
with a 503. psycopg2 then closes the connection, and the pool drops it.

A COMMIT cut short that way may still have committed on the server: what the
take did is then unknown, and it is not answered as a number (nothing handed
out twice). Under gevent the wait yields to the worker's other greenlets.
"""

import select
import sys
import threading
import time
from contextlib import contextmanager

from psycopg2 import OperationalError as DriverOperationalError
from psycopg2 import extensions

# Seconds; gunicorn.conf.py sets it from DATABASE_QUERY_DEADLINE in each
# worker, and with it how a wait is done: on gevent's hub or with poll().
DEADLINE = {"seconds": 15.0}


class ServerSilent(DriverOperationalError):
    """PostgreSQL did not answer within the deadline."""


def set_deadline(seconds: float) -> None:
    """
    Make every wait of psycopg2 for the server end within ``seconds``.

    Call it once the process is what it will be: a gevent worker after
    gevent has patched it, so that its waits go through the hub.
    """
    DEADLINE["seconds"] = seconds
    # Made here, not at import: in a gevent worker, threading is patched
    # by now, and the shortened deadline belongs to one greenlet.
    _LIMIT["local"] = threading.local()
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("socket"):
        from gevent.socket import wait_read, wait_write

        _WAITS.update(read=wait_read, write=wait_write)
    else:
        _WAITS.update(read=_poll_read, write=_poll_write)
    if extensions.get_wait_callback() is not wait:
        extensions.set_wait_callback(wait)


@contextmanager
def at_most(seconds: float | None):
    """
    Shorten, in this thread or greenlet, each wait within to ``seconds``
    (None: no change). Without the wait callback, libpq waits by itself and
    this changes nothing.
    """
    local = _LIMIT["local"]
    if seconds is None or local is None:
        yield
        return
    outer = getattr(local, "seconds", None)
    local.seconds = seconds if outer is None else min(outer, seconds)
    try:
        yield
    finally:
        local.seconds = outer


def wait(connection) -> None:
    """psycopg2's wait callback: poll until done, or raise ServerSilent."""
    seconds, bound = DEADLINE["seconds"], "DATABASE_QUERY_DEADLINE"
    shorter = getattr(_LIMIT["local"], "seconds", None)
    if shorter is not None and shorter < seconds:
        seconds, bound = shorter, "connect_timeout"
    deadline = time.monotonic() + seconds
    while True:
        state = connection.poll()
        if state == extensions.POLL_OK:
            return
        if state == extensions.POLL_READ:
            reading = True
        elif state == extensions.POLL_WRITE:
            reading = False
        else:
            raise DriverOperationalError(f"Unexpected poll state {state!r}.")
        left = deadline - time.monotonic()
        if left <= 0 or not _ready(connection.fileno(), reading, left):
            raise ServerSilent(
                f"The database did not answer within {seconds:g} s ({bound})."
            )


def _ready(fd: int, reading: bool, seconds: float) -> bool:
    """Wait until ``fd`` can be read (or written); False after ``seconds``."""
    try:
        _WAITS["read" if reading else "write"](fd, timeout=seconds)
    except TimeoutError:
        return False
    return True


def _poll(fd: int, events: int, timeout: float) -> None:
    poller = select.poll()  # not select.select: a worker's fds pass 1024
    poller.register(fd, events)
    if not poller.poll(timeout * 1000):
        raise TimeoutError


def _poll_read(fd: int, *, timeout: float) -> None:
    _poll(fd, select.POLLIN, timeout)


def _poll_write(fd: int, *, timeout: float) -> None:
    _poll(fd, select.POLLOUT, timeout)


# How a wait is done, chosen once by set_deadline: on gevent's hub in a
# gevent worker (so that its other greenlets run), else with poll().
_WAITS = {"read": _poll_read, "write": _poll_write}
# A shorter deadline set by at_most(), per thread or greenlet.
_LIMIT: dict[str, threading.local | None] = {"local": None}
