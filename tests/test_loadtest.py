"""manage.py loadtest, and the naive demo it was made to expose (#5)."""

import json
import os
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from loadtest.load import NOT_SENT, Results, realtime_violations
from loadtest.management.commands.loadtest import Command

from .naive_urls import turn_demo_on
from .support import database_url, manage_on_test_database


def summary_of(numbers, requests=None, errors=None):
    results = Results(requests=requests or len(numbers), numbers=list(numbers))
    results.latencies = [0.001] * len(numbers)
    results.elapsed = 1.0
    if errors:
        results.errors.update(errors)
    return results.summary()


def test_summary_of_consecutive_numbers():
    summary = summary_of([3, 1, 2, 4])
    assert (summary["duplicates"], summary["gaps"], summary["consecutive"]) == (
        0,
        0,
        True,
    )
    assert (summary["first"], summary["last"], summary["rps"]) == (1, 4, 4.0)


def test_summary_counts_duplicates_and_gaps():
    summary = summary_of([1, 1, 1, 2, 5, 7, 7])
    assert summary["duplicates"] == 3  # two extra 1s and one extra 7
    assert summary["gaps"] == 3  # 3, 4 and 6 are missing
    assert summary["first_duplicates"] == [1, 7]
    assert summary["first_gaps"] == [3, 4, 6]
    assert summary["consecutive"] is False


def test_summary_with_failed_requests_is_not_consecutive():
    summary = summary_of([1, 2], requests=3, errors={"http 503": 1})
    assert summary["ok"] == 2 and summary["errors"] == {"http 503": 1}
    assert summary["consecutive"] is False


def test_summary_of_far_apart_numbers_lists_only_the_first_gaps():
    summary = summary_of([1, 10**18])
    assert summary["gaps"] == 10**18 - 2
    assert summary["first_gaps"] == list(range(2, 12))


def test_an_answer_below_one_answered_before_it_was_sent_is_a_violation():
    # (sent, answered, number): the second was sent after the first answered.
    assert realtime_violations([(0.0, 1.0, 5), (2.0, 3.0, 4)]) == 1
    assert realtime_violations([(0.0, 1.0, 5), (2.0, 3.0, 5)]) == 1
    assert realtime_violations([(0.0, 1.0, 4), (2.0, 3.0, 5)]) == 0


def test_overlapping_requests_may_be_answered_in_any_order():
    assert realtime_violations([(0.0, 3.0, 5), (1.0, 2.0, 4)]) == 0


def test_realtime_violations_alone_fail_the_run():
    results = Results(requests=2, numbers=[2, 1])
    results.timed = [(0.0, 1.0, 2), (2.0, 3.0, 1)]
    results.latencies, results.elapsed = [1.0, 1.0], 3.0
    summary = results.summary()
    assert (summary["consecutive"], summary["realtime_violations"]) == (True, 1)
    assert Command.problems(summary) == (
        "1 answers not above one answered before they were sent"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--clients", "0"], "invalid positive integer value: '0'"),
        (["--requests", "x"], "invalid positive integer value: 'x'"),
        (["--url", "ftp://x/"], "--url must be an http:// or https:// URL"),
        (
            ["--url", "http://x/", "--url", "x"],
            "--url must be an http:// or https:// URL, not 'x'",
        ),
    ],
)
def test_bad_arguments_are_refused(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("loadtest", *args)


@pytest.mark.django_db
@pytest.mark.parametrize("library", ["aiohttp", "rich"])
def test_without_its_extra_loadtest_says_what_to_install(library):
    # The library is made unimportable in a fresh interpreter, as on a
    # machine that installed the app without the loadtest extra.
    code = (
        f"import sys; sys.modules[{library!r}] = None; "
        "sys.argv = ['manage.py', 'loadtest']; "
        "import runpy; runpy.run_path('manage.py', run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": "sqlite:///:memory:"},
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"CommandError: loadtest needs {library}, which is not installed: install "
        "the loadtest extra (pip install 'counterproject[loadtest]').\n"
    )


def test_naive_endpoint_is_a_404_unless_the_demo_is_on(settings):
    client = Client()
    assert client.post("/api/naive/increment/").status_code == 404
    turn_demo_on(settings)
    first = client.post("/api/naive/increment/").json()["value"]
    assert client.post("/api/naive/increment/").json() == {"value": first + 1}
    assert client.get("/api/naive/increment/").status_code == 405


def loadtest(base_url: str, path: str, *extra: str) -> subprocess.CompletedProcess:
    return manage_on_test_database(
        "loadtest",
        "--json",
        *("--url", f"{base_url}{path}", "--clients", "20", "--requests", "400"),
        *("--max-seconds", "120", *extra),
    )


@pytest.mark.django_db(transaction=True)
def test_loadtest_passes_on_the_database_counter_and_fails_the_naive_one(
    postgres, global_counter, serve
):
    # A new connection per request: the workers compete for every request.
    # With keep-alive, one worker can accept all 20 connections, and the
    # naive counter then counts right by luck (it did, in a CI run).
    env = {
        "DATABASE_URL": database_url(),
        "COUNTERS_NAIVE_DEMO": "1",
        "GUNICORN_KEEPALIVE": "0",
    }
    with serve(env, workers=4, threads=4) as base_url:
        good = loadtest(base_url, "/api/counters/global/increment/")
        naive = loadtest(base_url, "/api/naive/increment/")

    assert good.returncode == 0, good.stderr
    report = json.loads(good.stdout)
    assert (report["requests"], report["ok"], report["errors"]) == (400, 400, {})
    assert (report["duplicates"], report["gaps"], report["consecutive"]) == (
        0,
        0,
        True,
    )
    assert (report["first"], report["last"]) == (1, 400)
    for key in ("rps", "p50_ms", "p95_ms", "p99_ms", "max_ms"):
        assert report[key] > 0

    # Four workers, four copies of the module-level object: numbers repeat.
    assert naive.returncode != 0
    report = json.loads(naive.stdout)
    assert report["ok"] == 400 and report["duplicates"] > 0
    assert report["consecutive"] is False
    assert "duplicates, first: [1, " in naive.stderr
    assert "Traceback" not in naive.stderr


def test_throughput_counts_only_the_requests_sent():
    # A run cut short by --max-seconds: 4 of 10 sent in one second is 4 req/s,
    # not the 10 planned (#12).
    summary = summary_of([1, 2, 3, 4], requests=10, errors={NOT_SENT: 6})
    assert (summary["sent"], summary["rps"]) == (4, 4.0)
    assert summary["consecutive"] is False
