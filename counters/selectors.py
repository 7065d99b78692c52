"""Every read of a counter."""

from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from .exceptions import CounterNotFound, InvalidLimit, InvalidValue, not_public
from .models import Action, Counter, CounterEvent, check_int64
from .names import check_name
from .sessions import SessionStore


def counter_get(name: str, *, public_only: bool = False) -> Counter:
    """
    Return the named counter, or raise ``CounterNotFound``.

    ``public_only`` is for anonymous clients: a counter that is not public
    raises ``CounterNotPublic``.
    """
    check_name(name)
    try:
        counter = Counter.objects.get(name=name)
    except Counter.DoesNotExist:
        raise CounterNotFound(f"There is no counter named {name!r}.") from None
    if public_only and not counter.public:
        raise not_public(name)
    return counter


def counter_value(name: str) -> int:
    """Return the named counter's value as the database holds it now."""
    return counter_get(name).value


def counter_list() -> QuerySet[Counter]:
    """Return all counters, ordered by name."""
    return Counter.objects.all()


def session_counter_get(session: SessionStore) -> int:
    """Return the visitor's own counter (0 for a new visitor)."""
    return session.counter_value()


def counter_history(name: str, *, limit: int = 20) -> list[CounterEvent]:
    """
    Return the named counter's latest audit entries, newest first.

    A deleted counter keeps its history; a name with neither a counter nor a
    history raises ``CounterNotFound``.
    """
    check_name(name)
    if limit < 1:
        raise InvalidLimit(f"The limit must be a positive integer, not {limit}.")
    # The database's LIMIT is a bigint: a larger one is an SQL error.
    check_int64("The limit", limit)
    events = list(CounterEvent.objects.filter(counter_name=name)[:limit])
    if not events and not Counter.objects.filter(name=name).exists():
        raise CounterNotFound(f"There is no counter named {name!r}.")
    return events


def counter_history_before(
    name: str | None, *, before: datetime
) -> QuerySet[CounterEvent]:
    """
    Return the audit entries older than ``before`` that a prune would remove.

    ``name`` ``None`` stands for every counter. The records of earlier prunes
    are never among them. A name with neither a counter nor a history raises
    ``CounterNotFound``; a cut-off in the future raises ``InvalidValue``.
    """
    if name is not None:
        check_name(name)
    if not isinstance(before, datetime) or timezone.is_naive(before):
        raise InvalidValue(
            f"The cut-off must be a date and time with a time zone, not {before!r}."
        )
    if before > timezone.now():
        # Such a cut-off would take what is recorded while the prune runs:
        # more likely a slip of the keyboard than a wish.
        raise InvalidValue(
            f"The cut-off {before.isoformat(timespec='seconds')} is in the "
            "future: give a moment that has passed."
        )
    entries = CounterEvent.objects.filter(created_at__lt=before).exclude(
        action=Action.PRUNE
    )
    if name is None:
        return entries
    if not (
        Counter.objects.filter(name=name).exists()
        or CounterEvent.objects.filter(counter_name=name).exists()
    ):
        raise CounterNotFound(f"There is no counter named {name!r}.")
    return entries.filter(counter_name=name)
