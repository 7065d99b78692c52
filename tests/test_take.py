"""
Takes of one counter share one batch, whichever interface they come from (#14).

Real threads and real transactions on PostgreSQL: a second connection holds
the counter's row lock, so the first take waits in the database while the
others queue behind it in the worker; when the lock is released, the queued
takes run as one batch. That they shared one transaction is read from
PostgreSQL itself: the audit entries written in one transaction carry one
``xmin``.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from counters import combining
from counters.actors import Actor
from counters.exceptions import CounterNotPublic
from counters.models import Counter, CounterEvent, Source
from counters.services import counter_take

from .support import row_lock_held, transactions_of_takes

WEB = Actor(Source.WEB, "session:abc")
API = Actor(Source.API, "ip:192.0.2.1")


def _lane(name):
    return combining._lanes.get(("take", name))


def _queued(name) -> int:
    lane = _lane(name)
    return 0 if lane is None else len(lane.waiting)


def _takes_behind_a_held_row_lock(postgres, name, takes: list[tuple[Actor, bool]]):
    """Run ``takes`` queued behind a first take that waits for the row lock."""

    def take(actor_and_public_only):
        actor, public_only = actor_and_public_only
        try:
            return counter_take(name, actor=actor, public_only=public_only)
        except CounterNotPublic as exc:
            return exc
        finally:
            connection.close()

    with ThreadPoolExecutor(len(takes) + 1) as pool, row_lock_held(postgres, name):
        first = pool.submit(take, (WEB, False))
        deadline = time.monotonic() + 30
        # The first take leads and waits in the database; the others queue.
        while _lane(name) is None or not _lane(name).busy:
            assert time.monotonic() < deadline, "the first take never led"
            time.sleep(0.005)
        queued = [pool.submit(take, t) for t in takes]
        while _queued(name) < len(takes):
            assert time.monotonic() < deadline, "the takes never queued"
            time.sleep(0.005)
    # The lock is released: the first take, then the queued ones as a batch.
    return first.result(30), [future.result(30) for future in queued]


@pytest.mark.django_db(transaction=True)
def test_web_and_api_takes_of_one_counter_share_one_batch(postgres):
    Counter.objects.create(name="mixed", public=True, audit_takes=True)
    takes = [(WEB, False), (API, True)] * 10

    first, numbers = _takes_behind_a_held_row_lock(postgres, "mixed", takes)

    assert first == 1
    assert sorted(numbers) == list(range(2, 22))
    assert transactions_of_takes("mixed") == 1  # all twenty in one transaction
    sources = CounterEvent.objects.filter(counter_name="mixed", new_value__gt=1)
    assert sorted(sources.values_list("source", flat=True)) == sorted(
        [Source.WEB] * 10 + [Source.API] * 10
    )


@pytest.mark.django_db(transaction=True)
def test_an_anonymous_take_of_a_private_counter_is_refused_alone(postgres):
    Counter.objects.create(name="staff-only", public=False, audit_takes=True)
    takes = [(WEB, False), (API, True)] * 5

    first, outcomes = _takes_behind_a_held_row_lock(postgres, "staff-only", takes)

    refused = outcomes[1::2]
    assert all(isinstance(exc, CounterNotPublic) for exc in refused)
    assert all("'staff-only' is not public" in str(exc) for exc in refused)
    # The others of the batch got their numbers, with no gap for the refused.
    assert first == 1
    assert sorted(outcomes[0::2]) == [2, 3, 4, 5, 6]
    assert Counter.objects.get(name="staff-only").value == 6
    recorded = CounterEvent.objects.filter(counter_name="staff-only")
    assert set(recorded.values_list("source", flat=True)) == {Source.WEB}
    assert recorded.count() == 6
