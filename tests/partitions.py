"""
What the network fault scenarios share (#24): client threads taking numbers
from two app servers, the fault's timing, and the checks of the numbers.
"""

import threading
import time
from dataclasses import dataclass, field

import requests

from counterproject.testing.servers import migrate
from loadtest.load import realtime_violations

from .reports import report
from .support import wait_for

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
    server: int = 0  # which app server it was sent to


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
            server = (offset + n) % len(self.urls)
            began = time.monotonic()
            try:
                response = session.post(self.urls[server] + self.path, timeout=60)
            except requests.RequestException:
                ended = time.monotonic()
                self.sent.append(Sent(began, ended, None, None, False, server))
                continue
            self.sent.append(answered(began, response, server))
            if response.status_code != 200:
                time.sleep(0.05)

    def between(self, start: float, end: float) -> list[Sent]:
        return [s for s in list(self.sent) if start <= s.began and s.ended <= end]


def answered(began: float, response: requests.Response, server: int) -> Sent:
    value, clean = None, False
    if response.status_code == 200:
        value = response.json().get("value")
        clean = isinstance(value, int)
    elif response.status_code == 503:
        clean = "unavailable" in response.text and "Retry-After" in response.headers
    return Sent(began, time.monotonic(), response.status_code, value, clean, server)


def show(name: str, load: Load, cut: float, healed: float, cluster, capsys) -> dict:
    """
    Print the run's figures in pytest's output (the closing note's table);
    ``cluster`` holds the committed takes.
    """
    during = [s for s in load.sent if cut <= s.began < healed]
    numbers = [s.value for s in load.sent if s.status == 200]
    history = [(s.began, s.ended, s.value) for s in load.sent if s.status == 200]
    committed = audited(cluster)
    figures = {
        "answered": len(numbers),
        "answered_during": sum(s.status == 200 for s in during),
        "refused_503_during": sum(s.status == 503 for s in during),
        "longest_request_during_s": round(
            max((s.ended - s.began for s in during), default=0), 2
        ),
        "duplicates": len(numbers) - len(set(numbers)),
        "gaps": max(committed, default=0) - len(set(committed)),
        "realtime_violations": realtime_violations(history),
    }
    report(name, figures, capsys)
    return figures


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
