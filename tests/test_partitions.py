"""
Network faults under load from two app servers (#24): PostgreSQL or Redis
cut off for longer than the bounds, then healed; and a slow, lossy link.

PostgreSQL and Redis run in network namespaces of their own
(counterproject.testing.netfaults); the app servers and their clients stay
in the root namespace. The servers run with short bounds (a 2 s deadline,
a 1 s wait for the pool), so that a fault outlasts them in seconds.
Checked: 503s during the fault, no request waiting past the bound, takes
again after it, and of the numbers: none answered twice, no gap among those
committed, every answered one in the audit trail, real-time order kept.
A primary cut off while its standby is promoted: test_failover_partitions.py.
"""

import threading
import time

import pytest

from counterproject.testing.visitors import Visitor

from .partitions import (
    BOUND,
    CLIENTS,
    DEADLINE,
    KINDS,
    POOL_TIMEOUT,
    Load,
    answered_once_in_order,
    assert_committed_without_gap,
    counters_database,
    cut_off,
    show,
)
from .reports import report
from .support import started, wait_for


@pytest.mark.postgresql
@pytest.mark.parametrize("kind", KINDS)
def test_a_partitioned_primary_gives_503s_within_the_bound_and_no_number_twice(
    network, serve, kind, capsys
):
    db = network.host("db")
    cluster = started(network.postgres(db), "PostgreSQL")
    env = {
        "DATABASE_URL": counters_database(cluster),
        "DATABASE_QUERY_DEADLINE": str(DEADLINE),
        "DATABASE_POOL_TIMEOUT": str(POOL_TIMEOUT),
    }
    threads = 8 if kind == "gthread" else None
    with (
        serve(env, workers=2, threads=threads, args=KINDS[kind]) as first,
        serve(env, workers=2, threads=threads, args=KINDS[kind]) as second,
        Load([first, second]) as load,
    ):
        cut, healed = cut_off(load, db.link)

    show(f"partition-primary-{kind}", load, cut, healed, cluster, capsys)
    during = load.between(cut, healed)
    assert during and all(s.status == 503 and s.clean for s in during), during
    # Sent before the heal: no wait past the bound, and never no answer.
    before_heal = [s for s in load.sent if s.began < healed]
    assert max(s.ended - s.began for s in before_heal) < BOUND
    assert all(s.status in (200, 503) and s.clean for s in load.sent)
    assert_committed_without_gap(answered_once_in_order(load), cluster)


def visit(url: str, visits: int, answers: list, stop: threading.Event) -> None:
    """One visitor: increment its own counter ``visits`` times at most."""
    visitor = Visitor(url)
    for _ in range(visits):
        if stop.is_set():
            return
        response = visitor.post("/api/me/increment/")
        answers.append((response.status_code, response.json().get("value")))


def test_a_partitioned_redis_costs_the_visitors_counters_nothing(network, serve):
    db, cache = network.host("db"), network.host("cache")
    cluster = started(network.postgres(db), "PostgreSQL")
    redis = started(network.redis(cache), "Redis")
    env = {"DATABASE_URL": counters_database(cluster), "REDIS_URL": redis.url}
    stop = threading.Event()
    answers = [[] for _ in range(CLIENTS)]
    with (
        serve(env, workers=2, threads=4) as first,
        serve(env, workers=2, threads=4) as second,
    ):
        visitors = [
            threading.Thread(
                target=visit, args=([first, second][n % 2], 400, answers[n], stop)
            )
            for n in range(CLIENTS)
        ]
        for thread in visitors:
            thread.start()
        try:
            assert wait_for(lambda: sum(map(len, answers)) >= 50)
            keys_before = redis.client().dbsize()
            cache.link.partition()
            during = sum(map(len, answers))
            assert wait_for(lambda: sum(map(len, answers)) >= during + 50, 60), (
                "the visitors were not answered during the partition"
            )
            cache.link.heal()
            healed = sum(map(len, answers))
            assert wait_for(lambda: sum(map(len, answers)) >= healed + 50, 60)
        finally:
            stop.set()
            for thread in visitors:
                thread.join(60)
        # The cache is used again: the sessions written since are in Redis.
        assert redis.client().dbsize() >= keys_before > 0
    for visitor_answers in answers:
        # Every increment answered, and none lost or counted twice.
        assert [status for status, _ in visitor_answers] == [200] * len(visitor_answers)
        values = [value for _, value in visitor_answers]
        assert values == list(range(1, len(values) + 1))


PHASE_SECONDS = 8  # each of the clean and the faulty link's


def batches_and_takes(cluster, since: int) -> tuple[int, int]:
    """Return the transactions and the takes of the audit entries after ``since``."""
    row = cluster.psql(
        "SELECT count(DISTINCT xmin::text), count(*) FROM counters_counterevent"
        f" WHERE action = 'take' AND id > {since}",
        "counters",
    )
    batches, takes = (int(n) for n in row.split("|"))
    return batches, takes


def last_entry(cluster) -> int:
    """Return the id of the newest audit entry (0 if none)."""
    sql = "SELECT coalesce(max(id), 0) FROM counters_counterevent"
    return int(cluster.psql(sql, "counters"))


@pytest.mark.postgresql
def test_a_slow_lossy_database_link_keeps_every_number(network, serve, capsys):
    db = network.host("db")
    cluster = started(network.postgres(db), "PostgreSQL")
    env = {"DATABASE_URL": counters_database(cluster)}
    phases = {}
    with (
        serve(env, workers=2, threads=None) as first,
        serve(env, workers=2, threads=None) as second,
        # Enough clients that takes queue behind a slow batch (4 workers).
        Load([first, second], clients=40) as load,
    ):
        for phase, fault in (("clean", None), ("slow, lossy", db.link)):
            if fault is not None:
                fault.slow("2mbit")
                fault.lossy(5)
            since, began = last_entry(cluster), time.monotonic()
            answered = len(load.sent)
            time.sleep(PHASE_SECONDS)
            batches, takes = batches_and_takes(cluster, since)
            phases[phase] = {
                "takes_per_s": round(takes / (time.monotonic() - began), 1),
                "takes_per_batch": round(takes / max(1, batches), 2),
                "answers": len(load.sent) - answered,
            }
        db.link.heal()
    report("slow-lossy-link", phases, capsys)
    assert all(s.status in (200, 503) and s.clean for s in load.sent)
    assert_committed_without_gap(answered_once_in_order(load), cluster)
    assert phases["slow, lossy"]["answers"] > 0
    # Takes still share transactions on the slow link (they queue behind a
    # batch in flight), rather than each paying its own round trips.
    assert phases["slow, lossy"]["takes_per_batch"] > 1
