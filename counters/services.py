"""
Every write to a counter.

Each change is one short transaction that locks the counter's row with
``SELECT … FOR UPDATE`` (on SQLite, the database's write lock taken at
``BEGIN IMMEDIATE``), so concurrent callers are serialized: no value is handed
out twice and none is skipped. Arguments are checked before anything is
locked, and a failed check raises a ``CounterError`` that changes nothing.

A change made with an ``actor`` from the admin or a command is recorded in
the audit trail in the same transaction; a web or API take is recorded when
the counter's ``audit_takes`` is on.
"""

import logging

from django.db import IntegrityError, transaction
from django.db.models import F

from .audit import Actor
from .combining import combine
from .exceptions import (
    CounterError,
    CounterExists,
    CounterNotFound,
    CounterNotPublic,
    CounterProtected,
    InvalidStep,
    InvalidValue,
    OutOfRange,
)
from .models import GLOBAL, INT64_MAX, INT64_MIN, Action, Counter, CounterEvent
from .parsing import check_name, is_integer
from .sessions import SessionStore

logger = logging.getLogger(__name__)


def _check_step(by: object, *, opposite: str) -> None:
    """Refuse a step that is not a positive integer within 64 bits."""
    # A negative step would make "decrement" add (#12): the audit trail and
    # the log would then say the opposite of what happened.
    if not is_integer(by) or by == 0:
        raise InvalidStep(f"The step must be a positive integer, not {by!r}.")
    if by < 0:
        raise InvalidStep(
            f"The step must be a positive integer, not {by}: to go the other "
            f"way, {opposite} by {-by} instead."
        )
    if by > INT64_MAX:
        raise OutOfRange(f"The step {by} is outside the signed 64-bit range.")


def _check_sum(label: str, value: int, by: int) -> None:
    if not INT64_MIN <= value + by <= INT64_MAX:
        raise OutOfRange(
            f"{label} is at {value}; adding {by} would leave the signed 64-bit range."
        )


def _locked(name: str, *, public_only: bool = False) -> Counter:
    """Return the named counter with its row locked until the transaction ends."""
    check_name(name)
    counters = Counter.objects.select_for_update().only(
        "value", "public", "audit_takes"
    )
    if public_only:
        counters = counters.filter(public=True)
    try:
        return counters.get(name=name)
    except Counter.DoesNotExist:
        raise _absent(name, public_only=public_only) from None


def _absent(name: str, *, public_only: bool) -> CounterError:
    """Return the error for a counter that a lookup did not find."""
    # Only the failure path pays for telling "private" from "absent".
    if public_only and Counter.objects.filter(name=name).exists():
        return CounterNotPublic(
            f"Counter {name!r} is not public: anonymous clients cannot change it."
        )
    return CounterNotFound(f"There is no counter named {name!r}.")


def _record(name, action, old, new, actor: Actor | None, *, audit_takes=False):
    """Add an audit entry when the actor's changes are recorded."""
    if actor is None or not (actor.always_recorded or audit_takes):
        return
    if actor.always_recorded:
        # One log line for each change made by staff or an operator, once it
        # is committed: a change rolled back with its batch is not logged.
        transaction.on_commit(
            lambda: logger.info(
                "counter %s %s: %s -> %s by %s via %s",
                name,
                action,
                old,
                new,
                actor.who,
                actor.source,
            )
        )
    CounterEvent.objects.create(
        counter_name=name,
        action=action,
        old_value=old,
        new_value=new,
        source=actor.source,
        actor=actor.who,
    )


def _raise_locked(name: str, by: int, *, public_only: bool = False) -> Counter:
    """Lock the counter's row, add ``by`` and return it holding the new value."""
    counter = _locked(name, public_only=public_only)
    _check_sum(f"Counter {name!r}", counter.value, by)
    counter.value = F("value") + by
    # Django 6 reads the new value back with UPDATE … RETURNING: no extra
    # SELECT while the row is locked.
    counter.save(update_fields=["value", "updated_at"])
    return counter


def _add(name: str, by: int, action: Action, *, actor: Actor | None = None) -> int:
    """Add ``by`` (checked by the caller) under the row lock; return the result."""
    with transaction.atomic():
        counter = _raise_locked(name, by)
        old = counter.value - by
        _record(
            name, action, old, counter.value, actor, audit_takes=counter.audit_takes
        )
    return counter.value


def _take_batch(
    name: str, actors: list[Actor | None], *, public_only: bool
) -> list[int]:
    """
    Take one number for each actor in one transaction; return them in order.

    This is ``_add(name, len(actors))`` for a whole batch, on both databases:
    the row is locked once (``SELECT … FOR UPDATE``; on SQLite the write lock
    taken at ``BEGIN IMMEDIATE``), raised by the batch's size with
    ``F("value") + n``, whose new value Django reads back with ``UPDATE …
    RETURNING``, and the takes that are recorded get one audit entry each,
    in one INSERT.
    """
    taken = len(actors)
    with transaction.atomic():
        counter = _raise_locked(name, taken, public_only=public_only)
        first = counter.value - taken + 1
        # bulk_create sends nothing when no take of the batch is recorded.
        CounterEvent.objects.bulk_create(
            CounterEvent(
                counter_name=name,
                action=Action.TAKE,
                old_value=number - 1,
                new_value=number,
                source=actor.source,
                actor=actor.who,
            )
            for number, actor in enumerate(actors, start=first)
            if actor is not None and (actor.always_recorded or counter.audit_takes)
        )
    return list(range(first, first + taken))


def counter_take(
    name: str, *, actor: Actor | None = None, public_only: bool = False
) -> int:
    """
    Take the next number from the named counter and return it.

    Concurrent takers each get a different number, and together they get
    consecutive numbers. With ``public_only``, a counter that is not public
    raises ``CounterNotPublic``.

    Outside a transaction, takes that arrive together in this process share
    one transaction (``combining``): each still gets its own number, and if
    that transaction fails, every take in it fails. Inside the caller's
    transaction, the take is part of it.
    """
    check_name(name)
    if transaction.get_connection().in_atomic_block:
        return _take_batch(name, [actor], public_only=public_only)[0]
    return combine(
        ("take", name, public_only),
        actor,
        lambda actors: _take_batch(name, actors, public_only=public_only),
    )


def counter_increment(name: str, *, by: int = 1, actor: Actor | None = None) -> int:
    """Add ``by`` to the named counter and return the value this call produced."""
    _check_step(by, opposite="decrement")
    return _add(name, by, Action.INCREMENT, actor=actor)


def counter_decrement(name: str, *, by: int = 1, actor: Actor | None = None) -> int:
    """Subtract ``by`` from the named counter and return the resulting value."""
    _check_step(by, opposite="increment")
    return _add(name, -by, Action.DECREMENT, actor=actor)


def _set(name: str, value: int, action: Action, *, actor: Actor | None) -> int:
    """Set the value under the row lock and return it."""
    if not is_integer(value):
        raise InvalidValue(f"The value must be an integer, not {value!r}.")
    if not INT64_MIN <= value <= INT64_MAX:
        raise OutOfRange(f"{value} is outside the signed 64-bit range.")
    with transaction.atomic():
        counter = _locked(name)
        old = counter.value
        counter.value = value
        counter.save(update_fields=["value", "updated_at"])
        _record(name, action, old, value, actor)
    return value


def counter_set(name: str, value: int, *, actor: Actor | None = None) -> int:
    """Set the named counter to ``value`` and return it."""
    return _set(name, value, Action.SET, actor=actor)


def counter_reset(name: str, *, actor: Actor | None = None) -> int:
    """Set the named counter back to 0 and return 0."""
    return _set(name, 0, Action.RESET, actor=actor)


def counter_create(
    name: str,
    *,
    public: bool = False,
    audit_takes: bool = False,
    actor: Actor | None = None,
) -> Counter:
    """Create a counter at 0 and return it."""
    check_name(name)
    try:
        with transaction.atomic():
            counter = Counter.objects.create(
                name=name, public=public, audit_takes=audit_takes
            )
            _record(name, Action.CREATE, None, 0, actor)
    except IntegrityError:
        raise CounterExists(f"A counter named {name!r} already exists.") from None
    return counter


def counter_configure(
    name: str, *, public: bool, audit_takes: bool, actor: Actor | None = None
) -> list[Action]:
    """
    Change a counter's options under its row lock; return the options changed.

    Each change is recorded (old and new as 0 or 1) and bumps ``updated_at``;
    the value is left as it stands, so takes made meanwhile are kept.
    """
    wanted = {Action.PUBLIC: public, Action.AUDIT_TAKES: audit_takes}
    for option, flag in wanted.items():
        if not isinstance(flag, bool):
            raise InvalidValue(f"The option {option.label!r} must be on or off.")
    with transaction.atomic():
        counter = _locked(name)
        fields = {Action.PUBLIC: "public", Action.AUDIT_TAKES: "audit_takes"}
        changed = [
            option
            for option, flag in wanted.items()
            if getattr(counter, fields[option]) != flag
        ]
        if not changed:
            return []
        for option in changed:
            _record(name, option, int(not wanted[option]), int(wanted[option]), actor)
            setattr(counter, fields[option], wanted[option])
        counter.save(update_fields=[fields[o] for o in changed] + ["updated_at"])
    return changed


def counter_delete(name: str, *, actor: Actor | None = None) -> int:
    """Delete the named counter and return its last value."""
    if name == GLOBAL:
        raise CounterProtected(f"The {GLOBAL!r} counter cannot be deleted.")
    with transaction.atomic():
        counter = _locked(name)
        _record(name, Action.DELETE, counter.value, None, actor)
        counter.delete()
    return counter.value


# --- Per-user counters, kept in the visitor's session (#3) ------------------


def session_counter_increment(session: SessionStore, *, by: int = 1) -> int:
    """
    Add ``by`` to the visitor's own counter and return the new value.

    Concurrent requests of one session are serialized on its row: none loses
    another's update. A visitor without a session gets one.
    """
    _check_step(by, opposite="decrement")
    return _session_add(session, by)


def session_counter_decrement(session: SessionStore, *, by: int = 1) -> int:
    """Subtract ``by`` from the visitor's own counter and return the new value."""
    _check_step(by, opposite="increment")
    return _session_add(session, -by)


def _session_add(session: SessionStore, by: int) -> int:
    """Add ``by`` (checked by the caller) under the session row's lock."""

    def add(value: int) -> int:
        _check_sum("Your counter", value, by)
        return value + by

    return session.update_counter(add)


def session_counter_reset(session: SessionStore) -> int:
    """Set the visitor's own counter back to 0 and return 0."""
    return session.update_counter(lambda value: 0)
