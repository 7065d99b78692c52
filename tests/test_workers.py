"""
Every gunicorn worker kind the question names: threads, gevent and ASGI.

Each serves thousands of takes from hundreds of clients with exact numbers
in real-time order, and holds a bounded number of PostgreSQL connections
however many clients there are (#11). Speed lives in bench/, not here.
"""

import asyncio
import json
import os
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2
import pytest
import requests
from django.db import connection

from counterproject.testing.visitors import Visitor
from counters.models import GLOBAL, CounterEvent
from loadtest.load import run_load

from .support import database_url, manage_on_test_database, stored_value, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = 2
POOL_SIZE = 16  # settings.POOL_OPTIONS
KINDS = {
    "gthread-4": {"threads": 4, "args": ("--worker-class", "gthread")},
    "gthread-16": {"threads": 16, "args": ("--worker-class", "gthread")},
    "gthread-64": {"threads": 64, "args": ("--worker-class", "gthread")},
    "gevent": {"threads": None, "args": ("--worker-class", "gevent")},
    "asgi": {
        "threads": None,
        "args": ("--worker-class", "asgi", "counterproject.asgi:application"),
    },
}
APP = "counters-served"  # application_name of the served app's connections


@pytest.fixture(params=["gthread-4", "gthread-16", "gevent", "asgi"])
def served_kind(request, postgres, global_counter, serve):
    kind = KINDS[request.param]
    env = {"DATABASE_URL": f"{database_url()}?application_name={APP}"}
    with serve(env, workers=WORKERS, **kind) as base_url:
        yield base_url


def test_every_worker_kind_hands_out_exact_numbers_in_real_time_order(served_kind):
    takes = 2000
    summary = run(f"{served_kind}/api/counters/global/increment/", 200, takes)

    assert summary["errors"] == {}
    assert summary["ok"] == takes
    assert summary["duplicates"] == 0 and summary["gaps"] == 0
    assert (summary["first"], summary["last"]) == (1, takes)
    assert summary["realtime_violations"] == 0
    assert stored_value() == takes
    # global records every take: the trail holds each number once.
    recorded = CounterEvent.objects.filter(counter_name=GLOBAL, action="take")
    assert sorted(recorded.values_list("new_value", flat=True)) == list(
        range(1, takes + 1)
    )


@pytest.mark.parametrize("kind", ["gthread-64", "gevent", "asgi"])
def test_a_worker_holds_a_bounded_number_of_connections_under_500_clients(
    kind, postgres, global_counter, serve
):
    env = {"DATABASE_URL": f"{database_url()}?application_name={APP}"}
    with serve(env, workers=WORKERS, **KINDS[kind]) as base_url:
        visitor = Visitor(base_url)
        visitor.post("/api/me/increment/").raise_for_status()
        headers = {
            "Cookie": "; ".join(f"{k}={v}" for k, v in visitor.cookies.items()),
            "X-CSRFToken": visitor.cookies["csrftoken"],
        }
        with Watcher(postgres.url(connection.settings_dict["NAME"])) as watcher:
            # 500 clients at once on one visitor's counter: each request holds
            # a connection while it waits for the session row's lock, so
            # without the pool every one of them would hold its own.
            mine = run(f"{base_url}/api/me/increment/", 500, 1000, headers=headers)
            takes = run(f"{base_url}/api/counters/global/increment/", 500, 1000)
        final = visitor.value()

    assert mine["errors"] == {} and takes["errors"] == {}
    assert mine["ok"] == 1000 and final == 1 + 1000
    assert takes["ok"] == 1000 and takes["consecutive"]
    assert 0 < watcher.most <= WORKERS * POOL_SIZE


def run(url: str, clients: int, count: int, **kwargs) -> dict:
    results = asyncio.run(
        run_load(url, clients, count, timeout=60, max_seconds=180, **kwargs)
    )
    return results.summary()


class Watcher:
    """Poll how many connections the served app holds; keep the most seen."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        # Its own connection: the test's Django connection is not thread-safe.
        db = psycopg2.connect(self.url)
        db.autocommit = True
        try:
            with db.cursor() as cursor:
                while not self._stop.wait(0.02):
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name = %s",
                        [APP],
                    )
                    self.most = max(self.most, cursor.fetchone()[0])
        finally:
            db.close()


def test_under_gevent_a_take_waiting_on_the_database_stalls_no_other_request(
    postgres, global_counter, serve
):
    env = {"DATABASE_URL": database_url()}
    with serve(env, workers=1, **KINDS["gevent"]) as base_url:
        holder = psycopg2.connect(postgres.url(connection.settings_dict["NAME"]))
        try:
            with holder.cursor() as cursor:
                # Hold the counter's row lock: the take must wait in PostgreSQL.
                cursor.execute(
                    "SELECT value FROM counters_counter WHERE name = %s FOR UPDATE",
                    [GLOBAL],
                )
            with ThreadPoolExecutor(1) as pool:
                take = pool.submit(
                    requests.post,
                    f"{base_url}/api/counters/global/increment/",
                    timeout=30,
                )
                wait_until_waiting_for_the_lock(holder)
                # The worker's one process still answers while its take waits.
                health = requests.get(f"{base_url}/healthz", timeout=30)
                assert health.status_code == 200
                assert not take.done()
                holder.rollback()  # release the lock
                answer = take.result(timeout=30)
        finally:
            holder.close()
    assert answer.status_code == 200
    assert answer.json() == {"name": GLOBAL, "value": 1}


def wait_until_waiting_for_the_lock(holder, *, seconds: float = 20) -> None:
    """Return once some session waits for a row lock (polled, bounded)."""
    with holder.cursor() as cursor:

        def waiting() -> bool:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            )
            return bool(cursor.fetchone()[0])

        assert wait_for(waiting, seconds, interval=0.02), (
            "No take waited for the row lock."
        )


def test_asgi_workers_share_a_burst_of_connections(postgres, global_counter, serve):
    # gunicorn's ASGI worker accepts every connection waiting when it wakes:
    # on one shared socket, one worker took nearly all of such a burst. Each
    # has a socket of its own (gunicorn.conf.py), and the kernel spreads them.
    env = {"DATABASE_URL": database_url()}
    with serve(env, workers=WORKERS, **KINDS["asgi"]) as base_url:
        assert wait_for(lambda: each_listening(base_url), 30), "Not listening."
        held = connections_per_worker(base_url, 60)
    assert sum(held) == 60
    # Spread by address: fewer than 10 of 60 on one of two is all but never.
    assert min(held) >= 10, held


def test_asgi_workers_keep_their_own_sockets_across_a_reload(
    postgres, global_counter, serve
):
    env = {"DATABASE_URL": database_url()}
    with serve(env, workers=WORKERS, **KINDS["asgi"]) as base_url:
        assert wait_for(lambda: each_listening(base_url), 30), "Not listening."
        before = base_url.workers()
        os.kill(base_url.master, signal.SIGHUP)

        def replaced() -> bool:
            # New workers, each listening again, and the old ones gone.
            workers = base_url.workers()
            return (
                len(workers) == WORKERS
                and not before & workers
                and each_listening(base_url)
            )

        assert wait_for(replaced, 30), "The workers were not replaced."
        held = connections_per_worker(base_url, 60)
        summary = run(f"{base_url}/api/counters/global/increment/", 50, 200)
    assert min(held) >= 10, held
    assert summary["errors"] == {} and summary["ok"] == 200
    assert (summary["first"], summary["last"]) == (1, 200)


def connections_per_worker(base_url, count: int) -> list[int]:
    """Open ``count`` keep-alive connections at once; return each worker's share."""
    clients = [
        socket.create_connection(("127.0.0.1", base_url.port)) for _ in range(count)
    ]
    try:
        for client in clients:  # one request each; keep-alive keeps them open
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        for client in clients:
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
        established = tcp_sockets(base_url.port, ESTABLISHED)
        return [len(socket_inodes(pid) & established) for pid in base_url.workers()]
    finally:
        for client in clients:
            client.close()


LISTENING, ESTABLISHED = "0A", "01"


def each_listening(base_url) -> bool:
    """Whether each worker listens on a socket of its own."""
    return len(tcp_sockets(base_url.port, LISTENING)) == WORKERS


def tcp_sockets(port: int, state: str) -> set[str]:
    """Return the inodes of loopback TCP sockets on local ``port`` in ``state``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    """Return the inodes of the sockets process ``pid`` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_loses_no_number_and_is_replaced(
    postgres, global_counter, serve
):
    with serve({"DATABASE_URL": database_url()}, workers=2, threads=8) as url:
        workers = url.workers()
        assert len(workers) == 2
        take = f"{url}/api/counters/global/increment/"
        numbers, failures = [], []
        stop = threading.Event()

        def client():
            session = requests.Session()
            for _ in range(400):  # bounded in count and, below, in time
                if stop.is_set():
                    return
                try:
                    response = session.post(take, timeout=10)
                except requests.RequestException as exc:
                    failures.append(exc)
                    session = requests.Session()
                    continue
                if response.status_code != 200:
                    failures.append(response.status_code)
                    continue
                numbers.append(response.json()["value"])

        threads = [threading.Thread(target=client) for _ in range(16)]
        for thread in threads:
            thread.start()
        # Killed while takes flow, and once the new worker serves, more
        # numbers than before.
        assert wait_for(lambda: len(numbers) >= 100), "no takes before the kill"
        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        before_kill = len(numbers)
        assert wait_for(lambda: len(url.workers() - {victim}) == 2), (
            "gunicorn did not replace the killed worker"
        )
        replaced = len(numbers)
        assert wait_for(lambda: len(numbers) >= replaced + 100), (
            "no takes after the worker was replaced"
        )
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        after_kill = requests.post(take, timeout=10).json()["value"]

    assert before_kill >= 100
    # Only requests on the killed worker's connections failed: at most one
    # for each client, each a connection reset or refused (never a 5xx).
    assert len(failures) <= len(threads), failures
    assert all(isinstance(f, requests.ConnectionError) for f in failures), failures
    numbers.append(after_kill)
    assert len(numbers) == len(set(numbers)), "a number was handed out twice"
    history = manage_on_test_database(
        "counter", "history", "global", "--json", "--limit", "100000", check=True
    )
    recorded = sorted(entry["new_value"] for entry in json.loads(history.stdout))
    final = max(recorded)
    # Every number the counter moved past is in its history, once: a take
    # whose answer died with the worker is there, and none was skipped.
    assert recorded == list(range(1, final + 1))
    assert set(numbers) <= set(recorded)
