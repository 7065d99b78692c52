"""
Network faults under load from two app servers (#24): PostgreSQL or Redis
cut off for longer than the bounds, then healed.

PostgreSQL and Redis run in network namespaces of their own
(counterproject.testing.netfaults); the app servers and their clients stay
in the root namespace. The servers run with short bounds (a 2 s deadline,
a 1 s wait for the pool), so that a fault outlasts them in seconds.
Checked: 503s during the fault, no request waiting past the bound, takes
again after it, and of the numbers: none answered twice, no gap among those
committed, every answered one in the audit trail, real-time order kept.
"""

import json
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from counterproject.testing.servers import migrate
from counterproject.testing.visitors import Visitor
from counters.management.commands.loadtest import realtime_violations

from .conftest import started, wait_for

CLIENTS = 8
DEADLINE, POOL_TIMEOUT = 2, 1
# The longest a take may wait: its own batch's pool wait and deadline, and
# those of the batch it waited behind; with a margin for a shared machine.
# A correctness property of the bounds, not a speed claim.
BOUND = 2 * (DEADLINE + POOL_TIMEOUT) + 5
# Long enough that requests sent during the fault also end during it: a
# request in flight when it began may take two batches' bounds, and so may
# the next one.
FAULT_SECONDS = 4 * (DEADLINE + POOL_TIMEOUT)
KINDS = {
    "gevent": ("--worker-class", "gevent"),
    "gthread": ("--worker-class", "gthread"),
}


@dataclass
class Sent:
    began: float
    ended: float
    status: int | None  # None: no answer (the client's own timeout)
    value: int | None
    clean: bool  # a 200 with a number, or a 503 that says why


@dataclass
class Load:
    """Client threads taking numbers from two app servers in turn."""

    urls: list[str]
    clients: int = CLIENTS
    path: str = "/api/counters/global/increment/"
    sent: list[Sent] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self):
        self.threads = [
            threading.Thread(target=self._client, args=(n,))
            for n in range(self.clients)
        ]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _client(self, offset: int) -> None:
        session = requests.Session()
        deadline = time.monotonic() + 120  # bounded, whatever the test does
        for n in range(5000):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            url = self.urls[(offset + n) % len(self.urls)] + self.path
            began = time.monotonic()
            try:
                response = session.post(url, timeout=60)
            except requests.RequestException:
                self.sent.append(Sent(began, time.monotonic(), None, None, False))
                continue
            self.sent.append(answered(began, response))
            if response.status_code != 200:
                time.sleep(0.05)

    def between(self, start: float, end: float) -> list[Sent]:
        return [s for s in list(self.sent) if start <= s.began and s.ended <= end]


def answered(began: float, response: requests.Response) -> Sent:
    value, clean = None, False
    if response.status_code == 200:
        value = response.json().get("value")
        clean = isinstance(value, int)
    elif response.status_code == 503:
        clean = "unavailable" in response.text and "Retry-After" in response.headers
    return Sent(began, time.monotonic(), response.status_code, value, clean)


def show(name: str, load: Load, cut: float, healed: float, capsys) -> None:
    """Print the run's figures in pytest's output (the closing note's table)."""
    during = [s for s in load.sent if cut <= s.began < healed]
    numbers = [s.value for s in load.sent if s.status == 200]
    history = [(s.began, s.ended, s.value) for s in load.sent if s.status == 200]
    figures = {
        "answered": len(numbers),
        "refused_503_during": sum(s.status == 503 for s in during),
        "longest_request_during_s": round(
            max((s.ended - s.began for s in during), default=0), 2
        ),
        "duplicates": len(numbers) - len(set(numbers)),
        "realtime_violations": realtime_violations(history),
    }
    with capsys.disabled():
        print(f"\n{name}: {json.dumps(figures)}")


def audited(cluster) -> list[int]:
    """Return the numbers of global's take entries, as PostgreSQL holds them."""
    rows = cluster.psql(
        "SELECT new_value FROM counters_counterevent WHERE action = 'take'"
        " ORDER BY new_value",
        "counters",
    )
    return [int(row) for row in rows.split()]


def counters_database(cluster) -> str:
    """Create the migrated database ``counters`` on ``cluster``; return its URL."""
    cluster.create_database("counters")
    migrate(cluster.url("counters"))
    return cluster.url("counters")


def cut_off(load: Load, link) -> tuple[float, float]:
    """
    Cut ``link`` for FAULT_SECONDS once takes flow, heal it and wait until
    they flow again; return when it was cut and when healed.
    """
    assert wait_for(lambda: sum(s.status == 200 for s in load.sent) >= 50)
    link.partition()
    cut = time.monotonic()  # once every packet is dropped
    time.sleep(FAULT_SECONDS)
    healed = time.monotonic()
    link.heal()
    assert wait_for(
        lambda: sum(s.status == 200 and s.began > healed for s in load.sent) >= 50,
        seconds=60,
    ), "takes did not resume within 60 s of the heal"
    return cut, healed


def answered_once_in_order(load: Load) -> list[int]:
    """Check that no number was answered twice or out of real-time order."""
    numbers = [s.value for s in load.sent if s.status == 200]
    assert len(numbers) == len(set(numbers))  # none answered twice
    history = [(s.began, s.ended, s.value) for s in load.sent if s.status == 200]
    assert realtime_violations(history) == 0
    return numbers


def assert_committed_without_gap(numbers: list[int], cluster) -> None:
    """Check the committed takes: 1..N, the answered ones among them."""
    committed = audited(cluster)
    assert committed == list(range(1, len(committed) + 1))  # no gap
    assert set(numbers) <= set(committed)  # every answered one audited


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

    show(f"partition-primary-{kind}", load, cut, healed, capsys)
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
        assert [status for status, _ in visitor_answers] == [200] * len(
            visitor_answers
        )
        values = [value for _, value in visitor_answers]
        assert values == list(range(1, len(values) + 1))


@pytest.mark.postgresql
def test_a_primary_cut_off_from_its_synchronous_standby_answers_no_take(
    network, serve, capsys
):
    # The app servers still reach the primary; its commits wait for a
    # standby that does not answer (issue #24, scenario 2(b)).
    primary_host, standby_host = network.host("primary"), network.host("standby")
    replication = network.link(primary_host, standby_host)
    primary = started(
        network.postgres(
            primary_host,
            settings={
                "synchronous_commit": "on",
                "wal_sender_timeout": "2s",
            },
        ),
        "PostgreSQL",
    )
    url = counters_database(primary)
    standby = network.standby(
        primary,
        standby_host,
        replication,
        settings={"cluster_name": "standby", "wal_receiver_timeout": "2s"},
    )
    started(standby, "PostgreSQL standby")
    primary.psql("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
    primary.psql("SELECT pg_reload_conf()")
    env = {
        "DATABASE_URL": url,
        "DATABASE_QUERY_DEADLINE": str(DEADLINE),
        "DATABASE_POOL_TIMEOUT": str(POOL_TIMEOUT),
    }
    with (
        serve(env, workers=2, threads=None) as first,
        serve(env, workers=2, threads=None) as second,
        Load([first, second]) as load,
    ):
        cut, healed = cut_off(load, replication)

    show("standby-cut-off", load, cut, healed, capsys)
    during = load.between(cut + DEADLINE + POOL_TIMEOUT, healed)
    assert during and all(s.status == 503 and s.clean for s in during), during
    before_heal = [s for s in load.sent if s.began < healed]
    assert max(s.ended - s.began for s in before_heal) < BOUND
    numbers = answered_once_in_order(load)
    # Every answered number is on the standby: a failover would keep them.
    assert wait_for(lambda: set(numbers) <= set(audited(standby))), (
        "answered numbers the standby does not have"
    )


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
def test_a_slow_lossy_database_link_keeps_every_number_and_batches_grow(
    network, serve, capsys
):
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
            time.sleep(FAULT_SECONDS)
            batches, takes = batches_and_takes(cluster, since)
            phases[phase] = {
                "takes_per_s": round(takes / (time.monotonic() - began), 1),
                "takes_per_batch": round(takes / max(1, batches), 2),
                "answers": len(load.sent) - answered,
            }
        db.link.heal()
    with capsys.disabled():
        print(f"\nslow-lossy-link: {json.dumps(phases)}")
    assert all(s.status in (200, 503) and s.clean for s in load.sent)
    assert_committed_without_gap(answered_once_in_order(load), cluster)
    assert phases["slow, lossy"]["answers"] > 0
