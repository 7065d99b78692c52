"""
Takes that arrive together share one transaction (counters.combining).

The mechanism is driven with real threads; the database tests use real
transactions, on both databases (the trigger test on PostgreSQL only).
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

from counters import combining
from counters.actors import Actor
from counters.combining import combine
from counters.exceptions import OutOfRange
from counters.models import INT64_MAX, Counter, CounterEvent, Source
from counters.services import counter_take

from .support import stored_value, wait_for


class Boom(Exception):
    pass


def wait_until_queued(key: str, count: int, *, seconds: float = 30.0) -> None:
    """Wait until ``count`` calls wait behind the running batch of lane ``key``."""
    lane = combining._lanes[key]

    def queued() -> bool:
        with lane.lock:
            return len(lane.waiting) >= count

    if not wait_for(queued, seconds, interval=0.005):
        pytest.fail(f"{count} calls did not queue on {key!r} within {seconds} s")


def test_calls_that_wait_together_run_as_one_batch_and_get_their_own_results():
    batches = []
    first_running = threading.Event()
    release = threading.Event()

    def run(items):
        batches.append(list(items))
        if len(batches) == 1:
            first_running.set()
            release.wait(10)
        return [item * 10 for item in items]

    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(combine, "lane-a", 0, run)
        assert first_running.wait(10)
        rest = [pool.submit(combine, "lane-a", i, run) for i in range(1, 6)]
        wait_until_queued("lane-a", 5)
        release.set()
        results = [first.result(10)] + [f.result(10) for f in rest]

    assert results == [0, 10, 20, 30, 40, 50]
    assert batches == [[0], [1, 2, 3, 4, 5]]


def test_a_failed_batch_fails_every_call_in_it_and_no_other():
    first_running = threading.Event()
    release = threading.Event()
    calls = []

    def run(items):
        calls.append(list(items))
        if len(calls) == 1:
            first_running.set()
            release.wait(10)
            return items
        raise Boom(f"batch of {len(items)} failed")

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(combine, "lane-b", "a", run)
        assert first_running.wait(10)
        rest = [pool.submit(combine, "lane-b", x, run) for x in "bcd"]
        wait_until_queued("lane-b", 3)
        release.set()
        assert first.result(10) == "a"
        errors = [f.exception(10) for f in rest]

    assert [type(e) for e in errors] == [Boom, Boom, Boom]
    assert {str(e) for e in errors} == {"batch of 3 failed"}
    # Each thread raised its own exception object.
    assert len({id(e) for e in errors}) == 3
    # The lane is free again afterwards.
    assert combine("lane-b", "e", lambda items: items) == "e"


@pytest.mark.django_db(transaction=True)
def test_takes_near_the_limit_fail_whole_batches_and_skip_no_number():
    start_value = INT64_MAX - 5
    Counter.objects.create(name="edge", value=start_value, public=True)
    takers = 40
    gate = threading.Barrier(takers, timeout=30)

    def take(_):
        gate.wait()
        try:
            return counter_take("edge")
        except OutOfRange as exc:
            return exc
        finally:
            connection.close()

    with ThreadPoolExecutor(takers) as pool:
        outcomes = list(pool.map(take, range(takers)))

    numbers = sorted(n for n in outcomes if isinstance(n, int))
    errors = [e for e in outcomes if isinstance(e, OutOfRange)]
    assert len(numbers) + len(errors) == takers
    assert 0 < len(numbers) <= 5
    # Whatever batches failed, the numbers given out are still gapless.
    assert numbers == list(range(start_value + 1, start_value + 1 + len(numbers)))
    assert stored_value("edge") == start_value + len(numbers)
    assert all("would leave the signed 64-bit range" in str(e) for e in errors)


@pytest.mark.django_db(transaction=True)
def test_a_database_failure_fails_the_batch_and_consumes_no_number(postgres):
    Counter.objects.create(name="flaky", public=True, audit_takes=True)
    with connection.cursor() as cursor:
        # Every audit entry written by the client named "ip:fail" aborts its
        # whole transaction, as a real failure mid-batch would.
        cursor.execute(
            """
            CREATE FUNCTION refuse_fail() RETURNS trigger AS $$
            BEGIN
              IF NEW.actor = 'ip:fail' THEN RAISE EXCEPTION 'refused'; END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER refuse_fail BEFORE INSERT ON counters_counterevent
              FOR EACH ROW EXECUTE FUNCTION refuse_fail();
            """
        )
    takers = 60
    gate = threading.Barrier(takers, timeout=30)

    def take(i):
        who = "ip:fail" if i % 15 == 0 else f"ip:{i}"
        gate.wait()
        try:
            return counter_take("flaky", actor=Actor(Source.API, who))
        except Exception as exc:  # noqa: BLE001 - the test sorts them
            return exc
        finally:
            connection.close()

    try:
        with ThreadPoolExecutor(takers) as pool:
            outcomes = list(pool.map(take, range(takers)))
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER refuse_fail ON counters_counterevent;"
                "DROP FUNCTION refuse_fail();"
            )

    numbers = sorted(n for n in outcomes if isinstance(n, int))
    failures = [e for e in outcomes if not isinstance(e, int)]
    # The refused clients failed with the database's own error, and so did
    # whoever shared their transaction; nobody else failed.
    assert all(not isinstance(outcomes[i], int) for i in range(0, takers, 15))
    assert all("refused" in str(e) for e in failures)
    # Failed batches consumed no number: what was handed out is gapless,
    # stored and recorded once each.
    assert numbers == list(range(1, len(numbers) + 1))
    assert stored_value("flaky") == len(numbers)
    recorded = CounterEvent.objects.filter(counter_name="flaky")
    assert sorted(recorded.values_list("new_value", flat=True)) == numbers


@pytest.mark.django_db(transaction=True)
def test_a_take_inside_the_callers_transaction_rolls_back_with_it():
    Counter.objects.create(name="inner", public=True)
    with pytest.raises(Boom):
        with transaction.atomic():
            assert counter_take("inner") == 1
            raise Boom
    assert stored_value("inner") == 0
    assert counter_take("inner") == 1


def test_idle_lanes_are_dropped_so_keys_cannot_pile_up():
    for number in range(1000):
        assert combine(("take", f"no-such-counter-{number}"), number, list) == number
    assert not [key for key in combining._lanes if "no-such-counter" in str(key)]
