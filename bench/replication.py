"""
Measure what a synchronous standby costs the take.

    python bench/replication.py          # writes docs/data/replication.json
    python bench/replication.py --smoke --output /tmp/replication.json

A primary and its streaming standby (pg_basebackup) on loopback, both with
production durability (fsync and synchronous commit on), and one gunicorn
(the project's settings, libpq's multi-host DATABASE_URL) serving the take.
The rounds alternate between the standby asynchronous (a commit waits for
the primary's disk alone) and synchronous (``synchronous_standby_names``:
it also waits until the standby has flushed it), switched with ALTER SYSTEM
and a reload, so both are measured in the same run on the same servers.
wrk loads the take, and pgbench the database's own limit for one hot row,
in each mode. Every number a take answered is checked against the counter
(none twice, none out of range, at most one a connection in flight) and its
audit entries. The run is written as JSON (the previous one kept as
replication-2.json, bench/data.py); bench/render_replication.py turns it
into docs/benchmarks-replication.md and its plot. Never run it beside
another load.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.checks import checked  # noqa: E402
from bench.data import write_run  # noqa: E402
from bench.database import HOT_ROW, Database  # noqa: E402
from bench.machine import facts, postgres_version, sh  # noqa: E402
from bench.serving import SECRET, WORKERS, booted_worker, serve  # noqa: E402
from bench.wrk import CLIENTS, wrk  # noqa: E402
from counterproject.testing.servers import PostgresCluster  # noqa: E402

STANDBY = "standby"  # the standby's cluster_name, so its application_name
MODES = {"asynchronous standby": "", "synchronous standby": STANDBY}
TAKE = "/api/counters/global/increment/"


def replication_mode(primary: Database, names: str) -> str:
    """
    Set synchronous_standby_names on the primary; wait until it applies and
    return the standby's sync_state.
    """
    primary.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
    primary.psql("SELECT pg_reload_conf()")
    wanted = "sync" if names else "async"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = primary.psql(
            "SELECT sync_state FROM pg_stat_replication "
            f"WHERE application_name = '{STANDBY}' AND state = 'streaming'"
        )
        if state == wanted:
            return state
        time.sleep(0.1)
    sys.exit(f"Error: the standby did not become {wanted} within 30 s.")


def measure(db: Database, server, args) -> dict[str, dict[str, list]]:
    """Load the take and pgbench in each mode, in turn, for every round."""
    url = server.base_url + TAKE
    meters = {"app": server.process.pid, "PostgreSQL": db.pg.postmaster_pid()}
    runs = {mode: {"take": [], "pgbench": []} for mode in MODES}
    wrk(url, 1)  # warm up: connections, caches
    for _ in range(args.rounds):
        for mode, names in MODES.items():
            state = replication_mode(db, names)
            # The last load's takes in flight when wrk stopped (up to one per
            # connection) still commit: let them, or they would count as
            # this round's unanswered numbers.
            db.settled("global")
            db.psql("UPDATE counters_counter SET value = 0 WHERE name = 'global'")
            since = db.last_event()
            result = wrk(url, args.seconds, meters=meters)
            result["sync_state"] = state
            runs[mode]["take"].append(
                checked(db, result, counter="global", since=since)
            )
            rate = db.pgbench(HOT_ROW, CLIENTS, args.seconds)
            runs[mode]["pgbench"].append({"rps": rate})
    return runs


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts, for CI")
    parser.add_argument(
        "--output", default=str(ROOT / "docs" / "data" / "replication.json")
    )
    parser.add_argument("--seconds", type=float, help="of each run (5; smoke 1)")
    parser.add_argument("--rounds", type=int, help="of turns (3; smoke 1)")
    args = parser.parse_args()
    args.seconds = args.seconds or (1 if args.smoke else 5)
    args.rounds = args.rounds or (1 if args.smoke else 3)
    return args


def main() -> None:
    args = arguments()
    work = Path(tempfile.mkdtemp(prefix="counters-bench-replication-"))
    primary = PostgresCluster(max_connections=200, durable=True)
    standby = PostgresCluster(
        max_connections=200, durable=True, settings={"cluster_name": STANDBY}
    )
    server = None
    try:
        primary.start()
        Database(primary, "postgres").psql("CREATE DATABASE bench")
        db = Database(primary, "bench")
        url = (
            f"postgres://{primary.user}@{primary.host}:{primary.port},"
            f"{standby.host}:{standby.port}/bench?target_session_attrs=read-write"
        )
        sh(sys.executable, "manage.py", "migrate", "--no-input", "-v0",
           env={"SECRET_KEY": SECRET, "DATABASE_URL": url})  # fmt: skip
        db.psql(
            "CREATE TABLE bench_counter (id int PRIMARY KEY, value bigint);"
            "INSERT INTO bench_counter VALUES (1, 0)"
        )
        standby.clone(primary)
        standby.start()
        log = work / "gunicorn.log"
        server = serve({"DATABASE_URL": url}, log, threads=None)
        data = {
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "smoke": args.smoke,
            "machine": {**facts(), "postgresql": postgres_version(primary.bindir)},
            "workers": WORKERS,
            "worker": booted_worker(log),
            "clients": CLIENTS,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "modes": measure(db, server, args),
        }
    finally:
        if server is not None:
            server.stop()
        standby.destroy()
        primary.destroy()
    write_run(Path(args.output), data)
    print(f"Wrote {args.output}; python bench/render_replication.py renders it.")


if __name__ == "__main__":
    main()
