"""
Load a URL with wrk and bench/numbers.lua, which keeps every number answered.

wrk is a C client in a process of its own; the script writes its counts and
each number a 200 answered to a file (``WRK_OUT``), read back here.
"""

import tempfile
from collections import Counter as Tally
from pathlib import Path

from .machine import ROOT, Accounting, sh

CLIENTS = 100  # concurrent clients for every comparison
SCRIPT = ROOT / "bench" / "numbers.lua"


def parse(text: str) -> tuple[dict[str, int], list[int]]:
    """Return numbers.lua's ``key value`` fields and the numbers answered."""
    head, numbers = text.split("\nnumbers\n")
    fields = {key: int(value) for key, value in map(str.split, head.splitlines())}
    return fields, [int(number) for number in numbers.split()]


def wrk(
    url: str, seconds: float, *, clients=CLIENTS, visitors=None, meters=None
) -> dict:
    """
    Load ``url`` with wrk for ``seconds``; return its rate, latencies,
    errors, the numbers answered (``numbers``) and how many twice, and the
    CPU the run spent (``Accounting``: each meter's, name: pid, per answer).
    """
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "out.txt"
        env = {"WRK_OUT": str(out)}
        if visitors:
            env["WRK_VISITORS"] = str(visitors)
        accounting = Accounting(meters).start()
        sh(
            "wrk", "-t", "2", "-c", str(clients), "-d", f"{max(1, round(seconds))}s",
            "--timeout", "30s", "-s", str(SCRIPT), url, env=env,
        )  # fmt: skip
        fields, numbers = parse(out.read_text())
    errors = {k: v for k, v in fields.items() if k.startswith("status_")}
    errors.update((k, v) for k, v in fields.items() if k.startswith("socket_") and v)
    seen = Tally(numbers)
    duration = fields["duration_us"] / 1e6
    return {
        "rps": len(numbers) / duration,
        "seconds": duration,
        "clients": clients,
        "answered": len(numbers),
        "numbers": numbers,
        "duplicates": sum(times - 1 for times in seen.values()),
        "errors": errors,
        "p50_ms": fields["p50_us"] / 1000,
        "p99_ms": fields["p99_us"] / 1000,
        **accounting.stop(len(numbers)),
    }
