"""
Operators can see it (#25): /metrics in Prometheus' text format, added up
over gunicorn's workers, only for the addresses and token configured; and
one JSON object per log line with LOG_FORMAT=json.
"""

import json
import os
import signal
import sys
import threading
from collections import Counter as Tally

import pytest
import requests
from django.db import connection
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from counterproject.testing.servers import project_command
from counterproject.testing.visitors import Visitor

from .support import database_url, row_lock_held, wait_for

TOKEN = "a-token-for-the-tests-only"
TAKE = "/api/counters/global/increment/"
KINDS = {
    "gevent": ("--worker-class", "gevent"),
    "gthread": ("--worker-class", "gthread"),
    "asgi": ("--worker-class", "asgi", "counterproject.asgi:application"),
}
CLIENTS, TAKES_EACH = 8, 25


def scrape(base_url: str) -> dict[tuple, float]:
    """Return every sample of /metrics, keyed by name and sorted labels."""
    response = requests.get(f"{base_url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, *sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    """Return the sum of the samples of ``name`` that carry ``labels``."""
    return sum(
        number
        for (sample, *pairs), number in samples.items()
        if sample == name and set(labels.items()) <= set(pairs)
    )


def take_concurrently(base_url: str, clients: int, each: int) -> list[int]:
    """Take ``clients * each`` numbers from concurrent clients; return them."""
    numbers, failures = [], []

    def client() -> None:
        session = requests.Session()
        for _ in range(each):
            response = session.post(base_url + TAKE, timeout=30)
            if response.status_code == 200:
                numbers.append(response.json()["value"])
            else:
                failures.append(response.status_code)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    return numbers


def pool_gauges(samples: dict) -> float:
    """Return the connections the pools say they hold, in use or idle."""
    return value(samples, "counters_db_pool_connections_in_use") + value(
        samples, "counters_db_pool_connections_idle"
    )


def app_connections() -> int:
    """Return the sessions open on the test database but this process's."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
            "current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


# --- Access -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "token", "headers", "status"),
    [
        ([], "", {}, 404),  # off unless configured
        (["10.0.0.0/8"], "", {}, 404),  # another address
        (["127.0.0.0/8"], "", {}, 200),
        ([], TOKEN, {}, 404),
        ([], TOKEN, {"Authorization": "Bearer not-the-token"}, 404),
        ([], TOKEN, {"Authorization": f"Basic {TOKEN}"}, 404),
        ([], TOKEN, {"Authorization": f"Bearer {TOKEN}"}, 200),
    ],
    ids=[
        "off",
        "other-address",
        "address",
        "no-token",
        "wrong-token",
        "not-bearer",
        "token",
    ],  # fmt: skip
)
def test_metrics_answer_only_the_addresses_and_token_configured(
    settings, db, allow, token, headers, status
):
    import ipaddress

    settings.METRICS_ALLOW = [ipaddress.ip_network(item) for item in allow]
    settings.METRICS_TOKEN = token
    response = Client(headers=headers).get("/metrics")  # from 127.0.0.1
    assert response.status_code == status
    if status == 404:
        # The project's own 404, as for any page that is not there.
        assert b"counters_takes" not in response.content
        assert b"Traceback" not in response.content
    else:
        assert b"# TYPE counters_takes_total counter" in response.content


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"METRICS_ALLOW": "10.0.0.0/8,localhost"},
            "Error: Set the METRICS_ALLOW environment variable to addresses or "
            "networks such as 10.0.0.0/8, not 'localhost'.",
        ),
        (
            {"METRICS_TOKEN": "short"},
            "Error: Set the METRICS_TOKEN environment variable to a secret of 16 "
            "characters or more.",
        ),
        (
            {"LOG_FORMAT": "yaml"},
            "Error: Set the LOG_FORMAT environment variable to text or json.",
        ),
    ],
    ids=["allow", "token", "log-format"],
)
def test_a_bad_metrics_or_log_setting_stops_start_up_with_one_line(env, line):
    result = project_command(
        [sys.executable, "manage.py", "check"], {"DEBUG": "1", **env}, timeout=60
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [line]


# --- The figures, added up over the workers ------------------------------------


@pytest.mark.postgresql
@pytest.mark.parametrize("kind", KINDS)
def test_metrics_add_up_over_the_workers_and_survive_one_replaced(
    transactional_db, global_counter, serve, kind
):
    env = {
        "DATABASE_URL": database_url(),
        "METRICS_ALLOW": "127.0.0.1",
        # Counted by each worker alone (no Redis): of three changes, two
        # workers let one each through at most.
        "COUNTERS_VISITOR_RATE": "1/minute",
    }
    threads = 8 if kind == "gthread" else None
    with serve(env, workers=2, threads=threads, args=KINDS[kind]) as base_url:
        numbers = take_concurrently(base_url, CLIENTS, TAKES_EACH)
        taken = len(numbers)
        assert sorted(numbers) == list(range(1, taken + 1))
        refused = Tally()
        for path, body, reason in [
            (TAKE, {"by": 2}, "invalid_step"),
            ("/api/counters/no-such/increment/", None, "not_found"),
        ] * 3:
            response = requests.post(base_url + path, json=body, timeout=30)
            assert response.status_code in (400, 404)
            refused[reason] += 1
        visitor = Visitor(base_url)
        changes = Tally(
            visitor.post("/api/me/increment/").status_code for _ in range(3)
        )
        assert changes[429] >= 1 and changes[200] >= 1, changes

        before = scrape(base_url)
        assert value(before, "counters_takes_total", counter="global") == taken
        assert (
            value(before, "counters_takes_total", counter="global", interface="api")
            == taken
        )
        # Every take was in a batch: the batches' takes add up to them.
        assert value(before, "counters_take_batch_size_sum", counter="global") == taken
        batches = value(before, "counters_take_batch_size_count", counter="global")
        assert 1 <= batches <= taken
        assert value(before, "counters_take_row_held_seconds_count") == batches
        for reason, count in refused.items():
            assert value(before, "counters_take_refusals_total", reason=reason) == count
        assert (
            value(before, "counters_rate_limited_total", scope="visitor")
            == (changes[429])
        )
        assert (
            value(before, "counters_visitor_changes_total", action="increment")
            == (changes[200])
        )
        assert value(before, "counters_session_loads_total") >= changes[200]
        answers = value(
            before, "counters_http_responses_total", view="counters:api-take"
        )
        assert answers == taken + refused["invalid_step"] + refused["not_found"]

        # A worker killed and replaced: what it counted stays, once.
        workers = base_url.workers()
        os.kill(min(workers), signal.SIGKILL)
        assert wait_for(
            lambda: len(base_url.workers()) == 2 and base_url.workers() != workers
        ), "the master did not replace the killed worker"
        after = scrape(base_url)
        assert value(after, "counters_takes_total") == taken
        # But not what it held: the pools' gauges count the live workers'
        # connections only, no more than PostgreSQL has open.
        assert wait_for(lambda: pool_gauges(scrape(base_url)) <= app_connections()), (
            pool_gauges(scrape(base_url)),
            app_connections(),
        )
        assert value(after, "counters_take_batch_size_sum") == taken
        more = take_concurrently(base_url, 2, 10)
        assert value(scrape(base_url), "counters_takes_total") == taken + len(more)


@pytest.mark.postgresql
def test_a_pool_of_one_that_runs_out_is_counted(
    transactional_db, postgres, global_counter, serve
):
    env = {
        "DATABASE_URL": database_url(),
        "METRICS_ALLOW": "127.0.0.1",
        "DATABASE_POOL_SIZE": "1",
        "DATABASE_POOL_TIMEOUT": "0.5",
    }
    with (
        serve(env, workers=1, threads=4, args=KINDS["gthread"]) as base_url,
        # Global's row held: the worker's one connection waits on it in a take.
        row_lock_held(postgres, "global") as release,
    ):
        blocked = threading.Thread(
            target=requests.post, args=(base_url + TAKE,), kwargs={"timeout": 30}
        )
        blocked.start()
        assert wait_for(
            lambda: value(scrape(base_url), "counters_db_pool_connections_in_use") >= 1
        )
        statuses = [
            requests.get(f"{base_url}/api/counters/global/", timeout=30).status_code
            for _ in range(3)
        ]
        release()
        blocked.join(30)
        samples = scrape(base_url)
    assert statuses == [503, 503, 503]
    assert value(samples, "counters_db_pool_timeouts_total") >= 3
    assert value(samples, "counters_db_pool_wait_seconds_count") >= 3
    assert (
        value(
            samples,
            "counters_http_responses_total",
            view="counters:api-detail",
            status="503",
        )
        == 3
    )


# --- Logs -----------------------------------------------------------------------


@pytest.mark.postgresql
def test_json_log_lines_parse_and_carry_the_request_and_the_take(
    transactional_db, global_counter, serve, tmp_path
):
    env = {"DATABASE_URL": database_url(), "LOG_FORMAT": "json"}
    with serve(
        env, workers=1, threads=4, args=KINDS["gthread"], graceful=True
    ) as base_url:
        number = requests.post(base_url + TAKE, timeout=30).json()["value"]
        requests.get(f"{base_url}/no-such-page", timeout=30)
    lines = (tmp_path / "gunicorn.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    answers = [r for r in records if r["logger"] == "counterproject.requests"]
    [take] = [r for r in answers if r["path"] == TAKE]  # once: no access log
    assert not any(r["logger"] == "gunicorn.access" for r in records)
    assert take["method"] == "POST"
    assert take["status"] == 200
    assert isinstance(take["duration_ms"], float) and take["duration_ms"] > 0
    assert (take["counter"], take["number"]) == ("global", number)
    missing = next(r for r in answers if r["path"] == "/no-such-page")
    assert missing["status"] == 404 and "number" not in missing
    # gunicorn's own lines (its start, its workers) are JSON too.
    assert any(r["logger"] == "gunicorn.error" for r in records)


def test_text_logs_stay_readable():
    code = "import logging; logging.getLogger('counters').warning('hello')"
    result = project_command(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        {"DEBUG": "1"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("WARNING counters hello")
