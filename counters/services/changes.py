"""
The changes staff and operators make: increment, decrement, set, reset,
create, configure and delete.

Each is recorded in the audit trail with its actor, in the same transaction.
"""

from collections.abc import Callable

from django.db import IntegrityError, transaction

from ..actors import Actor
from ..exceptions import CounterExists, CounterProtected, InvalidValue
from ..models import GLOBAL, Action, Counter, check_int64
from ..names import check_name
from .rules import add_locked, check_step, locked, record


def _add(name: str, by: int, action: Action, *, actor: Actor | None = None) -> int:
    """Add ``by`` (checked by the caller) under the row lock; return the result."""
    with transaction.atomic():
        counter = locked(name)
        old = counter.value
        add_locked(counter, by)
        record(name, action, old, counter.value, actor, audit_takes=counter.audit_takes)
    return counter.value


def counter_increment(name: str, *, by: int = 1, actor: Actor | None = None) -> int:
    """Add ``by`` to the named counter and return the value this call produced."""
    check_step(by, opposite="decrement")
    return _add(name, by, Action.INCREMENT, actor=actor)


def counter_decrement(name: str, *, by: int = 1, actor: Actor | None = None) -> int:
    """Subtract ``by`` from the named counter and return the resulting value."""
    check_step(by, opposite="increment")
    return _add(name, -by, Action.DECREMENT, actor=actor)


def _set(name: str, value: int, action: Action, *, actor: Actor | None) -> int:
    """Set the value under the row lock and return it."""
    check_int64("The value", value)
    with transaction.atomic():
        counter = locked(name)
        old = counter.value
        counter.value = value
        counter.save(update_fields=["value", "updated_at"])
        record(name, action, old, value, actor)
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
            record(name, Action.CREATE, None, 0, actor)
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
        counter = locked(name)
        fields = {Action.PUBLIC: "public", Action.AUDIT_TAKES: "audit_takes"}
        changed = [
            option
            for option, flag in wanted.items()
            if getattr(counter, fields[option]) != flag
        ]
        if not changed:
            return []
        for option in changed:
            record(name, option, int(not wanted[option]), int(wanted[option]), actor)
            setattr(counter, fields[option], wanted[option])
        counter.save(update_fields=[fields[o] for o in changed] + ["updated_at"])
    return changed


def counter_delete(name: str, *, actor: Actor | None = None) -> int:
    """Delete the named counter and return its last value."""
    if name == GLOBAL:
        raise CounterProtected(f"The {GLOBAL!r} counter cannot be deleted.")
    with transaction.atomic():
        counter = locked(name)
        record(name, Action.DELETE, counter.value, None, actor)
        counter.delete()
    return counter.value


def counters_change(names, change: Callable[[str], int]) -> dict[str, int]:
    """
    Apply ``change`` to every named counter in one transaction; return the values.

    A refusal of any counter changes none. Rows are locked in name order, so
    two callers changing overlapping sets cannot deadlock.
    """
    with transaction.atomic():
        return {name: change(name) for name in sorted(names)}
