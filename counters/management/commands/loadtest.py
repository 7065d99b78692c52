"""
``manage.py loadtest``: hammer an increment endpoint and check every number.

N clients on keep-alive connections send M POST requests in all, collect each
number returned and report throughput, latency, duplicates and gaps. It exits
0 only when every request succeeded and the numbers are unique and
consecutive, so it doubles as a correctness check in scripts. With
``--same-session`` every client is the same visitor (one session cookie); with
``--url`` given more than once the clients take turns over the URLs (several
hosts).
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
from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from counters.parsing import parse_integer

DEFAULT_URL = "http://127.0.0.1:8000/api/counters/global/increment/"
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


async def visitor_headers(url: str, *, timeout: float) -> dict:
    """
    Return the headers of one visitor: its session cookie and CSRF token.

    ``GET /api/me/`` gives the CSRF cookie; one POST to ``url`` with its token
    then gives the session cookie (and takes one number, not counted).
    """
    cookies = {}
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        async with session.get(urljoin(url, "/api/me/")) as response:
            cookies.update((k, m.value) for k, m in response.cookies.items())
        if "csrftoken" not in cookies:
            raise CommandError(
                f"{urljoin(url, '/api/me/')} set no csrftoken cookie "
                f"(HTTP {response.status})."
            )
        token = cookies["csrftoken"]
        headers = {"X-CSRFToken": token, "Cookie": f"csrftoken={token}"}
        async with session.post(url, headers=headers) as response:
            cookies.update((k, m.value) for k, m in response.cookies.items())
        if response.status != 200 or "sessionid" not in cookies:
            raise CommandError(
                f"The first POST to {url} gave no session cookie "
                f"(HTTP {response.status})."
            )
    cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
    return {"Cookie": cookie, "X-CSRFToken": token}


def positive(value: str) -> int:
    number = parse_integer(value)
    if number < 1:
        raise ValueError
    return number


positive.__name__ = "positive integer"  # argparse names the type in errors


class Command(BaseCommand):
    help = (
        "Send concurrent POSTs to an increment endpoint and check that the "
        "numbers returned are unique and consecutive."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--url",
            action="append",
            dest="urls",
            help=f"Default {DEFAULT_URL}. Give it again for more hosts: the "
            "clients take turns over the URLs.",
        )
        parser.add_argument("--clients", type=positive, default=50, metavar="N")
        parser.add_argument("--requests", type=positive, default=1000, metavar="M")
        parser.add_argument(
            "--timeout", type=float, default=30.0, help="Seconds per request."
        )
        parser.add_argument(
            "--max-seconds",
            type=float,
            default=600.0,
            help="Stop sending after this long; unsent requests count as errors.",
        )
        parser.add_argument(
            "--same-session",
            action="store_true",
            help="Send every request as one visitor: one session cookie and its "
            "CSRF token, from a first request (for /api/me/increment/).",
        )
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(
        self,
        *args,
        urls,
        clients,
        requests,
        timeout,
        max_seconds,
        same_session,
        as_json,
        **options,
    ):
        urls = urls or [DEFAULT_URL]
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise CommandError(
                    f"--url must be an http:// or https:// URL, not {url!r}."
                )
        headers = None
        if same_session:
            try:
                headers = asyncio.run(visitor_headers(urls[0], timeout=timeout))
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise CommandError(
                    f"Could not get a session from {urls[0]}: {exc!r}"
                ) from exc
        results = self.run(
            urls, clients, requests, timeout, max_seconds, as_json, headers
        )
        summary = results.summary()
        if as_json:
            report = {"url": urls[0], "urls": urls, "same_session": same_session}
            self.stdout.write(json.dumps({**report, "clients": clients, **summary}))
        else:
            self.print_table(urls, clients, summary)
        problems = self.problems(summary)
        if problems:
            raise CommandError(problems)

    def run(
        self, urls, clients, requests, timeout, max_seconds, as_json, headers
    ) -> Results:
        load = lambda tick=None: run_load(  # noqa: E731
            urls,
            clients,
            requests,
            timeout=timeout,
            max_seconds=max_seconds,
            tick=tick,
            headers=headers,
        )
        if as_json or not self.stdout.isatty():
            return asyncio.run(load())
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
        console = Console(file=self.stdout._out)
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(f"POST {' '.join(urls)}", total=requests)
            return asyncio.run(load(lambda: progress.advance(task)))

    def print_table(self, urls, clients, summary) -> None:
        table = Table(title="loadtest", show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        errors = ", ".join(f"{k}: {v}" for k, v in summary["errors"].items())
        rows = [
            ("url", "\n".join(urls)),
            ("clients", clients),
            ("requests", summary["requests"]),
            ("sent", summary["sent"]),
            ("ok", summary["ok"]),
            ("errors", errors or "0"),
            ("throughput", f"{summary['rps']} req/s"),
            (
                "latency p50 / p95 / p99",
                "{p50_ms} / {p95_ms} / {p99_ms} ms".format(**summary),
            ),
            ("latency max", f"{summary['max_ms']} ms"),
            ("numbers", f"{summary['first']} … {summary['last']}"),
            ("duplicates", summary["duplicates"]),
            ("gaps", summary["gaps"]),
            ("consecutive", "yes" if summary["consecutive"] else "NO"),
            ("real-time order violations", summary["realtime_violations"]),
        ]
        for name, value in rows:
            table.add_row(name, str(value))
        Console(file=self.stdout._out, width=100).print(table)

    @staticmethod
    def problems(summary) -> str:
        """Return what went wrong, in one line, or "" when all is well."""
        parts = []
        failed = summary["requests"] - summary["ok"]
        if failed:
            parts.append(f"{failed} requests failed ({summary['errors']})")
        if summary["duplicates"]:
            parts.append(
                f"{summary['duplicates']} duplicates, first: "
                f"{summary['first_duplicates']}"
            )
        if summary["gaps"]:
            parts.append(f"{summary['gaps']} gaps, first: {summary['first_gaps']}")
        if summary["realtime_violations"]:
            parts.append(
                f"{summary['realtime_violations']} answers not above one answered "
                "before they were sent"
            )
        return "; ".join(parts)
