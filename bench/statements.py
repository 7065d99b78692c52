"""
What each statement of a batch of takes costs in CPU, the ORM's beside SQL
written by hand: one connection, no other load.

    DATABASE_URL=postgres://… DJANGO_SETTINGS_MODULE=bench.settings \
        python bench/statements.py [--batches 300] [--takes 4 20]

``bench/run.py`` runs it and keeps its JSON with the run's; bench/render.py
makes it a table of docs/benchmarks.md. A batch holds its counter's row lock
from its ``SELECT … FOR UPDATE`` to its ``COMMIT``, and only one batch holds
it at a time: what the process spends in between, a busy counter's every
other batch waits for. CPU time of this thread, not wall time, so that the
figures hold on a shared machine. Prints JSON: ``{"<takes>": {"ORM" | "by
hand": {step: microseconds}}}``, medians.
"""

import argparse
import json
import os
import statistics
import sys
import time
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STEPS = ["BEGIN, SELECT … FOR UPDATE", "UPDATE … RETURNING", "INSERT", "COMMIT"]
COUNTER = "bench-statements"


def orm_batch(takes: int, actor) -> list[float]:
    """The statements of ``_take_batch``, through the ORM; each step's CPU."""
    from django.db import transaction

    from counters.models import Action, CounterEvent
    from counters.services.rules import add_locked, locked

    marks = [time.thread_time()]
    with transaction.atomic():
        counter = locked(COUNTER)
        marks.append(time.thread_time())
        add_locked(counter, takes)
        marks.append(time.thread_time())
        CounterEvent.objects.bulk_create(
            CounterEvent(
                counter_name=COUNTER,
                action=Action.TAKE,
                old_value=number - 1,
                new_value=number,
                source=actor.source,
                actor=actor.who,
            )
            for number in range(counter.value - takes + 1, counter.value + 1)
        )
        marks.append(time.thread_time())
    marks.append(time.thread_time())
    return [b - a for a, b in pairwise(marks)]


def sql_batch(takes: int, actor) -> list[float]:
    """The same statements as ``bench/sql_take.py`` sends them; each step's CPU."""
    from django.db import connection, transaction
    from django.utils import timezone

    from bench.sql_take import INSERT, SELECT, UPDATE
    from counters.models import Action

    marks = [time.thread_time()]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(SELECT, [COUNTER])
        cursor.fetchone()
        marks.append(time.thread_time())
        now = timezone.now()
        cursor.execute(UPDATE, [takes, now, COUNTER])
        [value] = cursor.fetchone()
        marks.append(time.thread_time())
        rows = [
            (COUNTER, Action.TAKE, n - 1, n, actor.source, actor.who, now)
            for n in range(value - takes + 1, value + 1)
        ]
        cursor.execute(
            INSERT + ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows)),
            [field for row in rows for field in row],
        )
        marks.append(time.thread_time())
    marks.append(time.thread_time())
    return [b - a for a, b in pairwise(marks)]


def measure(batches: int, sizes: list[int]) -> dict:
    import django

    django.setup()
    from counters.actors import Actor
    from counters.models import Counter, Source

    Counter.objects.get_or_create(
        name=COUNTER, defaults={"public": True, "audit_takes": True}
    )
    actor = Actor(source=Source.API, who="127.0.0.1")
    results = {}
    for takes in sizes:
        results[str(takes)] = {}
        for label, batch in (("ORM", orm_batch), ("by hand", sql_batch)):
            for _ in range(batches // 5):  # warm up: caches, the connection
                batch(takes, actor)
            steps = zip(*(batch(takes, actor) for _ in range(batches)), strict=True)
            results[str(takes)][label] = {
                step: round(statistics.median(times) * 1e6)
                for step, times in zip(STEPS, steps, strict=True)
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--takes", type=int, nargs="+", default=[4, 20])
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("Error: set DATABASE_URL to a PostgreSQL database to measure.")
    print(json.dumps(measure(args.batches, args.takes)))


if __name__ == "__main__":
    main()
