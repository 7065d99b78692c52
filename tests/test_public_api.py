"""
The app's public API (``import counters``), as a project's own code calls it
(#27): the names it promises, each the service or selector it stands for.
"""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

import counters
from counters import selectors, services
from counters.models import Action

from .support import stored_value

TAKERS = 40

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def invoice(db):
    return counters.create("invoice")


def test_every_public_name_is_there():
    for name in counters.__all__:
        assert getattr(counters, name) is not None, name
    assert counters.take is services.counter_take
    assert counters.atake is services.acounter_take
    assert counters.value is selectors.counter_value
    assert counters.history is selectors.counter_history


def test_a_name_it_does_not_promise_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'counter_take'"):
        counters.counter_take  # noqa: B018 - the service's own name is not public


def test_concurrent_takes_from_threads_get_each_number_once(invoice):
    start = threading.Barrier(TAKERS, timeout=30)

    def take(_):
        start.wait()
        try:
            return counters.take("invoice")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=TAKERS) as pool:
        numbers = list(pool.map(take, range(TAKERS)))

    assert sorted(numbers) == list(range(1, TAKERS + 1))
    assert counters.value("invoice") == TAKERS


def test_async_takes_in_one_event_loop_get_each_number_once(invoice):
    async def take_all():
        return await asyncio.gather(*(counters.atake("invoice") for _ in range(20)))

    assert sorted(asyncio.run(take_all())) == list(range(1, 21))
    assert stored_value("invoice") == 20


def test_a_take_inside_the_callers_transaction_is_undone_with_it(invoice):
    class Undo(Exception):
        pass

    with pytest.raises(Undo), transaction.atomic():
        assert counters.take("invoice") == 1
        raise Undo
    # The number was never used: the next take hands it out.
    assert counters.take("invoice") == 1


def test_staff_changes_are_recorded_with_their_actor(invoice):
    ada = counters.Actor(counters.Source.ADMIN, "user:ada")
    assert counters.increment("invoice", by=5, actor=ada) == 5
    assert counters.decrement("invoice", by=2, actor=ada) == 3
    assert counters.set("invoice", 10, actor=ada) == 10
    assert counters.reset("invoice", actor=ada) == 0
    entries = counters.history("invoice", limit=4)
    assert [(e.action, e.old_value, e.new_value, e.actor) for e in entries] == [
        (Action.RESET, 10, 0, "user:ada"),
        (Action.SET, 3, 10, "user:ada"),
        (Action.DECREMENT, 5, 3, "user:ada"),
        (Action.INCREMENT, 0, 5, "user:ada"),
    ]


def test_a_refusal_is_a_counter_error_that_changes_nothing(invoice):
    with pytest.raises(counters.CounterNotFound, match="no counter named 'missing'"):
        counters.take("missing")
    with pytest.raises(counters.InvalidStep):
        counters.increment("invoice", by=0)
    assert issubclass(counters.OutOfRange, counters.CounterError)
    assert counters.value("invoice") == 0
