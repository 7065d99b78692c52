"""
Measure what resetting a connection costs when it goes back to the pool.

    python bench/pool_reset.py [--iterations 2000]   # writes docs/data/pool_reset.json

A throwaway PostgreSQL on loopback with production durability, and the
project's pool (counterproject.postgresql.base.Pool) of one connection. Each
iteration is one request's use of the pool: take the connection, run the
request's statements, put it back. The pool puts it back with ``DISCARD
ALL`` (#23); the same pool without the reset is the baseline. A request
that leaves state behind (a SET, an advisory lock, a temporary table) is
measured too, with the reset only: without it, that state piles up. Wall
time of each step, in microseconds; no other load should run meanwhile.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "counterproject.settings")
os.environ.setdefault("DEBUG", "1")

import psycopg2  # noqa: E402

from counterproject.postgresql.base import RESET, Pool  # noqa: E402
from counterproject.testing.servers import PostgresCluster  # noqa: E402

OUTPUT = ROOT / "docs" / "data" / "pool_reset.json"
WARM_UP = 200

CLEAN = ["SELECT 1"]
DIRTY = [
    "SET statement_timeout = '5s'",
    "SELECT pg_advisory_lock(23)",
    "CREATE TEMP TABLE scratch (n int)",
]


class PoolWithoutReset(Pool):
    """The project's pool, handing connections back as the request left them."""

    def reset(self, connection) -> bool:
        return True


def round_trips(pool: Pool, connect, statements: list[str], count: int) -> dict:
    """Return each step's times (µs) over ``count`` round trips through ``pool``."""
    steps = {"get": [], "request": [], "put": [], "round trip": []}
    for iteration in range(WARM_UP + count):
        start = time.perf_counter_ns()
        connection, lease = pool.get(connect)
        got = time.perf_counter_ns()
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        done = time.perf_counter_ns()
        pool.put(connection, lease)
        end = time.perf_counter_ns()
        if iteration >= WARM_UP:
            spans = [got - start, done - got, end - done, end - start]
            for step, ns in zip(steps, spans, strict=True):
                steps[step].append(ns / 1000)
    return {step: summary(times) for step, times in steps.items()}


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "median": round(statistics.median(ordered), 1),
        "mean": round(statistics.fmean(ordered), 1),
        "p99": round(ordered[int(len(ordered) * 0.99) - 1], 1),
    }


def measure(cluster: PostgresCluster, count: int) -> dict:
    def connect():
        connection = psycopg2.connect(cluster.url())
        connection.autocommit = True  # as Django leaves it
        return connection

    cases = {
        "without reset": (PoolWithoutReset, CLEAN),
        f"with {RESET}": (Pool, CLEAN),
        f"with {RESET}, after SET, an advisory lock and a temp table": (Pool, DIRTY),
    }
    results = {}
    for name, (kind, statements) in cases.items():
        pool = kind(1, 10, 3600)
        try:
            results[name] = round_trips(pool, connect, statements, count)
        finally:
            pool.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    cluster = PostgresCluster(max_connections=20, durable=True)
    try:
        cluster.start()
        version = cluster.psql("SHOW server_version")
        results = measure(cluster, args.iterations)
    finally:
        cluster.destroy()
    baseline = results["without reset"]["put"]["median"]
    report = {
        "what": "microseconds per step of one request's use of the pool",
        "iterations": args.iterations,
        "machine": f"{os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, "
        f"PostgreSQL {version} on loopback (TCP)",
        "cases": results,
        "reset cost (median put, minus without reset)": {
            name: round(case["put"]["median"] - baseline, 1)
            for name, case in results.items()
            if name != "without reset"
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    for name, case in results.items():
        trip, put = case["round trip"], case["put"]
        print(
            f"{name}: round trip median {trip['median']} µs (p99 {trip['p99']}), "
            f"put median {put['median']} µs"
        )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
