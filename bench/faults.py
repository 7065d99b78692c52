"""
Run the network fault tests and keep the figures they report.

    sudo python bench/faults.py          # writes docs/data/faults.json
    python bench/render_faults.py        # fills docs/deployment.md's table

tests/test_partitions.py and tests/test_failover_partitions.py make real
faults (network namespaces, veth links, tc and nftables; root only) under
load from two gunicorn masters, assert what must hold, and report what they
saw in each scenario: takes answered, answered and refused during the fault,
the longest request, numbers answered twice, gaps, real-time violations,
and on the slow, lossy link the take rate and batch size. This runs them
(every test must pass, or nothing is written) and writes those figures as
one run, the previous runs kept as faults-2.json and faults-3.json
(bench/data.py); docs/deployment.md shows them with the ranges over the
runs. Never run it beside another load.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.data import write_run  # noqa: E402
from bench.machine import facts, postgres_version  # noqa: E402
from counterproject.testing.servers import postgres_bindir  # noqa: E402

TESTS = ["tests/test_partitions.py", "tests/test_failover_partitions.py"]
# What each test reports its figures as (tests/partitions.py's show() and
# tests/test_partitions.py), and how docs/deployment.md names the scenario.
SCENARIOS = {
    "partition-primary-gevent": "1. primary cut off, gevent",
    "partition-primary-gthread": "1. primary cut off, gthread",
    "failover-unreachable-gevent": (
        "2a. old primary cut off from all, sync standby, gevent"
    ),
    "failover-reachable-gevent": (
        "2b. old primary cut off from its standby, sync, gevent"
    ),
    "failover-reachable-gthread": "2b. the same, gthread",
    "failover-unreachable-asynchronous": "2a. asynchronous standby, gevent",
    "failover-reachable-asynchronous": (
        "2b. asynchronous standby, gevent (fenced by stopping it)"
    ),
}
SLOW_LINK = "slow-lossy-link"


def collect(artifacts: Path) -> dict[str, dict]:
    """
    Return the figures each scenario reported into ``artifacts``; raise
    ValueError naming any scenario that reported nothing.
    """
    figures = {
        path.stem: json.loads(path.read_text())
        for path in sorted(Path(artifacts).glob("*.json"))
    }
    missing = sorted({*SCENARIOS, SLOW_LINK} - set(figures))
    if missing:
        raise ValueError(f"No figures from: {', '.join(missing)}.")
    return {name: figures[name] for name in [*SCENARIOS, SLOW_LINK]}


def run_tests(artifacts: Path) -> None:
    """Run the fault tests, their figures going to ``artifacts``; exit if one fails."""
    env = {**os.environ, "CI": "true", "COUNTERS_TEST_ARTIFACTS": str(artifacts)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS]
    if subprocess.run(command, cwd=ROOT, env=env).returncode:
        sys.exit("bench/faults.py: a fault test failed; nothing written.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(ROOT / "docs" / "data" / "faults.json"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit(
            "bench/faults.py needs root: the faults are made in network namespaces."
        )
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="counters-faults-") as artifacts:
        run_tests(Path(artifacts))
        scenarios = collect(Path(artifacts))
    data = {
        "when": started,
        "machine": {**facts(), "postgresql": postgres_version(postgres_bindir())},
        "tests": TESTS,
        "scenarios": scenarios,
    }
    write_run(Path(args.output), data)
    print(f"Wrote {args.output}; python bench/render_faults.py renders it.")


if __name__ == "__main__":
    main()
