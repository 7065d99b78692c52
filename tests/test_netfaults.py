"""
The network fault harness (#24): PostgreSQL and Redis in network namespaces
of their own, and the faults of their links switched on and off while they
serve.

Network namespaces need root: without it the tests skip locally and fail
under CI=true, like the other servers.
"""

import contextlib
import json
import subprocess
import threading
from collections import Counter as Tally
from pathlib import Path

import psycopg2
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from counterproject.testing import netfaults

from .support import started, unavailable, wait_for

STANDBY = "standby"  # its cluster_name, and so its application_name
REPLY = 50_000  # characters in each answer of the traffic on a faulty link


def usable() -> None:
    ok, reason = netfaults.available()
    if not ok:
        unavailable(f"The network fault harness cannot run: {reason}")


def connect(cluster, **options):
    """Open a session on ``cluster`` that gives up on a dead link in seconds."""
    # libpq's connect_timeout counts whole seconds, at least 2.
    options = {"connect_timeout": 2, "tcp_user_timeout": 2000, **options}
    return psycopg2.connect(cluster.url(), **options)


def select_one(connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]


def answers(cluster) -> bool:
    """Return whether a new session on ``cluster`` answers SELECT 1."""
    connection = connect(cluster)
    try:
        return select_one(connection) == 1
    finally:
        connection.close()


@pytest.mark.postgresql
def test_a_partitioned_postgres_answers_no_session_until_healed(network):
    db = network.host("db")
    cluster = started(network.postgres(db), "PostgreSQL")
    assert cluster.host == db.address
    existing = connect(cluster)
    try:
        assert answers(cluster) and select_one(existing) == 1
        db.link.partition()
        with pytest.raises(psycopg2.OperationalError, match="timeout expired"):
            connect(cluster)
        # Sent, never acknowledged: tcp_user_timeout ends the session.
        with pytest.raises(psycopg2.OperationalError, match="timed out"):
            select_one(existing)
        db.link.heal()
        assert answers(cluster)
    finally:
        existing.close()


FAULTS = {
    "partition": lambda network, host: host.link.partition(),
    "requests dropped": lambda network, host: host.link.drop_one_way(network.root),
    "replies dropped": lambda network, host: host.link.drop_one_way(host),
    "every packet lost": lambda network, host: host.link.lossy(100),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_redis_behind_a_fault_times_out_until_healed(network, fault):
    cache = network.host("cache")
    server = started(network.redis(cache), "Redis")
    client = redis.Redis.from_url(
        server.url,
        socket_timeout=1,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        assert client.ping()
        FAULTS[fault](network, cache)
        with pytest.raises(redis.TimeoutError):
            client.ping()
        cache.link.heal()
        assert client.ping()
    finally:
        client.close()


def streaming_from(primary) -> str:
    """Return the address the standby streams from, or "" if it does not."""
    return primary.psql(
        "SELECT client_addr FROM pg_stat_replication "
        f"WHERE application_name = '{STANDBY}' AND state = 'streaming'"
    )


@pytest.mark.postgresql
def test_cutting_the_standby_link_stops_replication_but_not_the_primary(network):
    primary_host, standby_host = network.host("primary"), network.host("standby")
    replication = network.link(primary_host, standby_host)
    # Each side gives up on a silent peer after 2 s, not the default 60 s.
    primary = network.postgres(primary_host, settings={"wal_sender_timeout": "2s"})
    started(primary, "PostgreSQL")
    primary.psql("CREATE TABLE numbers (n int)")
    standby = network.standby(
        primary,
        standby_host,
        replication,
        settings={"cluster_name": STANDBY, "wal_receiver_timeout": "2s"},
    )
    started(standby, "PostgreSQL standby")
    count = "SELECT count(*) FROM numbers"
    # Over the direct link: the standby's namespace has no route to the other.
    over_link = replication.address(standby_host)
    assert wait_for(lambda: streaming_from(primary) == over_link)
    primary.psql("INSERT INTO numbers VALUES (1)")
    assert wait_for(lambda: standby.psql(count) == "1")

    replication.partition()
    assert wait_for(lambda: not streaming_from(primary)), streaming_from(primary)
    assert answers(primary)
    primary.psql("INSERT INTO numbers VALUES (2)")
    assert standby.psql(count) == "1"

    replication.heal()
    assert wait_for(lambda: standby.psql(count) == "2", 60)


class Traffic:
    """A client thread querying ``cluster`` until stopped, counting by phase."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.phase = "before"
        self.answered = Tally()
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._query)

    def __enter__(self) -> "Traffic":
        # Lost segments are sent again: only a link dead for 30 s ends it.
        self.connection = connect(self.cluster, tcp_user_timeout=30_000)
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()

    def _query(self) -> None:
        try:
            while not self.stop.is_set():
                phase = self.phase
                with self.connection.cursor() as cursor:
                    cursor.execute("SELECT repeat('x', %s)", [REPLY])
                    if len(cursor.fetchone()[0]) == REPLY:
                        self.answered[phase] += 1
        except psycopg2.Error as exc:
            self.failures.append(f"{self.phase}: {exc}")
        finally:
            self.connection.close()


def root_qdisc(end) -> str:
    """Return the kind of the queueing discipline at the root of ``end``."""
    netns = ["-n", end.host.netns] if end.host.netns else []
    command = ["tc", *netns, "-j", "qdisc", "show", "dev", end.device, "root"]
    output = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(output.stdout)[0]["kind"]


@pytest.mark.postgresql
def test_a_session_stays_usable_while_the_link_turns_slow_and_lossy(network):
    db = network.host("db")
    cluster = started(network.postgres(db), "PostgreSQL")
    phases = {
        "slow": lambda: db.link.slow("1mbit"),
        "slow and lossy": lambda: db.link.lossy(10),
        "healed": db.link.heal,
    }
    with Traffic(cluster) as traffic:
        for phase, fault in phases.items():
            fault()
            traffic.phase = phase
            answered = traffic.answered
            assert wait_for(
                lambda p=phase, answered=answered: answered[p] >= 3 or traffic.failures
            )
            assert traffic.failures == []
            if phase == "slow":
                assert [root_qdisc(end) for end in db.link.ends] == ["tbf", "tbf"]
    assert traffic.failures == []


def leftovers(suffix: str) -> list[str]:
    """Return the namespaces, devices and nftables tables named with ``suffix``."""
    found = []
    for command in ("ip netns list", "ip link show", "nft list tables"):
        output = subprocess.run(
            command.split(), capture_output=True, text=True, check=True
        )
        found += [line for line in output.stdout.splitlines() if suffix in line]
    return found


def running(pid: int) -> bool:
    """Return whether ``pid`` runs (a zombie has ended)."""
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(FileNotFoundError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


@pytest.mark.parametrize("fails", [False, True], ids=["closed", "after an error"])
def test_closing_removes_every_namespace_link_and_rule(fails):
    usable()
    failing = pytest.raises(RuntimeError, match="the test failed")
    with failing if fails else contextlib.nullcontext():
        with netfaults.Network() as network:
            cache, other = network.host("cache"), network.host("other")
            link = network.link(cache, other)
            started(network.redis(cache), "Redis")
            pids = cache.pids()
            cache.link.slow()
            cache.link.lossy(5)
            link.partition()
            link.lossy(5)
            assert leftovers(network.suffix)
            if fails:
                raise RuntimeError("the test failed")
    assert pids
    assert leftovers(network.suffix) == []
    assert not [pid for pid in pids if running(pid)]
