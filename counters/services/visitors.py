"""Each visitor's own counter, kept in their session (#3)."""

from .. import metrics
from ..sessions import SessionStore
from .rules import check_step, check_sum


def session_counter_increment(session: SessionStore, *, by: int = 1) -> int:
    """
    Add ``by`` to the visitor's own counter and return the new value.

    Concurrent requests of one session are serialized on its row: none loses
    another's update. A visitor without a session gets one.
    """
    check_step(by, opposite="decrement")
    value = _session_add(session, by)
    counted("increment")
    return value


def session_counter_decrement(session: SessionStore, *, by: int = 1) -> int:
    """Subtract ``by`` from the visitor's own counter and return the new value."""
    check_step(by, opposite="increment")
    value = _session_add(session, -by)
    counted("decrement")
    return value


def _session_add(session: SessionStore, by: int) -> int:
    """Add ``by`` (checked by the caller) under the session row's lock."""

    def add(value: int) -> int:
        check_sum("Your counter", value, by)
        return value + by

    return session.update_counter(add)


def session_counter_reset(session: SessionStore) -> int:
    """Set the visitor's own counter back to 0 and return 0."""
    value = session.update_counter(lambda value: 0)
    counted("reset")
    return value


def counted(action: str) -> None:
    if metrics.collecting():
        metrics.VISITOR_CHANGES.labels(action).inc()
