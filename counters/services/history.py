"""
Pruning the audit trail (#23): the entries older than a moment are removed in
batches, and the prune itself is recorded.

The trail is written by every audited take, so it grows without end unless
pruned. A prune never locks a counter's row: takes and changes go on while it
runs, each batch waiting at most for the short transaction of one other.
"""

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.db.models import Count, Max, QuerySet

from ..actors import Actor
from ..exceptions import InvalidLimit
from ..models import Action, CounterEvent
from ..selectors import counter_history_before

logger = logging.getLogger("counters.services")

# The counter a prune of every counter's entries is recorded under: no
# counter can have this name (a slug), so it never mixes with one's history.
ALL_COUNTERS = "*"
BATCH_SIZE = 1000


def check_batch_size(batch_size: int) -> None:
    """Refuse a batch size that is not positive."""
    if batch_size < 1:
        raise InvalidLimit(
            f"The batch size must be a positive integer, not {batch_size}."
        )


def counter_history_prune(
    name: str | None,
    *,
    before: datetime,
    actor: Actor,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> int:
    """
    Remove the audit entries older than ``before`` and return how many.

    ``name`` ``None`` prunes every counter's entries. Each batch of at most
    ``batch_size`` entries is one short transaction of its own, and no
    counter's row is locked, so takes go on meanwhile; ``progress`` is called
    with each batch's count once it is done. Only the entries that existed
    when the prune began can be removed, so it ends however busy the trail
    is. The prune is then recorded (action ``prune``, the number removed as
    old value, counter ``*`` for all) and logged; records of earlier prunes
    are kept. Called inside a transaction, the batches commit with it.
    """
    check_batch_size(batch_size)
    entries = counter_history_before(name, before=before)
    # The count keeps PostgreSQL from reading MAX(id) down the primary key
    # until an old entry turns up: with none, the whole trail (#23 bench).
    last = entries.aggregate(last=Max("id"), count=Count("id"))["last"]
    removed = 0
    if last is not None:
        removed = _delete_in_batches(
            entries.filter(id__lte=last), last, batch_size, progress
        )
    _record(ALL_COUNTERS if name is None else name, before, removed, actor)
    return removed


def _delete_in_batches(
    entries: QuerySet[CounterEvent],
    last: int,
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> int:
    """Delete ``entries`` in id order, ``batch_size`` at a time; return how many."""
    removed, after = 0, 0
    while True:
        batch = entries.filter(id__gt=after)
        # A batch is an id range ending at its batch_size-th entry: the
        # DELETE then names no list of ids, and each range is read once.
        ids = batch.order_by("id").values_list("id", flat=True)
        end = next(iter(ids[batch_size - 1 : batch_size]), None)
        if end is not None:
            batch = batch.filter(id__lte=end)
        with transaction.atomic():
            count, _ = batch.delete()
        removed += count
        if progress is not None:
            progress(count)
        if end is None or end == last:
            return removed
        after = end


def _record(label: str, before: datetime, removed: int, actor: Actor) -> None:
    """Add the audit entry of a prune, and log it once it is committed."""
    with transaction.atomic():
        CounterEvent.objects.create(
            counter_name=label,
            action=Action.PRUNE,
            old_value=removed,
            new_value=None,
            source=actor.source,
            actor=actor.who,
        )
        transaction.on_commit(
            lambda: logger.info(
                "counter %s prune: %s entries older than %s removed by %s via %s",
                label,
                removed,
                before.isoformat(),
                actor.who,
                actor.source,
            )
        )
