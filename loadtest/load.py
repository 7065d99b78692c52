"""
The load ``manage.py loadtest`` sends, and what it makes of the answers.

N clients on keep-alive connections (aiohttp) send M POST requests in all;
``Results`` keeps each number answered, with when its request was sent and
answered, and sums up throughput, latency, duplicates, gaps and real-time
order violations. The suite and ``bench/`` use it directly.
"""

import asyncio
import bisect
import itertools
import json
import statistics
import time
from collections import Counter as Tally
from dataclasses import dataclass, field
from urllib.parse import urljoin

import aiohttp

SHOWN = 10  # duplicates and gaps listed at most
NOT_SENT = "not sent (time limit)"
PERCENTILES = (50, 95, 99)  # of latency, in the report


@dataclass
class Results:
    requests: int
    latencies: list[float] = field(default_factory=list)
    numbers: list[int] = field(default_factory=list)
    # (sent, answered, number) of every numbered answer, for real-time order.
    timed: list[tuple[float, float, int]] = field(default_factory=list)
    errors: Tally = field(default_factory=Tally)
    elapsed: float = 0.0

    def percentiles_ms(self) -> dict[int, float]:
        """Return the 50th, 95th and 99th latency percentiles, in ms."""
        if len(self.latencies) < 2:
            # statistics.quantiles() needs two points before Python 3.13.
            only = self.latencies[0] * 1000 if self.latencies else 0.0
            return dict.fromkeys(PERCENTILES, only)
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return {rank: cuts[rank - 1] * 1000 for rank in PERCENTILES}

    def summary(self) -> dict:
        seen = Tally(self.numbers)
        duplicates = sorted(n for n, times in seen.items() if times > 1)
        distinct = sorted(seen)
        gaps = distinct[-1] - distinct[0] + 1 - len(distinct) if distinct else 0
        ok = len(self.numbers)
        percentiles = self.percentiles_ms()
        # Throughput counts the requests sent: a run cut short by
        # --max-seconds did not send the rest (#12).
        sent = self.requests - self.errors[NOT_SENT]
        return {
            "requests": self.requests,
            "ok": ok,
            "errors": dict(sorted(self.errors.items())),
            "seconds": round(self.elapsed, 3),
            "sent": sent,
            "rps": round(sent / self.elapsed, 1) if self.elapsed else 0.0,
            "p50_ms": round(percentiles[50], 2),
            "p95_ms": round(percentiles[95], 2),
            "p99_ms": round(percentiles[99], 2),
            "max_ms": round(max(self.latencies, default=0) * 1000, 2),
            "duplicates": sum(seen[n] - 1 for n in duplicates),
            "gaps": gaps,
            "consecutive": ok == self.requests and not duplicates and not gaps,
            "realtime_violations": realtime_violations(self.timed),
            "first": min(seen, default=None),
            "last": max(seen, default=None),
            "first_duplicates": duplicates[:SHOWN],
            "first_gaps": first_gaps(distinct),
        }


def realtime_violations(timed: list[tuple[float, float, int]]) -> int:
    """
    Count the answers whose number is not above one answered before they were sent.

    A take sent after another was answered must get a larger number; a
    counter that hands out stale copies (a cache, a process's own variable)
    breaks that even when it hands out no duplicate.
    """
    by_answer = sorted((answered, number) for _, answered, number in timed)
    answered = [moment for moment, _ in by_answer]
    highest = list(itertools.accumulate((n for _, n in by_answer), max))
    violations = 0
    for sent, _, number in timed:
        before = bisect.bisect_left(answered, sent)  # answered before it was sent
        if before and highest[before - 1] >= number:
            violations += 1
    return violations


def first_gaps(distinct: list[int]) -> list[int]:
    """Return the first missing numbers between the sorted ``distinct`` ones."""
    missing: list[int] = []
    for low, high in zip(distinct, distinct[1:], strict=False):
        missing.extend(range(low + 1, min(high, low + 1 + SHOWN - len(missing))))
        if len(missing) >= SHOWN:
            break
    return missing


async def _client(session, url, results, todo, deadline, tick):
    while todo[0] > 0 and time.monotonic() < deadline:
        todo[0] -= 1
        started = time.monotonic()
        try:
            async with session.post(url) as response:
                body = await response.read()
                status = response.status
        except TimeoutError:
            results.errors["timeout"] += 1
        except aiohttp.ClientError as exc:
            results.errors[f"connection: {type(exc).__name__}"] += 1
        else:
            answered = time.monotonic()
            results.latencies.append(answered - started)
            if status != 200:
                results.errors[f"http {status}"] += 1
            else:
                try:
                    number = int(json.loads(body)["value"])
                except (ValueError, KeyError, TypeError):
                    results.errors["bad body"] += 1
                else:
                    results.numbers.append(number)
                    results.timed.append((started, answered, number))
        tick()


async def run_load(
    url, clients, requests, *, timeout, max_seconds, tick=None, headers=None
):
    """
    Send ``requests`` POSTs to ``url`` from ``clients`` clients; return Results.

    ``url`` may be a list: client ``i`` then posts to ``url[i % len(url)]``.
    """
    urls = [url] if isinstance(url, str) else list(url)
    results = Results(requests=requests)
    todo = [requests]  # shared by the clients: one event loop, no lock needed
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=client_timeout,
        headers=headers,
        skip_auto_headers=["User-Agent"],
        # Each request carries exactly the cookies in ``headers``: none unless
        # the clients share a session.
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        started = time.perf_counter()
        deadline = time.monotonic() + max_seconds
        await asyncio.gather(
            *(
                _client(
                    session,
                    urls[i % len(urls)],
                    results,
                    todo,
                    deadline,
                    tick or (lambda: None),
                )
                for i in range(clients)
            )
        )
        results.elapsed = time.perf_counter() - started
    unsent = todo[0]
    if unsent > 0:
        results.errors[NOT_SENT] += unsent
    return results


class NoVisitor(Exception):
    """The server did not make the load's client a visitor (no cookie)."""


async def visitor_headers(url: str, *, timeout: float) -> dict:
    """
    Return the headers of one visitor: its session cookie and CSRF token.

    ``GET /api/me/`` gives the CSRF cookie; one POST to ``url`` with its token
    then gives the session cookie (and takes one number, not counted).
    """
    cookies: dict[str, str] = {}
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        async with session.get(urljoin(url, "/api/me/")) as response:
            cookies.update((k, m.value) for k, m in response.cookies.items())
        if "csrftoken" not in cookies:
            raise NoVisitor(
                f"{urljoin(url, '/api/me/')} set no csrftoken cookie "
                f"(HTTP {response.status})."
            )
        token = cookies["csrftoken"]
        headers = {"X-CSRFToken": token, "Cookie": f"csrftoken={token}"}
        async with session.post(url, headers=headers) as response:
            cookies.update((k, m.value) for k, m in response.cookies.items())
        if response.status != 200 or "sessionid" not in cookies:
            raise NoVisitor(
                f"The first POST to {url} gave no session cookie "
                f"(HTTP {response.status})."
            )
    cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
    return {"Cookie": cookie, "X-CSRFToken": token}
