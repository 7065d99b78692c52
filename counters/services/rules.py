"""The rules every change of a counter shares."""

import logging
from typing import TypeGuard

from django.db import transaction
from django.db.models import F

from ..actors import Actor
from ..exceptions import CounterNotFound, InvalidStep, OutOfRange
from ..models import INT64_MAX, INT64_MIN, Counter, CounterEvent, Source, check_int64
from ..names import check_name

logger = logging.getLogger("counters.services")

# Changes from these sources are always recorded in the audit trail; web and
# API takes only on counters that ask for it (Counter.audit_takes).
ALWAYS_RECORDED = frozenset({Source.ADMIN, Source.CLI})


def is_recorded(actor: Actor | None, *, audit_takes: bool) -> TypeGuard[Actor]:
    """Return whether a change by ``actor`` gets an audit entry."""
    return actor is not None and (actor.source in ALWAYS_RECORDED or audit_takes)


def check_step(by: int, *, opposite: str) -> None:
    """
    Refuse a step that is not positive or not within 64 bits. The edges read
    it (``counters.parsing``); only an integer reaches a service.
    """
    # A negative step would make "decrement" add (#12): the audit trail and
    # the log would then say the opposite of what happened.
    if by == 0:
        raise InvalidStep("The step must be a positive integer, not 0.")
    if by < 0:
        raise InvalidStep(
            f"The step must be a positive integer, not {by}: to go the other "
            f"way, {opposite} by {-by} instead."
        )
    check_int64("The step", by)


def check_sum(label: str, value: int, by: int) -> None:
    """Refuse a change that would take ``value`` out of the signed 64-bit range."""
    if not INT64_MIN <= value + by <= INT64_MAX:
        raise OutOfRange(
            f"{label} is at {value}; adding {by} would leave the signed 64-bit range."
        )


def locked(name: str) -> Counter:
    """Return the named counter with its row locked until the transaction ends."""
    check_name(name)
    counters = Counter.objects.select_for_update().only(
        "name", "value", "public", "audit_takes"
    )
    try:
        return counters.get(name=name)
    except Counter.DoesNotExist:
        raise CounterNotFound(f"There is no counter named {name!r}.") from None


def add_locked(counter: Counter, by: int) -> None:
    """Add ``by`` to a counter ``locked`` returned; it then holds the new value."""
    check_sum(f"Counter {counter.name!r}", counter.value, by)
    counter.value = F("value") + by
    # Django 6 reads the new value back with UPDATE … RETURNING: no extra
    # SELECT while the row is locked.
    counter.save(update_fields=["value", "updated_at"])


def record(name, action, old, new, actor: Actor | None, *, audit_takes=False):
    """Add an audit entry when the actor's changes are recorded."""
    if not is_recorded(actor, audit_takes=audit_takes):
        return
    if actor.source in ALWAYS_RECORDED:
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
