"""
The alternatives to a global counter (#13), each showing its signature.

Real gunicorn, PostgreSQL and Redis. Where a pattern loses updates only when
requests interleave, the load is large enough (20 clients, 400 requests over
several workers) that it practically always does; where the outcome follows
from the design (a dict per process, a Manager per master, a Redis restarted
empty), the numbers are asserted exactly.
"""

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter as Tally

import pytest
from django.test import Client

from loadtest.load import Results, run_load

from .naive_urls import turn_demo_on
from .support import database_url, manage_on_test_database, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 20
REQUESTS = 400
GTHREAD = ("--worker-class", "gthread")
DEMOS = [
    "/api/naive/increment/",
    "/api/naive/dict/increment/",
    "/api/naive/cache/increment/",
    "/api/naive/cache-incr/increment/",
    "/api/naive/manager/increment/",
    "/api/naive/session/increment/",
]


def loadtest(*urls: str, extra=()) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``manage.py loadtest --json`` (bounded); return it and its report."""
    result = manage_on_test_database(
        "loadtest",
        "--json",
        *(arg for url in urls for arg in ("--url", url)),
        *("--clients", str(CLIENTS), "--requests", str(REQUESTS)),
        *("--max-seconds", "120", *extra),
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result, json.loads(result.stdout)


def load(url, requests: int = REQUESTS) -> Results:
    """Send ``requests`` POSTs to ``url`` (or a list of them); return Results."""
    results = asyncio.run(run_load(url, CLIENTS, requests, timeout=30, max_seconds=120))
    assert results.errors == {}, results.errors
    return results


def each_count(numbers: list[int]) -> list[int]:
    """Return how often each number from 1 up to the highest was handed out."""
    tally = Tally(numbers)
    return [tally[n] for n in range(1, max(numbers) + 1)]


def demo_env(**extra: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url(), "COUNTERS_NAIVE_DEMO": "1", **extra}


@pytest.mark.parametrize("path", DEMOS)
def test_every_demonstration_is_a_404_unless_the_demo_is_on(
    path, settings, redis_cache_settings
):
    response = Client().post(path)
    assert response.status_code == 404
    assert response.json() == {"error": f"There is nothing at {path}."}
    turn_demo_on(settings)
    assert Client().get(path).status_code == 405


@pytest.mark.parametrize(
    "path", ["/api/naive/cache/increment/", "/api/naive/cache-incr/increment/"]
)
def test_cache_demonstrations_need_a_shared_cache(path, settings):
    turn_demo_on(settings)
    response = Client().post(path)
    assert response.status_code == 404
    assert "set REDIS_URL" in response.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/naive/dict/increment/",
        "/api/naive/manager/increment/",
        "/api/naive/session/increment/",
    ],
)
def test_one_client_of_one_process_counts_up(path, settings):
    turn_demo_on(settings)
    client = Client()  # keeps the session cookie
    first = client.post(path).json()["value"]
    assert client.post(path).json() == {"value": first + 1}


def test_a_module_level_dict_counts_from_1_in_each_worker(
    postgres, serve, global_counter
):
    # A new connection per request: the workers compete for every request,
    # instead of one worker keeping the keep-alive connections it accepted.
    env = demo_env(GUNICORN_KEEPALIVE="0")
    with serve(env, workers=4, threads=1, args=GTHREAD) as base_url:
        naive = load(f"{base_url}/api/naive/dict/increment/")
        result, good = loadtest(f"{base_url}/api/counters/global/increment/")

    # One thread per worker: each of the (up to) four workers hands out 1, 2,
    # 3… once, so a number is handed out by every worker that got that far.
    counts = each_count(naive.numbers)
    assert sum(counts) == REQUESTS
    assert counts == sorted(counts, reverse=True) and counts[0] <= 4
    assert naive.summary()["duplicates"] == REQUESTS - len(counts) > 0
    # A later request gets a smaller number than one already answered.
    assert naive.summary()["realtime_violations"] > 0
    # The database counter on the same server keeps real-time order.
    assert result.returncode == 0, result.stderr
    assert (good["duplicates"], good["gaps"], good["realtime_violations"]) == (0, 0, 0)


def test_cache_get_then_set_loses_increments(postgres, redis_server, serve):
    with serve(demo_env(REDIS_URL=redis_server.url), args=GTHREAD) as base_url:
        result, report = loadtest(f"{base_url}/api/naive/cache/increment/")

    assert report["ok"] == REQUESTS
    assert report["duplicates"] > 0
    assert result.returncode != 0 and "duplicates, first: [" in result.stderr


def test_cache_incr_is_unique_until_redis_restarts_empty(
    postgres, redis_outage_server, serve
):
    redis = redis_outage_server
    with serve(demo_env(REDIS_URL=redis.url), args=GTHREAD) as base_url:
        url = f"{base_url}/api/naive/cache-incr/increment/"
        before = load(url)
        # Without persistence (Redis saves on shutdown by default): the key is
        # gone with the process.
        redis.client().config_set("save", "")
        redis.stop()
        redis.start()
        after = load(url)

    assert sorted(before.numbers) == list(range(1, REQUESTS + 1))
    assert before.summary()["realtime_violations"] == 0
    # INCR starts over: every number is handed out a second time.
    assert sorted(after.numbers) == list(range(1, REQUESTS + 1))


def test_a_manager_is_right_within_one_master(postgres, serve):
    with serve(demo_env(), workers=4, threads=8, args=GTHREAD) as base_url:
        result, report = loadtest(f"{base_url}/api/naive/manager/increment/")

    assert result.returncode == 0, result.stderr
    assert (report["first"], report["last"], report["consecutive"]) == (
        1,
        REQUESTS,
        True,
    )
    assert report["realtime_violations"] == 0


def manager_servers(parent: int) -> set[int]:
    """Return the pids of the naive demo's Manager servers ``parent`` started."""
    found = subprocess.run(
        ["pgrep", "-P", str(parent), "-f", "naive_demo.manager"],
        capture_output=True,
        text=True,
    )
    return {int(pid) for pid in found.stdout.split()}


def test_the_manager_stops_with_its_master(postgres, serve):
    with serve(demo_env(), workers=2, threads=2, args=GTHREAD) as base_url:
        [server] = manager_servers(base_url.master)
        assert load(f"{base_url}/api/naive/manager/increment/", 10).numbers
    assert wait_for(lambda: not pid_exists(server), 10), (
        "The Manager outlived gunicorn."
    )


def test_the_manager_ends_when_the_process_that_started_it_is_killed():
    # A master killed with SIGKILL runs no on_exit: its Manager must not stay.
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from naive_demo import manager; manager.start(); "
            "time.sleep(60)",
        ],
    )
    try:
        assert wait_for(lambda: manager_servers(starter.pid), 10, interval=0.05)
        [server] = manager_servers(starter.pid)
    finally:
        starter.kill()
        starter.wait(10)
    assert wait_for(lambda: not pid_exists(server), 10), "The Manager outlived it."


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_masters_with_a_manager_each_hand_out_the_same_numbers(postgres, serve):
    path = "/api/naive/manager/increment/"
    with (
        serve(demo_env(), workers=2, threads=2, args=GTHREAD) as first,
        serve(demo_env(), workers=2, threads=2, args=GTHREAD) as second,
    ):
        one, other = load(f"{first}{path}", 50), load(f"{second}{path}", 50)
        # Both hosts behind one load balancer: the clients take turns.
        result, report = loadtest(f"{first}{path}", f"{second}{path}")

    assert sorted(one.numbers) == sorted(other.numbers) == list(range(1, 51))
    # Each master goes on from 50 on its own: every number it reaches twice.
    assert result.returncode != 0
    assert report["urls"] == [f"{first}{path}", f"{second}{path}"]
    assert report["first"] == 51 and report["duplicates"] >= CLIENTS // 2


def test_same_session_shows_a_session_key_lose_updates(postgres, redis_server, serve):
    env = demo_env(REDIS_URL=redis_server.url)
    with serve(env, args=GTHREAD) as base_url:
        url = f"{base_url}/api/naive/session/increment/"
        result, report = loadtest(url, extra=["--same-session"])
        each_new, separate = loadtest(url)

    assert report["same_session"] is True and report["ok"] == REQUESTS
    assert report["duplicates"] > 0
    assert result.returncode != 0 and "duplicates, first: [" in result.stderr
    # Without a shared cookie every request is a new visitor, at 1.
    assert each_new.returncode != 0
    assert (separate["first"], separate["last"]) == (1, 1)
    assert separate["duplicates"] == REQUESTS - 1


def test_same_session_shows_the_per_user_counter_keep_every_update(
    postgres, redis_server, serve, global_counter
):
    env = demo_env(REDIS_URL=redis_server.url)
    with serve(env, args=GTHREAD) as base_url:
        result, report = loadtest(
            f"{base_url}/api/me/increment/", extra=["--same-session"]
        )
        sessionless = manage_on_test_database(
            "loadtest",
            "--same-session",
            *("--url", f"{base_url}/api/counters/global/increment/"),
            timeout=60,
        )

    assert result.returncode == 0, result.stderr
    # The first request, which gave the session, took 1.
    assert (report["first"], report["last"], report["consecutive"]) == (
        2,
        REQUESTS + 1,
        True,
    )
    assert report["realtime_violations"] == 0
    # The global counter keeps no session: there is none to share.
    assert sessionless.returncode != 0
    assert "gave no session cookie (HTTP 200)" in sessionless.stderr
