"""
The take: a counter's next number, for pages and the API alike.

Takes of one counter that arrive together in a worker process share one
transaction (``counters.combining``), whichever interface they come from:
the row lock is taken once for all of them, and each still gets its own
number. Under ASGI the API's takes wait in the event loop instead
(``acounter_take``), and batch together apart from the pages'.
"""

import time
from contextlib import contextmanager

from django.db import DatabaseError, close_old_connections, transaction

from .. import metrics
from ..actors import Actor
from ..combining import acombine, combine
from ..exceptions import CounterError, InvalidStep, not_public
from ..models import Action, CounterEvent
from ..names import check_name
from ..parsing import is_integer
from .rules import add_locked, is_recorded, locked


def counter_take(
    name: str,
    *,
    actor: Actor | None = None,
    public_only: bool = False,
) -> int:
    """
    Take the next number from the named counter and return it.

    Concurrent takers each get a different number, and together they get
    consecutive numbers. ``public_only`` is for anonymous clients: a counter
    that is not public raises ``CounterNotPublic``. A take always steps by
    1: an interface that lets a client name a step refuses any other
    (``check_take_step``) before it calls this.

    Outside a transaction, takes that arrive together in this process share
    one transaction: each still gets its own number, and if that transaction
    fails, every take in it fails. Inside the caller's transaction, the take
    is part of it.
    """
    with counted(name, actor):
        check_name(name)
        take = (actor, public_only)
        if transaction.get_connection().in_atomic_block:
            [number] = _take_batch(name, [take])
            if isinstance(number, CounterError):
                raise number
            return number
        return combine(("take", name), take, lambda takes: _take_batch(name, takes))


async def acounter_take(
    name: str,
    *,
    actor: Actor | None = None,
    public_only: bool = False,
) -> int:
    """
    ``counter_take`` for a coroutine in an event loop (an ASGI view).

    The takes of this event loop wait together in it, and each batch runs in
    one thread of the loop's executor: a take costs no thread of its own.
    """
    with counted(name, actor):
        check_name(name)
        return await acombine(
            ("take", name),
            (actor, public_only),
            lambda takes: batch_in_thread(_take_batch, name, takes),
        )


@contextmanager
def counted(name: str, actor: Actor | None):
    """Count the take in the ``with`` block: handed out, or refused and why."""
    if not metrics.collecting():
        yield
        return
    try:
        yield
    except (CounterError, DatabaseError) as error:
        metrics.count_refusal(interface_of(actor), error)
        raise
    metrics.TAKES.labels(name, interface_of(actor)).inc()


def interface_of(actor: Actor | None) -> str:
    """Return the metrics' interface of a take by ``actor``."""
    return "internal" if actor is None else actor.source.value


def check_take_step(by: object, *, actor: Actor | None = None) -> None:
    """
    Refuse the step a client sent with a take, unless it is the integer 1
    (not a bool, a float or text): the interfaces that let a client name a
    step call this before ``counter_take``. The refusal is counted as the
    take's would be.
    """
    if not is_integer(by) or by != 1:
        error = InvalidStep(
            "A take hands out exactly one number: send no step, or a step of 1."
        )
        if metrics.collecting():
            metrics.count_refusal(interface_of(actor), error)
        raise error


def batch_in_thread(batch, name: str, takes: list) -> list[int | CounterError]:
    """
    Run ``batch(name, takes)`` in an executor's thread, and let the thread's
    database connection go after.
    """
    try:
        return batch(name, takes)
    finally:
        # Django closes a request's connections in the request's own thread;
        # this one's would stay open for as long as the thread lives.
        close_old_connections()


def _take_batch(
    name: str, takes: list[tuple[Actor | None, bool]]
) -> list[int | CounterError]:
    """
    Take one number for each ``(actor, public_only)`` in one transaction.

    Return, in order, each take's number, or the refusal of an anonymous
    take of a private counter. The row is locked once (``SELECT … FOR
    UPDATE``; on SQLite the write lock taken at ``BEGIN IMMEDIATE``), raised
    by the number of takes granted with ``F("value") + n``, whose new value
    Django reads back with ``UPDATE … RETURNING``, and the takes that are
    recorded get one audit entry each, in one INSERT.
    """
    with transaction.atomic():
        counter = locked(name)
        held_since = time.monotonic()
        granted = [
            (actor, not public_only or counter.public) for actor, public_only in takes
        ]
        taken = sum(ok for _, ok in granted)
        if not taken:
            return [not_public(name) for _ in takes]
        add_locked(counter, taken)
        numbers = iter(range(counter.value - taken + 1, counter.value + 1))
        results: list[int | CounterError] = [
            next(numbers) if ok else not_public(name) for _, ok in granted
        ]
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
            for (actor, _), number in zip(granted, results, strict=True)
            if not isinstance(number, CounterError)
            and is_recorded(actor, audit_takes=counter.audit_takes)
        )
    if metrics.collecting():  # committed: the row is free again
        metrics.ROW_HELD.labels(name).observe(time.monotonic() - held_since)
        metrics.BATCH_TAKES.labels(name).observe(taken)
    return results
