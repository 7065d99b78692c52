"""
No client starves the others: a keep-alive flood of cheap answers beside
clients of the home page, under each worker kind (#23).

Counts and liveness only: how fast is bench/fairness.py's to say.
"""

import shutil
import signal
import subprocess
import threading
import time

import pytest
import requests

from counters.models import GLOBAL, Counter

from .support import database_url, unavailable

pytestmark = pytest.mark.django_db(transaction=True)

FLOOD_CONNECTIONS = 100
CLIENTS = 10
SECONDS = 5  # each client's time under the flood
# Alone, each of the clients is answered hundreds of times in SECONDS; before
# #23 a gevent worker answered none of them at all.
AT_LEAST = 5

KINDS = {
    "gevent": ("--worker-class", "gevent"),
    "gthread": ("--worker-class", "gthread"),
    "asgi": ("--worker-class", "asgi", "counterproject.asgi:application"),
}


def flood(url: str, seconds: int) -> subprocess.Popen:
    """Start wrk: FLOOD_CONNECTIONS kept-alive connections asking for ``url``."""
    wrk = shutil.which("wrk")
    if wrk is None:
        unavailable("wrk is not installed")
    return subprocess.Popen(
        [wrk, "-t2", f"-c{FLOOD_CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s",
         url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def home_page_client(url: str, until: float, answers: list, failures: list) -> None:
    """Ask for ``url`` on one kept-alive connection until ``until``."""
    with requests.Session() as session:
        while time.monotonic() < until:
            try:
                response = session.get(url, timeout=10)
            except requests.RequestException as exc:
                failures.append(repr(exc))
                continue
            if response.status_code != 200:
                failures.append(response.status_code)
            elif time.monotonic() < until:  # answered under the flood
                answers.append(1)


@pytest.mark.parametrize("flooded", ["/take/", "/static/counters/site.css"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_keep_alive_flood_of_cheap_answers_starves_no_other_client(
    postgres, serve, kind, flooded
):
    Counter.objects.update_or_create(name=GLOBAL, defaults={"public": True})
    threads = 16 if kind == "gthread" else None
    env = {"DATABASE_URL": database_url()}
    with serve(env, workers=2, threads=threads, args=KINDS[kind]) as base_url:
        # GET on the take is a 405; the stylesheet is WhiteNoise's: answers
        # that need no I/O of the worker's own.
        wrk = flood(f"{base_url}{flooded}", SECONDS + 4)
        try:
            time.sleep(1)  # the flood is under way
            until = time.monotonic() + SECONDS
            answers = [[] for _ in range(CLIENTS)]
            failures = [[] for _ in range(CLIENTS)]
            clients = [
                threading.Thread(
                    target=home_page_client,
                    args=(f"{base_url}/", until, answers[n], failures[n]),
                )
                for n in range(CLIENTS)
            ]
            for client in clients:
                client.start()
            for client in clients:
                client.join(SECONDS + 30)
            flooding = wrk.poll() is None
        finally:
            # Ended now rather than at its -d: wrk stops on SIGINT and
            # prints its summary, as at the end of its time.
            if wrk.poll() is None:
                wrk.send_signal(signal.SIGINT)
            output, _ = wrk.communicate(timeout=60)
    counts = [len(answered) for answered in answers]
    assert min(counts) >= AT_LEAST, f"answers per client: {counts}"
    assert failures == [[]] * CLIENTS
    # And the flood was real, and lasted as long as the clients' turn.
    assert flooding, "the flood ended before the clients did"
    assert "Requests/sec" in output, output
    flood_requests = int(output.split(" requests in ")[0].split()[-1])
    assert flood_requests > 1000, output
