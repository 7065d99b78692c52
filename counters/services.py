"""
Every write to a counter.

Each change is one short transaction that locks the counter's row with
``SELECT … FOR UPDATE`` (on SQLite, the database's write lock taken at
``BEGIN IMMEDIATE``), so concurrent callers are serialized: no value is handed
out twice and none is skipped. Arguments are checked before anything is
locked, and a failed check raises a ``CounterError`` that changes nothing.
"""

from django.db import transaction
from django.db.models import F

from .exceptions import (
    CounterNotFound,
    CounterNotPublic,
    InvalidStep,
    InvalidValue,
    OutOfRange,
)
from .models import INT64_MAX, INT64_MIN, Counter
from .sessions import SessionStore


def _is_int(value: object) -> bool:
    # bool is an int subclass, but True is no step.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_step(by: object) -> None:
    if not _is_int(by) or by == 0:
        raise InvalidStep(f"The step must be a non-zero integer, not {by!r}.")


def _check_sum(label: str, value: int, by: int) -> None:
    if not INT64_MIN <= value + by <= INT64_MAX:
        raise OutOfRange(
            f"{label} is at {value}; adding {by} would leave the signed 64-bit "
            "range."
        )


def _locked(name: str, *, public_only: bool = False) -> Counter:
    """Return the named counter with its row locked until the transaction ends."""
    counters = Counter.objects.select_for_update().only("value")
    if public_only:
        counters = counters.filter(public=True)
    try:
        return counters.get(name=name)
    except Counter.DoesNotExist:
        # Only the failure path pays for telling "private" from "absent".
        if public_only and Counter.objects.filter(name=name).exists():
            raise CounterNotPublic(
                f"Counter {name!r} is not public: anonymous clients cannot "
                "change it."
            ) from None
        raise CounterNotFound(f"There is no counter named {name!r}.") from None


def _add(name: str, by: int, *, public_only: bool = False) -> int:
    """Add ``by`` under the row lock and return the value this call produced."""
    _check_step(by)
    with transaction.atomic():
        counter = _locked(name, public_only=public_only)
        _check_sum(f"Counter {name!r}", counter.value, by)
        counter.value = F("value") + by
        # Django 6 reads the new value back with UPDATE … RETURNING: no extra
        # SELECT while the row is locked.
        counter.save(update_fields=["value", "updated_at"])
    return counter.value


def counter_take(name: str, *, public_only: bool = False) -> int:
    """
    Take the next number from the named counter and return it.

    Concurrent takers each get a different number, and together they get
    consecutive numbers. With ``public_only``, a counter that is not public
    raises ``CounterNotPublic``.
    """
    return _add(name, 1, public_only=public_only)


def counter_increment(name: str, *, by: int = 1) -> int:
    """Add ``by`` to the named counter and return the value this call produced."""
    return _add(name, by)


def counter_decrement(name: str, *, by: int = 1) -> int:
    """Subtract ``by`` from the named counter and return the resulting value."""
    _check_step(by)
    return _add(name, -by)


def counter_set(name: str, value: int) -> int:
    """Set the named counter to ``value`` and return it."""
    if not _is_int(value):
        raise InvalidValue(f"The value must be an integer, not {value!r}.")
    if not INT64_MIN <= value <= INT64_MAX:
        raise OutOfRange(f"{value} is outside the signed 64-bit range.")
    with transaction.atomic():
        counter = _locked(name)
        counter.value = value
        counter.save(update_fields=["value", "updated_at"])
    return value


def counter_reset(name: str) -> int:
    """Set the named counter back to 0 and return 0."""
    return counter_set(name, 0)


# --- Per-user counters, kept in the visitor's session (#3) ------------------


def session_counter_increment(session: SessionStore, *, by: int = 1) -> int:
    """
    Add ``by`` to the visitor's own counter and return the new value.

    Concurrent requests of one session are serialized on its row: none loses
    another's update. A visitor without a session gets one.
    """
    _check_step(by)

    def add(value: int) -> int:
        _check_sum("Your counter", value, by)
        return value + by

    return session.update_counter(add)


def session_counter_decrement(session: SessionStore, *, by: int = 1) -> int:
    """Subtract ``by`` from the visitor's own counter and return the new value."""
    _check_step(by)
    return session_counter_increment(session, by=-by)


def session_counter_reset(session: SessionStore) -> int:
    """Set the visitor's own counter back to 0 and return 0."""
    return session.update_counter(lambda value: 0)
