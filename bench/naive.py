"""
The README's answer to "will the global object go wrong, and what instead?"

    python bench/naive.py      # writes docs/data/alternatives.json (minutes)
    NAIVE_REQUESTS=100 python bench/naive.py --output /tmp/alternatives.json

``NAIVE_REQUESTS=100`` runs 100 requests a cell, not 2,000, as the suite does;
``bench/render.py`` turns the JSON into the tables of README.md and
docs/alternatives.md and a plot.

It serves the project with COUNTERS_NAIVE_DEMO=1 on a throwaway PostgreSQL
(production durability) and Redis, and runs loadtest's load against every
alternative people suggest (``naive_demo/views.py``) and against the project's
own global and per-user counters: under gunicorn (gthread) 1 × 1, 1 × 8,
4 × 1 and 4 × 8; through two masters of 2 × 8 on the same database and Redis
(two hosts, the clients taking turns); and, for the Redis-backed ones, at
4 × 8 across a Redis restart without persistence (half the requests before,
half after). Never run it beside another load.
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import serving  # noqa: E402
from bench.data import write_run  # noqa: E402
from bench.machine import facts, postgres_version  # noqa: E402
from bench.serving import SECRET  # noqa: E402
from counterproject.testing.servers import (  # noqa: E402
    PostgresCluster,
    RedisServer,
    migrate,
)
from loadtest.load import (  # noqa: E402
    Results,
    run_load,
    visitor_headers,
)

SHAPES = [(1, 1), (1, 8), (4, 1), (4, 8)]
TWO_HOSTS = (2, 8)  # per master
CLIENTS = 50
REQUESTS = int(os.environ.get("NAIVE_REQUESTS", 2000))
# (label, path, one visitor for every client, kept in Redis)
ALTERNATIVES = [
    ("module-level object", "/api/naive/increment/", False, False),
    ("module-level dict", "/api/naive/dict/increment/", False, False),
    ("cache.get + cache.set", "/api/naive/cache/increment/", False, True),
    ("cache.incr (Redis INCR)", "/api/naive/cache-incr/increment/", False, True),
    ("multiprocessing.Manager", "/api/naive/manager/increment/", False, False),
    ("session key, read-modify-write", "/api/naive/session/increment/", True, True),
    ("database: global counter", "/api/counters/global/increment/", False, False),
    ("database: per-user counter", "/api/me/increment/", True, True),
]
COLUMNS = [f"{w} × {t}" for w, t in SHAPES] + ["2 masters", "Redis restart"]


def visitor(urls: list[str], same_session: bool) -> dict | None:
    """Return one visitor's headers (loadtest --same-session), or None."""
    if not same_session:
        return None
    return asyncio.run(visitor_headers(urls[0], timeout=30))


def load(urls: list[str], requests: int, headers: dict | None) -> Results:
    """Run loadtest's load against ``urls`` (clients take turns over them)."""
    return asyncio.run(
        run_load(urls, CLIENTS, requests, timeout=60, max_seconds=300, headers=headers)
    )


def merged(before: Results, after: Results) -> Results:
    """Return one Results for two runs, as if they had been one."""
    results = Results(requests=before.requests + after.requests)
    for name in ("latencies", "numbers", "timed"):
        getattr(results, name).extend(getattr(before, name) + getattr(after, name))
    results.errors = before.errors + after.errors
    results.elapsed = before.elapsed + after.elapsed
    return results


def serve(env: dict, shape: tuple[int, int], log: Path):
    """Start gunicorn as ``shape`` (workers, threads) of gthread; return it."""
    workers, threads = shape
    return serving.serve(
        env, log, workers=workers, threads=threads, args=("--worker-class", "gthread")
    )


def cell(results: Results) -> dict:
    """Return what one cell shows: the checks, the rate and the failures."""
    s = results.summary()
    return {
        "duplicates": s["duplicates"],
        "gaps": s["gaps"],
        "realtime_violations": s["realtime_violations"],
        "rps": s["rps"],
        "requests": s["requests"],
        "ok": s["ok"],
        "failed": s["requests"] - s["ok"],
        "p50_ms": s["p50_ms"],
        "p99_ms": s["p99_ms"],
    }


def measure(env: dict, redis: RedisServer, work: Path) -> dict:
    """Return each alternative's cell in each column it is measured in."""
    table = {label: {} for label, *_ in ALTERNATIVES}
    for shape in SHAPES:
        server = serve(env, shape, work / "gunicorn.log")
        try:
            for label, path, same_session, _ in ALTERNATIVES:
                redis.client().flushall()  # the cache counters start at 1
                urls = [server.base_url + path]
                results = load(urls, REQUESTS, visitor(urls, same_session))
                table[label][f"{shape[0]} × {shape[1]}"] = cell(results)
        finally:
            server.stop()

    servers = [serve(env, TWO_HOSTS, work / f"gunicorn-{n}.log") for n in (1, 2)]
    try:
        for label, path, same_session, _ in ALTERNATIVES:
            redis.client().flushall()
            urls = [server.base_url + path for server in servers]
            results = load(urls, REQUESTS, visitor(urls, same_session))
            table[label]["2 masters"] = cell(results)
    finally:
        for server in servers:
            server.stop()

    server = serve(env, (4, 8), work / "gunicorn.log")
    try:
        for label, path, same_session, in_redis in ALTERNATIVES:
            if not in_redis:
                continue
            redis.client().flushall()
            urls = [server.base_url + path]
            headers = visitor(urls, same_session)  # one visitor throughout
            before = load(urls, REQUESTS // 2, headers)
            # Redis saves a snapshot on shutdown by default; without one it
            # comes back empty, as a cache without persistence does.
            redis.client().config_set("save", "")
            redis.stop()
            redis.start()
            after = load(urls, REQUESTS // 2, headers)
            table[label]["Redis restart"] = cell(merged(before, after))
    finally:
        server.stop()
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output", default=str(ROOT / "docs" / "data" / "alternatives.json")
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="counters-naive-"))
    pg = PostgresCluster(max_connections=300, durable=True)
    redis = RedisServer()
    pg.start()
    redis.start()
    try:
        pg.create_database("counters")
        env = {
            "DATABASE_URL": pg.url("counters"),
            "REDIS_URL": redis.url,
            "COUNTERS_NAIVE_DEMO": "1",
        }
        migrate(env["DATABASE_URL"], SECRET_KEY=SECRET)
        version = postgres_version(pg.bindir)
        table = measure(env, redis, work)
    finally:
        redis.destroy()
        pg.destroy()
    data = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {**facts(), "postgresql": version},
        "clients": CLIENTS,
        "requests": REQUESTS,
        "worker": "gthread",
        "shapes": COLUMNS,
        "alternatives": {
            label: {
                "path": path,
                "same_session": same_session,
                "in_redis": in_redis,
                "cells": table[label],
            }
            for label, path, same_session, in_redis in ALTERNATIVES
        },
    }
    write_run(Path(args.output), data)
    print(json.dumps(data, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
