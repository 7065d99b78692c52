"""Audit entries of a chosen age, for the tests of pruning and the admin."""

from datetime import UTC, datetime

from counters.models import Action, CounterEvent, Source

OLD = datetime(2020, 6, 1, tzinfo=UTC)
CUT = datetime(2021, 1, 1, tzinfo=UTC)


def entries_at(name: str, count: int, moment: datetime) -> list[int]:
    """Add ``count`` take entries of the named counter, dated ``moment``."""
    made = CounterEvent.objects.bulk_create(
        CounterEvent(
            counter_name=name,
            action=Action.TAKE,
            old_value=number - 1,
            new_value=number,
            source=Source.API,
            actor="ip:127.0.0.1",
        )
        for number in range(1, count + 1)
    )
    ids = [entry.id for entry in made]
    # created_at is set on insert (auto_now_add): date the entries afterwards.
    CounterEvent.objects.filter(id__in=ids).update(created_at=moment)
    return ids
