"""
Many takers at once, through real threads, processes and gunicorn workers.

Every test asserts order-free facts: the numbers handed out, sorted, are
exactly 1..N, and the stored value is N.
"""

import multiprocessing
import os
import subprocess
import sys
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from counters.models import Counter
from counters.services import counter_take

from .conftest import database_url
from .servers import ROOT, migrate
from .takers import take_in_process

pytestmark = pytest.mark.django_db(transaction=True)

TAKERS = 100
PROCESSES = 4
HTTP_REQUESTS = 200


def test_suite_database_is_postgresql(postgres):
    assert connection.vendor == "postgresql"
    assert connection.settings_dict["PORT"] == postgres.port


def test_concurrent_takes_get_each_number_once(postgres):
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
    assert Counter.objects.get(name="race").value == TAKERS


def test_takes_from_several_processes_get_each_number_once(postgres):
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
    assert Counter.objects.get(name="race").value == TAKERS


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


def sqlite_env(tmp_path) -> dict[str, str]:
    """Return the environment of a migrated SQLite database in ``tmp_path``."""
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    migrate(url)
    return {**os.environ, "DATABASE_URL": url, "DEBUG": "0"}


def test_gunicorn_workers_hand_out_each_number_once_on_sqlite(tmp_path, serve):
    env = sqlite_env(tmp_path)
    with serve({"DATABASE_URL": env["DATABASE_URL"], "DEBUG": "0"}) as base_url:
        assert_each_number_once_over_http(base_url)


SQLITE_TAKES = """
from counters.actors import Actor
from counters.exceptions import OutOfRange
from counters.models import INT64_MAX, CounterEvent, Source
from counters.services import counter_set, counter_take

client = Actor(Source.API, "ip:192.0.2.1")
print([counter_take("global", actor=client, public_only=True) for _ in range(3)])
takes = CounterEvent.objects.filter(action="take").order_by("id")
print(list(takes.values_list("old_value", "new_value", "actor")))
counter_set("global", INT64_MAX - 1)
print(counter_take("global", actor=client))
try:
    counter_take("global", actor=client)
except OutOfRange as exc:
    print(exc)
print(takes.count())
"""


def test_takes_on_sqlite_are_numbered_recorded_and_bounded(tmp_path):
    # SQLite runs its own statements (no FOR UPDATE, no data-modifying WITH).
    env = sqlite_env(tmp_path)
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", SQLITE_TAKES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[1, 2, 3]",
        "[(0, 1, 'ip:192.0.2.1'), (1, 2, 'ip:192.0.2.1'), (2, 3, 'ip:192.0.2.1')]",
        str(2**63 - 1),
        f"Counter 'global' is at {2**63 - 1}; adding 1 would leave the signed "
        "64-bit range.",
        "4",
    ]
