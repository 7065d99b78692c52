"""
Measure the admin's audit trail with a million entries, and pruning it (#23).

    python bench/audit_admin.py   # writes docs/data/audit_admin.json

A throwaway PostgreSQL on loopback with production durability, filled with
``--entries`` audit entries in one INSERT … SELECT (80 % of them takes of
``global``, the rest spread over 50 counters, a few staff changes; one entry
every 30 seconds, so the oldest is about a year old), then VACUUM ANALYZE,
as autovacuum leaves a table. The admin runs in this process (the project's
settings, Django's test client, a logged-in superuser): each list page is
requested a few times, and its wall time, its queries and the plan of its
slowest query are kept. Then what the indexes of #23 cost (their build on
the full table, each insert's upkeep on a copy of the table), and prunes:
the oldest tenth of the trail in batches, while a thread takes numbers from
``global``, one counter, and a prune with nothing to remove. Wall times in
milliseconds; no other load should run meanwhile.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402

from counterproject.testing.servers import PostgresCluster, migrate  # noqa: E402

OUTPUT = ROOT / "docs" / "data" / "audit_admin.json"
SECRET = "bench-only-secret-key"
TRAIL = "/admin/counters/counterevent/"
REPEATS = 7
COUNTERS = 50

# One row of the trail, the i-th of n: what the INSERT … SELECT generates.
ENTRY = f"""
    CASE WHEN i %% 5 = 0 THEN 'c' || (i / 5 %% {COUNTERS}) ELSE 'global' END,
    CASE WHEN i %% 1000 = 0 THEN 'reset' WHEN i %% 1000 = 1 THEN 'set'
         ELSE 'take' END,
    i - 1, i,
    CASE WHEN i %% 1000 = 0 THEN 'admin' WHEN i %% 1000 = 1 THEN 'cli'
         WHEN i %% 2 = 0 THEN 'web' ELSE 'api' END,
    'ip:10.0.' || (i %% 250) || '.' || (i %% 199),
    now() - (%(n)s - i) * interval '30 seconds'
"""
COLUMNS = "counter_name, action, old_value, new_value, source, actor, created_at"


def fill(cursor, table: str, first: int, n: int) -> float:
    """Insert entries ``first``…``n`` into ``table``; return the seconds it took."""
    start = time.perf_counter()
    cursor.execute(
        f"INSERT INTO {table} ({COLUMNS}) SELECT {ENTRY} "
        "FROM generate_series(%(first)s, %(n)s) AS i",
        {"first": first, "n": n},
    )
    return time.perf_counter() - start


def milliseconds(seconds: float) -> float:
    return round(seconds * 1000, 2)


def spread(times: list[float]) -> dict:
    """Return the median, min and max of ``times`` (seconds), in milliseconds."""
    return {
        "median_ms": milliseconds(statistics.median(times)),
        "min_ms": milliseconds(min(times)),
        "max_ms": milliseconds(max(times)),
    }


# --- The admin --------------------------------------------------------------------


def admin_cases(last_page: int, last_c7_page: int) -> dict[str, dict]:
    return {
        "newest first, page 1": {},
        "page 100": {"p": "100"},
        f"last page ({last_page})": {"p": str(last_page)},
        "oldest first (sorted by when)": {"o": "0"},
        "source = cli (0.1 %)": {"source__exact": "cli"},
        "source = web (50 %)": {"source__exact": "web"},
        "action = reset (0.1 %)": {"action__exact": "reset"},
        "action = take (99.8 %)": {"action__exact": "take"},
        "counter = c7 (0.4 %)": {"counter_name": "c7"},
        "counter = global (80 %)": {"counter_name": "global"},
        "counter = c7 and source = api": {
            "counter_name": "c7",
            "source__exact": "api",
        },
        f"counter = c7, last page ({last_c7_page})": {
            "counter_name": "c7",
            "p": str(last_c7_page),
        },
        "search 'ip:10.0.7.7'": {"q": "ip:10.0.7.7"},
    }


def measure_page(client, params: dict) -> dict:
    """Request one list page REPEATS times; return its times and queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    cl = changelist(client, params)  # and a warm-up: caches, the session
    times = []
    for _ in range(REPEATS):
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            response = client.get(TRAIL, params)
            times.append(time.perf_counter() - start)
        assert response.status_code == 200, response.status_code
    sqls = [q["sql"] for q in queries.captured_queries]
    # The queries of the trail itself (the others: session, user, counters).
    trail = [explain(sql) for sql in sqls if "counters_counterevent" in sql]
    return {
        "params": params,
        **spread(times),
        "shown_count": cl.result_count,
        "rows": len(cl.result_list),
        "queries": len(sqls),
        "unbounded_counts": sum("COUNT(" in s and "LIMIT" not in s for s in sqls),
        "trail_queries_ms": sum(query["ms"] for query in trail),
        "trail_queries": trail,
    }


def changelist(client, params: dict):
    """Return the ChangeList a page shows (read once, outside the timed runs)."""
    from django.test.utils import (
        setup_test_environment,
        teardown_test_environment,
    )

    # The test client keeps a response's context only in a test environment,
    # whose instrumented template rendering would slow the timed requests.
    setup_test_environment()
    try:
        return client.get(TRAIL, params).context["cl"]
    finally:
        teardown_test_environment()


def explain(sql: str) -> dict:
    """Return a query's time (ms, as the server ran it) and its plan."""
    from django.db import connection

    with connection.cursor() as cursor:
        if not sql.startswith("SELECT"):  # the paginator's own EXPLAIN
            start = time.perf_counter()
            cursor.execute(sql)
            cursor.fetchall()
            return {"sql": sql, "ms": milliseconds(time.perf_counter() - start)}
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}")
        plan = [row[0] for row in cursor.fetchall()]
    [total] = [line for line in plan if line.startswith("Execution Time:")]
    ms = float(total.split(":")[1].split()[0])
    return {"sql": sql, "ms": ms, "plan": plan}


def measure_admin() -> dict:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_superuser("bench", password="bench")
    client = Client()
    client.force_login(user)
    cases = admin_cases(
        changelist(client, {}).paginator.num_pages,
        changelist(client, {"counter_name": "c7"}).paginator.num_pages,
    )
    results = {}
    for name, params in cases.items():
        results[name] = measure_page(client, params)
        print(f"  {name}: {results[name]['median_ms']} ms", flush=True)
    return results


def measure_default_counts() -> dict:
    """Time the COUNT(*) Django's own paginator would run on each page."""
    from django.db import connection

    counts = {
        "whole trail": "SELECT COUNT(*) FROM counters_counterevent",
        "source = web": "SELECT COUNT(*) FROM counters_counterevent "
        "WHERE source = 'web'",
        "counter = global": "SELECT COUNT(*) FROM counters_counterevent "
        "WHERE counter_name = 'global'",
    }
    results = {}
    with connection.cursor() as cursor:
        for name, sql in counts.items():
            times = []
            for _ in range(REPEATS):
                start = time.perf_counter()
                cursor.execute(sql)
                cursor.fetchall()
                times.append(time.perf_counter() - start)
            results[name] = spread(times)
    return results


# --- The indexes' cost ------------------------------------------------------------


BEFORE_23 = ["(counter_name, id DESC)", "(source, id DESC)"]
NEW = ["(action, id DESC)", "(created_at)"]
VARIANTS = {
    "before #23": BEFORE_23,
    **{f"+ {index}": [*BEFORE_23, index] for index in NEW},
    "after #23": [*BEFORE_23, *NEW],
}


def measure_indexes(connection, rows: int) -> dict:
    """Time the new indexes' build on the full table, and their upkeep on inserts."""
    results = {"build_ms": {}, "insert_us_per_row": {}}
    with connection.cursor() as cursor:
        for columns in NEW:
            start = time.perf_counter()
            cursor.execute(f"CREATE INDEX bench_copy ON counters_counterevent{columns}")
            results["build_ms"][columns] = milliseconds(time.perf_counter() - start)
            cursor.execute("DROP INDEX bench_copy")
        times = {name: [] for name in VARIANTS}
        for _ in range(5):
            for name, indexes in VARIANTS.items():
                cursor.execute(
                    "DROP TABLE IF EXISTS bench_trail;"
                    "CREATE TABLE bench_trail (LIKE counters_counterevent "
                    "INCLUDING DEFAULTS INCLUDING IDENTITY);"
                    "ALTER TABLE bench_trail ADD PRIMARY KEY (id);"
                    + "".join(f"CREATE INDEX ON bench_trail {i};" for i in indexes)
                )
                times[name].append(fill(cursor, "bench_trail", 1, rows) / rows)
        cursor.execute("DROP TABLE bench_trail")
    for name, per_row in times.items():
        results["insert_us_per_row"][name] = round(statistics.median(per_row) * 1e6, 2)
    results["rows_inserted"] = rows
    return results


# --- Prunes -----------------------------------------------------------------------


def takes_meanwhile(stop: threading.Event) -> dict:
    """Take numbers from global until ``stop``; return their latencies."""
    from django.db import connection

    from counters.actors import Actor
    from counters.models import Source
    from counters.services import counter_take

    visitor = Actor(Source.API, "ip:127.0.0.1")
    latencies = []
    try:
        while not stop.is_set():
            start = time.perf_counter()
            counter_take("global", actor=visitor)
            latencies.append(time.perf_counter() - start)
    finally:
        connection.close()
    return latencies


def latency_summary(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    return {
        "takes": len(ordered),
        "median_ms": milliseconds(statistics.median(ordered)),
        "p99_ms": milliseconds(ordered[int(len(ordered) * 0.99) - 1]),
        "max_ms": milliseconds(ordered[-1]),
    }


def timed_prune(name, before, *, batch_size=1000) -> dict:
    """Prune; return how many entries went, in how many batches, how fast."""
    from counters.actors import Actor
    from counters.models import Source
    from counters.services import counter_history_prune

    marks = []
    start = time.perf_counter()
    removed = counter_history_prune(
        name,
        before=before,
        actor=Actor(Source.CLI, "os:bench"),
        batch_size=batch_size,
        progress=lambda _: marks.append(time.perf_counter()),
    )
    total = time.perf_counter() - start
    batches = [b - a for a, b in zip([start, *marks], marks, strict=False)]
    return {
        "removed": removed,
        "batch_size": batch_size,
        "batches": len(marks),
        "total_ms": milliseconds(total),
        "entries_per_second": round(removed / total) if total else None,
        # Time between batches; the first includes the checks and finding
        # the range of entries to remove.
        "batch_ms": spread(batches) if batches else None,
        "slowest_batch": batches.index(max(batches)) + 1 if batches else None,
    }


def with_takes(run) -> tuple[dict, dict]:
    """Run ``run()`` while a thread takes numbers; return both results."""
    stop = threading.Event()
    result = {}
    taker = threading.Thread(target=lambda: result.update(t=takes_meanwhile(stop)))
    taker.start()
    try:
        value = run()
    finally:
        stop.set()
        taker.join()
    return value, latency_summary(result["t"])


def measure_prunes(entries: int) -> dict:
    from counters.models import CounterEvent

    def cut_at(entry_id: int):
        return CounterEvent.objects.get(id=entry_id).created_at

    # Takes alone, as long as the prune below lasts, to compare with.
    stop = threading.Event()
    timer = threading.Timer(3.0, stop.set)
    timer.start()
    alone = latency_summary(takes_meanwhile(stop))
    tenth = entries // 10
    every, during = with_takes(lambda: timed_prune(None, cut_at(tenth + 1)))
    oldest = CounterEvent.objects.order_by("id").first().created_at
    return {
        "takes alone (3 s)": alone,
        f"every counter, the oldest {tenth} entries": every,
        "takes during that prune": during,
        "one counter (c7), its entries of the oldest half": timed_prune(
            "c7", cut_at(entries // 2)
        ),
        "nothing to remove": timed_prune(None, oldest - timedelta(days=1)),
    }


# --- The run ------------------------------------------------------------------------


def setup_django(url: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="counterproject.settings",
        DATABASE_URL=url,
        SECRET_KEY=SECRET,
        DEBUG="0",
        ALLOWED_HOSTS="testserver",
    )
    import django
    from django.core.management import call_command

    django.setup()
    # The admin's pages name hashed static files: the manifest must exist.
    call_command("collectstatic", interactive=False, verbosity=0)


def populate(cluster: PostgresCluster, entries: int) -> float:
    connection = psycopg2.connect(cluster.url("bench"))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            seconds = fill(cursor, "counters_counterevent", 1, entries)
            cursor.execute(
                "INSERT INTO counters_counter (name, value, public, audit_takes, "
                "created_at, updated_at) SELECT 'c' || i, 0, true, false, now(), "
                f"now() FROM generate_series(0, {COUNTERS - 1}) AS i"
            )
            cursor.execute("VACUUM ANALYZE counters_counterevent")
    finally:
        connection.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    cluster = PostgresCluster(max_connections=50, durable=True)
    try:
        cluster.start()
        cluster.create_database("bench")
        url = cluster.url("bench")
        migrate(url, SECRET_KEY=SECRET)
        print(f"filling {args.entries} entries…", flush=True)
        fill_seconds = populate(cluster, args.entries)
        version = cluster.psql("SHOW server_version")
        setup_django(url)
        print("admin:", flush=True)
        admin = measure_admin()
        default_counts = measure_default_counts()
        print("indexes…", flush=True)
        raw = psycopg2.connect(url)
        raw.autocommit = True
        try:
            indexes = measure_indexes(raw, min(args.entries // 5, 200_000))
        finally:
            raw.close()
        print("prunes…", flush=True)
        prunes = measure_prunes(args.entries)
        from django.db import connections

        connections.close_all()
    finally:
        cluster.destroy()
    report = {
        "what": "the admin's audit trail and prune-history, wall milliseconds",
        "entries": args.entries,
        "fill_seconds": round(fill_seconds, 1),
        "machine": f"{os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, "
        f"PostgreSQL {version} on loopback (TCP), durable",
        "admin": admin,
        "count(*) Django's paginator would run on each page": default_counts,
        "indexes": indexes,
        "prunes": prunes,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print_summary(report)
    print(f"wrote {args.output}")


def print_summary(report: dict) -> None:
    print(f"\n{report['entries']} entries, {report['machine']}")
    for name, case in report["admin"].items():
        print(
            f"  {name:36} {case['median_ms']:8.1f} ms  (its trail queries "
            f"{case['trail_queries_ms']:.1f} ms, shows {case['shown_count']})"
        )
    counts = report["count(*) Django's paginator would run on each page"]
    for name, case in counts.items():
        print(f"  COUNT(*) {name:27} {case['median_ms']:8.1f} ms")
    indexes = report["indexes"]
    print(f"  index builds: {indexes['build_ms']}")
    print(f"  insert µs/row: {indexes['insert_us_per_row']}")
    for name, case in report["prunes"].items():
        print(f"  {name}: {case}")


if __name__ == "__main__":
    main()
