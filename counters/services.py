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
from django.utils import timezone

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


def _out_of_range(label: str, value: int, by: int) -> OutOfRange:
    return OutOfRange(
        f"{label} is at {value}; adding {by} would leave the signed 64-bit range."
    )


def _check_sum(label: str, value: int, by: int) -> None:
    if not INT64_MIN <= value + by <= INT64_MAX:
        raise _out_of_range(label, value, by)


def _locked(name: str) -> Counter:
    """Return the named counter with its row locked until the transaction ends."""
    check_name(name)
    counters = Counter.objects.select_for_update().only(
        "value", "public", "audit_takes"
    )
    try:
        return counters.get(name=name)
    except Counter.DoesNotExist:
        raise _absent(name, public_only=False) from None


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


def _add(name: str, by: int, action: Action, *, actor: Actor | None = None) -> int:
    """Add ``by`` (checked by the caller) under the row lock; return the result."""
    with transaction.atomic():
        counter = _locked(name)
        _check_sum(f"Counter {name!r}", counter.value, by)
        old = counter.value
        counter.value = F("value") + by
        # Django 6 reads the new value back with UPDATE … RETURNING: no extra
        # SELECT while the row is locked.
        counter.save(update_fields=["value", "updated_at"])
        _record(
            name, action, old, counter.value, actor, audit_takes=counter.audit_takes
        )
    return counter.value


def _take_batch(
    name: str, actors: list[Actor | None], *, public_only: bool
) -> list[int]:
    """
    Take one number for each actor in one transaction; return them in order.

    This is ``_add(name, len(actors))`` for a whole batch: the row is locked
    once (``SELECT … FOR UPDATE``), raised by the batch's size in the
    database (``value = value + n``, what ``F("value") + n`` writes) and the
    takes that are recorded get one audit entry each. The SQL is written
    out: built with the ORM, a batch cost about 1.1 ms of CPU against 0.3 ms,
    most of a take's time on a busy counter. On PostgreSQL it is one
    statement, so the row stays locked for one round trip and the COMMIT.
    """
    taken = len(actors)
    recorded = [
        (position, actor)
        for position, actor in enumerate(actors, start=1)
        if actor is not None
    ]
    with transaction.atomic():
        if transaction.get_connection().vendor == "postgresql":
            take = _take_postgresql
        else:
            take = _take_sqlite
        value, applied = take(name, taken, recorded, public_only=public_only)
        if not applied:
            raise _out_of_range(f"Counter {name!r}", value, taken)
    return list(range(value + 1, value + 1 + taken))


# One statement, so one round trip while the row is locked: lock the row,
# raise it by the batch's size unless that would leave the 64-bit range, and
# record the takes that are recorded. The final SELECT reports the value
# before the batch and whether the batch was applied; no row means there is
# no such counter.
_TAKE_POSTGRESQL = """
WITH locked AS (
    SELECT id, value, audit_takes FROM {counter}
    WHERE name = %(name)s {public}
    FOR UPDATE
), raised AS (
    UPDATE {counter} AS counter
    SET value = counter.value + %(taken)s, updated_at = %(now)s
    FROM locked
    WHERE counter.id = locked.id AND locked.value <= %(highest)s
    RETURNING locked.value AS old
), recorded AS (
    INSERT INTO {event}
        (counter_name, action, old_value, new_value, source, actor, created_at)
    SELECT %(name)s, %(action)s, raised.old + take.position - 1,
           raised.old + take.position, take.source, take.actor, %(now)s
    FROM raised, locked,
         unnest(%(positions)s::bigint[], %(always)s::boolean[],
                %(sources)s::text[], %(actors)s::text[])
             AS take(position, always, source, actor)
    WHERE locked.audit_takes OR take.always
)
SELECT locked.value, raised.old IS NOT NULL FROM locked LEFT JOIN raised ON true
"""


def _take_postgresql(
    name: str,
    taken: int,
    recorded: list[tuple[int, Actor]],
    *,
    public_only: bool,
) -> tuple[int, bool]:
    """Run a batch as one statement; return (value before it, whether applied)."""
    sql = _TAKE_POSTGRESQL.format(
        counter=Counter._meta.db_table,
        event=CounterEvent._meta.db_table,
        public="AND public" if public_only else "",
    )
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(
            sql,
            {
                "name": name,
                "taken": taken,
                "highest": INT64_MAX - taken,
                "now": timezone.now(),
                "action": Action.TAKE.value,
                "positions": [position for position, _ in recorded],
                "always": [actor.always_recorded for _, actor in recorded],
                "sources": [actor.source.value for _, actor in recorded],
                "actors": [actor.who for _, actor in recorded],
            },
        )
        row = cursor.fetchone()
    if row is None:
        raise _absent(name, public_only=public_only)
    return row


def _take_sqlite(
    name: str,
    taken: int,
    recorded: list[tuple[int, Actor]],
    *,
    public_only: bool,
) -> tuple[int, bool]:
    """Run a batch statement by statement; return (value before it, applied)."""
    connection = transaction.get_connection()
    table = connection.ops.quote_name(Counter._meta.db_table)
    public = " AND public = %s" if public_only else ""
    with connection.cursor() as cursor:
        # SQLite has no FOR UPDATE: the transaction took the database's write
        # lock at BEGIN IMMEDIATE.
        cursor.execute(
            f"SELECT id, value, audit_takes FROM {table} WHERE name = %s{public}",
            [name, True] if public_only else [name],
        )
        row = cursor.fetchone()
        if row is None:
            raise _absent(name, public_only=public_only)
        pk, value, audit_takes = row
        if value > INT64_MAX - taken:
            return value, False
        cursor.execute(
            f"UPDATE {table} SET value = value + %s, updated_at = %s WHERE id = %s",
            [taken, connection.ops.adapt_datetimefield_value(timezone.now()), pk],
        )
    CounterEvent.objects.bulk_create(
        CounterEvent(
            counter_name=name,
            action=Action.TAKE,
            old_value=value + position - 1,
            new_value=value + position,
            source=actor.source,
            actor=actor.who,
        )
        for position, actor in recorded
        if actor.always_recorded or audit_takes
    )
    return value, True


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
