"""
``manage.py loadtest``: hammer an increment endpoint and check every number.

N clients on keep-alive connections send M POST requests in all, collect each
number returned and report throughput, latency, duplicates and gaps. It exits
0 only when every request succeeded and the numbers are unique and
consecutive, so it doubles as a correctness check in scripts. With
``--same-session`` every client is the same visitor (one session cookie); with
``--url`` given more than once the clients take turns over the URLs (several
hosts).

Its client libraries (aiohttp, rich) are the ``loadtest`` extra: without
them the command says how to install them, and the app runs as before.
"""

from __future__ import annotations

import asyncio
import json
from typing import IO

from django.core.management.base import BaseCommand, CommandError

from counters.parsing import parse_integer

try:
    import aiohttp
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from loadtest.load import NoVisitor, Results, run_load, visitor_headers
except ImportError as error:
    # The top-level package: "rich", not "rich.console".
    MISSING: str | None = (error.name or "aiohttp").partition(".")[0]
else:
    MISSING = None

DEFAULT_URL = "http://127.0.0.1:8000/api/counters/global/increment/"


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
        if MISSING:
            raise CommandError(
                f"loadtest needs {MISSING}, which is not installed: install the "
                "loadtest extra (pip install 'counterproject[loadtest]')."
            )
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
            except NoVisitor as exc:
                raise CommandError(str(exc)) from None
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
        console = Console(file=self.terminal())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(f"POST {' '.join(urls)}", total=requests)
            return asyncio.run(load(lambda: progress.advance(task)))

    def terminal(self) -> IO[str]:
        """Return the stream under ``self.stdout``, for rich to write to."""
        # OutputWrapper adds a line ending to each write; rich writes its own.
        return self.stdout._out  # type: ignore[return-value]

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
        Console(file=self.terminal(), width=100).print(table)

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
