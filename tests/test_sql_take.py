"""
bench/sql_take.py against the product's take: the same takes, the same outcome.

The take with its SQL written by hand is the yardstick bench/run.py measures
the ORM by, which it is only if it does what ``_take_batch`` does: the same
numbers, the same refusals, the same value stored and the same audit
entries. Each test runs the same takes through both, on PostgreSQL (the hand
written SQL is PostgreSQL's), and compares.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from bench import sql_take
from counters.actors import Actor
from counters.combining import combine
from counters.exceptions import CounterError
from counters.models import INT64_MAX, Counter, CounterEvent, Source
from counters.services.take import _take_batch, counter_take

pytestmark = pytest.mark.django_db(transaction=True)

BATCHES = {"ORM": _take_batch, "by hand": sql_take.take_batch}
API = Actor(source=Source.API, who="127.0.0.1")
ADMIN = Actor(source=Source.ADMIN, who="staff")
CLI = Actor(source=Source.CLI, who="operator")
# (actor, public_only): anonymous and staff takes, recorded or not.
MIXED = [
    (None, False),
    (API, True),
    (ADMIN, False),
    (API, False),
    (None, True),
    (CLI, True),
    (API, True),
]
TAKERS = 40


def outcome(batch, name: str, takes: list) -> dict:
    """Run one batch; return what it answered, stored and recorded."""
    before = Counter.objects.get(name=name)
    try:
        results = [
            (type(r).__name__, str(r)) if isinstance(r, CounterError) else r
            for r in batch(name, takes)
        ]
    except CounterError as error:
        results = [(type(error).__name__, str(error))]
    after = Counter.objects.filter(name=name).first()
    return {
        "results": results,
        "value": after.value,
        "touched": after.updated_at > before.updated_at,
        "events": list(
            CounterEvent.objects.filter(counter_name=name)
            .order_by("id")
            .values_list(
                "counter_name", "action", "old_value", "new_value", "source", "actor"
            )
        ),
    }


def both(name: str, takes: list, *, value: int = 0, **flags) -> dict:
    """Return each batch's outcome, from the same counter made anew for each."""
    outcomes = {}
    for way, batch in BATCHES.items():
        CounterEvent.objects.filter(counter_name=name).delete()
        Counter.objects.filter(name=name).delete()
        Counter.objects.create(name=name, value=value, **flags)
        outcomes[way] = outcome(batch, name, takes)
    return outcomes


@pytest.mark.parametrize("public", [True, False])
@pytest.mark.parametrize("audit_takes", [True, False])
def test_a_batch_by_hand_answers_stores_and_records_what_the_orm_does(
    postgres, public, audit_takes
):
    outcomes = both("alike", MIXED, public=public, audit_takes=audit_takes)
    assert outcomes["by hand"] == outcomes["ORM"]
    orm = outcomes["ORM"]
    granted = sum(not public_only or public for _, public_only in MIXED)
    # Something happened to compare: numbers handed out, and the refusals of
    # anonymous takes of a private counter.
    assert orm["value"] == granted and orm["touched"]
    assert [r for r in orm["results"] if isinstance(r, int)] == list(
        range(1, granted + 1)
    )
    recorded = [
        (actor.source, actor.who)
        for (actor, public_only), result in zip(MIXED, orm["results"], strict=True)
        if actor
        and isinstance(result, int)
        and (audit_takes or actor.source != Source.API)
    ]
    assert [event[4:] for event in orm["events"]] == recorded


def test_a_batch_by_hand_refuses_what_the_orm_refuses(postgres):
    # Every take anonymous on a private counter: all refused, nothing stored.
    anonymous = [(API, True), (None, True)]
    outcomes = both("private", anonymous, public=False, audit_takes=True)
    assert outcomes["by hand"] == outcomes["ORM"]
    assert outcomes["ORM"]["value"] == 0 and not outcomes["ORM"]["touched"]
    assert [kind for kind, _ in outcomes["ORM"]["results"]] == ["CounterNotPublic"] * 2
    # Past the 64-bit range: the whole batch refused, with the same sentence.
    outcomes = both("full", MIXED, value=INT64_MAX - 2, public=True)
    assert outcomes["by hand"] == outcomes["ORM"]
    [(kind, message)] = outcomes["ORM"]["results"]
    assert kind == "OutOfRange" and "64-bit range" in message, message
    assert outcomes["ORM"]["value"] == INT64_MAX - 2 and not outcomes["ORM"]["events"]


def test_a_missing_counter_is_refused_alike(postgres):
    refusals = {}
    for way, batch in BATCHES.items():
        with pytest.raises(CounterError) as raised:
            batch("absent", [(API, True)])
        refusals[way] = (type(raised.value).__name__, str(raised.value))
    assert (
        refusals["by hand"]
        == refusals["ORM"]
        == (
            "CounterNotFound",
            "There is no counter named 'absent'.",
        )
    )


def concurrent_takes(name: str, take) -> dict:
    """
    Take from ``name`` in TAKERS threads at once, each as an actor of its
    own (some anonymous); return each thread's number by its actor's name.
    """
    start = threading.Barrier(TAKERS, timeout=30)

    def one(index: int):
        actor = None if index % 4 == 0 else Actor(source=Source.API, who=f"c{index}")
        start.wait()
        try:
            return (actor.who if actor else None), take(name, actor)
        finally:
            connection.close()  # threads get no request-end cleanup

    with ThreadPoolExecutor(max_workers=TAKERS) as pool:
        return list(pool.map(one, range(TAKERS)))


def orm_take(name: str, actor) -> int:
    return counter_take(name, actor=actor, public_only=True)


def sql_take_(name: str, actor) -> int:
    # As bench/sql_take.py's view takes: its own lane of combined takes.
    return combine(
        ("take-sql", name), (actor, True), lambda t: sql_take.take_batch(name, t)
    )


def test_concurrent_takes_by_hand_hand_out_and_record_what_the_orm_does(postgres):
    outcomes = {}
    for way, take in (("ORM", orm_take), ("by hand", sql_take_)):
        name = "orm" if way == "ORM" else "sql"
        Counter.objects.create(name=name, public=True, audit_takes=True)
        taken = concurrent_takes(name, take)
        events = CounterEvent.objects.filter(counter_name=name)
        # Each audit entry names the thread that got its number, and steps
        # from the number before it.
        got = {number: who for who, number in taken}
        assert all(
            (event.actor, event.old_value)
            == (got[event.new_value], event.new_value - 1)
            for event in events
        )
        outcomes[way] = {
            "numbers": sorted(number for _, number in taken),
            "value": Counter.objects.get(name=name).value,
            "audited": sorted(got[e.new_value] is not None for e in events),
            "entries": sorted(
                (e.action, e.source, e.new_value - e.old_value) for e in events
            ),
            "anonymous": sum(who is None for who, _ in taken),
        }
    assert outcomes["by hand"] == outcomes["ORM"]
    assert outcomes["ORM"]["numbers"] == list(range(1, TAKERS + 1))
    assert outcomes["ORM"]["value"] == TAKERS
    # Only the takes with an actor are recorded, one entry each.
    recorded = TAKERS - outcomes["ORM"]["anonymous"]
    assert outcomes["ORM"]["entries"] == [("take", "api", 1)] * recorded
