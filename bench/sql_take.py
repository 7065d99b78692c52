"""
The take with its statements written by hand: a yardstick for the ORM.

Benchmark only; the product never loads it. It does what
``counters.services.take._take_batch`` does, statement for statement —
``SELECT … FOR UPDATE``, ``UPDATE … RETURNING``, one multi-row ``INSERT``
of the audit entries, in one transaction per batch of combined takes — in
SQL sent through Django's cursor, on PostgreSQL. What the two takes'
rates differ by, in one run on one server, is what the ORM costs.
"""

from django.db import connection, transaction
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from counters.api import api_endpoint, client_actor, requested_step
from counters.combining import acombine, combine
from counters.exceptions import CounterError, CounterNotFound, not_public
from counters.models import Action
from counters.names import check_name
from counters.services.rules import check_sum, is_recorded
from counters.services.take import batch_in_thread, check_take_step

SELECT = (
    "SELECT value, public, audit_takes FROM counters_counter WHERE name = %s FOR UPDATE"
)
UPDATE = (
    "UPDATE counters_counter SET value = value + %s, updated_at = %s "
    "WHERE name = %s RETURNING value"
)
INSERT = (
    "INSERT INTO counters_counterevent (counter_name, action, old_value, "
    "new_value, source, actor, created_at) VALUES "
)


def take_batch(name: str, takes: list) -> list[int | CounterError]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(SELECT, [name])
        row = cursor.fetchone()
        if row is None:
            raise CounterNotFound(f"There is no counter named {name!r}.")
        value, public, audit_takes = row
        granted = [(actor, not public_only or public) for actor, public_only in takes]
        taken = sum(ok for _, ok in granted)
        if not taken:
            return [not_public(name) for _ in takes]
        check_sum(f"Counter {name!r}", value, taken)
        now = timezone.now()
        cursor.execute(UPDATE, [taken, now, name])
        [value] = cursor.fetchone()
        numbers = iter(range(value - taken + 1, value + 1))
        results = [next(numbers) if ok else not_public(name) for _, ok in granted]
        rows = [
            (name, Action.TAKE, number - 1, number, actor.source, actor.who, now)
            for (actor, _), number in zip(granted, results, strict=True)
            if not isinstance(number, CounterError)
            and is_recorded(actor, audit_takes=audit_takes)
        ]
        if rows:
            cursor.execute(
                INSERT + ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows)),
                [field for row in rows for field in row],
            )
    return results


@csrf_exempt
@api_endpoint("POST")
def take(request, name: str):
    """``counter_take_number`` with ``take_batch`` for the ORM's."""
    actor = client_actor(request)
    check_take_step(requested_step(request), actor=actor)
    check_name(name)
    item = (actor, True)
    number = combine(("take-sql", name), item, lambda takes: take_batch(name, takes))
    return JsonResponse({"name": name, "value": number})


@csrf_exempt
@api_endpoint("POST")
async def atake(request, name: str):
    """The ASGI twin of ``take``, as ``acounter_take_number`` is the product's."""
    actor = client_actor(request)
    check_take_step(requested_step(request), actor=actor)
    check_name(name)
    item = (actor, True)
    number = await acombine(
        ("take-sql", name), item, lambda takes: batch_in_thread(take_batch, name, takes)
    )
    return JsonResponse({"name": name, "value": number})


take.asgi_view = atake
