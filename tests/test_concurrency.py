"""
Many takers at once, through real threads, processes and gunicorn workers.

Every test asserts order-free facts: the numbers handed out, sorted, are
exactly 1..N, and the stored value is N. The in-process tests run on both
databases (``--database``); on SQLite the threads and processes share one
file, each with its own connection and real transactions.
"""

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.db import connection

from counterproject.testing.servers import migrate
from counterproject.testing.visitors import Visitor, all_at_once
from counters.actors import Actor
from counters.exceptions import OutOfRange
from counters.models import GLOBAL, INT64_MAX, Counter, CounterEvent, Source
from counters.services import counter_set, counter_take

from .support import database_url, stored_value
from .takers import take_in_process

pytestmark = pytest.mark.django_db(transaction=True)

TAKERS = 100
PROCESSES = 4
HTTP_REQUESTS = 200


def test_the_suite_database_is_the_one_the_session_chose(request):
    if request.config.getoption("database") == "sqlite":
        # The embedded default: a file in WAL mode, writers serialized at BEGIN.
        assert connection.vendor == "sqlite"
        assert Path(connection.settings_dict["NAME"]).is_file()
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"
        assert connection.transaction_mode == "IMMEDIATE"
        return
    postgres = request.getfixturevalue("postgres")
    assert connection.vendor == "postgresql"
    assert connection.settings_dict["PORT"] == postgres.port


def test_concurrent_takes_get_each_number_once():
    Counter.objects.create(name="race", public=True)
    start = threading.Barrier(TAKERS, timeout=30)

    def take(_):
        start.wait()
        try:
            return counter_take("race")
        finally:
            connection.close()  # threads get no request-end cleanup

    with ThreadPoolExecutor(max_workers=TAKERS) as pool:
        numbers = list(pool.map(take, range(TAKERS)))

    assert sorted(numbers) == list(range(1, TAKERS + 1))
    assert stored_value("race") == TAKERS


def test_takes_from_several_processes_get_each_number_once():
    Counter.objects.create(name="race", public=True)
    context = multiprocessing.get_context("spawn")
    per_process = TAKERS // PROCESSES
    with context.Manager() as manager:
        start = manager.Barrier(PROCESSES, timeout=60)
        with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
            futures = [
                pool.submit(
                    take_in_process, database_url(), "race", 5, per_process, start
                )
                for _ in range(PROCESSES)
            ]
            results = [future.result(timeout=120) for future in futures]

    assert all(len(numbers) == per_process for numbers in results)
    numbers = [n for result in results for n in result]
    assert sorted(numbers) == list(range(1, TAKERS + 1))
    assert stored_value("race") == TAKERS


def post_concurrently(url: str, count: int) -> list[requests.Response]:
    """POST to ``url`` from ``count`` threads released together."""
    start = threading.Barrier(count, timeout=30)

    def post(_):
        start.wait()
        return requests.post(url, timeout=60)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(post, range(count)))


def assert_each_number_once_over_http(base_url: str) -> None:
    url = f"{base_url}/api/counters/global/increment/"
    responses = post_concurrently(url, HTTP_REQUESTS)

    assert [r.status_code for r in responses] == [200] * HTTP_REQUESTS
    numbers = [r.json()["value"] for r in responses]
    assert sorted(numbers) == list(range(1, HTTP_REQUESTS + 1))
    final = requests.get(f"{base_url}/api/counters/global/", timeout=10).json()
    assert final == {"name": "global", "value": HTTP_REQUESTS}


def test_gunicorn_workers_hand_out_each_number_once_on_postgresql(
    postgres, global_counter, served_postgres
):
    assert_each_number_once_over_http(served_postgres)


def test_gunicorn_workers_hand_out_each_number_once_on_sqlite(tmp_path, serve):
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    migrate(url)
    with serve({"DATABASE_URL": url, "DEBUG": "0"}) as base_url:
        assert_each_number_once_over_http(base_url)


def test_takes_are_numbered_recorded_and_bounded(global_counter):
    # One ORM code path on both databases: the row lock (SELECT … FOR UPDATE,
    # or SQLite's BEGIN IMMEDIATE), UPDATE … RETURNING and one INSERT.
    client = Actor(Source.API, "ip:192.0.2.1")
    taken = [counter_take(GLOBAL, actor=client, public_only=True) for _ in range(3)]
    assert taken == [1, 2, 3]
    takes = CounterEvent.objects.filter(action="take").order_by("id")
    assert list(takes.values_list("old_value", "new_value", "actor")) == [
        (0, 1, "ip:192.0.2.1"),
        (1, 2, "ip:192.0.2.1"),
        (2, 3, "ip:192.0.2.1"),
    ]
    counter_set(GLOBAL, INT64_MAX - 1)
    assert counter_take(GLOBAL, actor=client) == 2**63 - 1
    with pytest.raises(OutOfRange) as excinfo:
        counter_take(GLOBAL, actor=client)
    assert str(excinfo.value) == (
        f"Counter 'global' is at {2**63 - 1}; adding 1 would leave the signed "
        "64-bit range."
    )
    assert takes.count() == 4


@pytest.mark.django_db(transaction=True)
def test_two_app_servers_share_one_database_and_one_redis(
    postgres, redis_server, global_counter, serve
):
    env = {"DATABASE_URL": database_url(), "REDIS_URL": redis_server.url}
    with (
        serve(env, workers=2, threads=4) as one,
        serve(env, workers=2, threads=4) as two,
    ):
        calls = [
            (
                lambda base=base: requests.post(
                    f"{base}/api/counters/global/increment/", timeout=30
                )
            )
            for base in [one, two] * 100
        ]
        responses = all_at_once(calls)
        assert {r.status_code for r in responses} == {200}
        numbers = sorted(r.json()["value"] for r in responses)
        assert numbers == list(range(1, 201))

        visitor = Visitor(one)
        for i in range(6):
            visitor.base_url = [one, two][i % 2]
            assert visitor.post("/api/me/increment/").json() == {"value": i + 1}
        for base in (one, two):
            visitor.base_url = base
            assert visitor.value() == 6
