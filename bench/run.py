"""
Measure the take beside the framework's ceiling and its closest peer.

    python bench/run.py          # full run; writes docs/data/benchmarks.json
    python bench/run.py --smoke --output /tmp/benchmarks.json   # for CI
    python bench/render.py       # docs/benchmarks.md and its plots

For each gunicorn worker kind, ONE server (the project's settings and
middleware, plus two comparison views from bench/urls.py) serves the take,
a no-op JSON view (the framework's ceiling) and django-sequences'
``get_next_value`` (the closest peer). wrk, a C client in its own process,
loads them in turn for several rounds, beside pgbench on a one-row table
(the database's own limit for one hot row), so that a slow minute on this
shared machine slows each of them alike. wrk's script keeps every number
answered, so duplicates count; its CPU share is recorded. Everything runs on
loopback: a throwaway PostgreSQL with production durability (fsync and
synchronous commit on), Redis, and gunicorn. Never run it beside another
load.

The run is data: every round of every load, as measured, goes to the JSON
(the previous run kept as benchmarks-2.json, bench/data.py); medians, ratios
and the targets' verdicts are the renderer's. The pieces: bench/machine.py
(CPU accounting, the machine), bench/wrk.py (the load), bench/checks.py
(the numbers against the database), bench/database.py, bench/serving.py.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.checks import accounted, checked, unchecked, visitors_checked  # noqa: E402
from bench.data import write_run  # noqa: E402
from bench.database import HOT_ROW, Database  # noqa: E402
from bench.machine import facts, postgres_version, sh  # noqa: E402
from bench.serving import SECRET, WORKERS, booted_worker, serve  # noqa: E402
from bench.wrk import CLIENTS, wrk  # noqa: E402
from counterproject.testing.servers import (  # noqa: E402
    PostgresCluster,
    RedisServer,
    migrate,
)
from counterproject.testing.visitors import Visitor  # noqa: E402

MANY_CLIENTS = 500  # for the connection bound
PGBENCH = "pgbench (a)"

# Worker kind: gunicorn arguments after the configuration file's defaults.
KINDS = {
    # gunicorn.conf.py picks gevent on PostgreSQL: gthread must be named.
    "gthread × 4 threads": {"threads": 4, "args": ["--worker-class", "gthread"]},
    "gthread × 16 threads": {"threads": 16, "args": ["--worker-class", "gthread"]},
    "gevent (the default)": {"threads": None, "args": ["--worker-class", "gevent"]},
    "ASGI": {
        "threads": None,
        "args": ["--worker-class", "asgi", "counterproject.asgi:application"],
        # Under ASGI the take is an async view, and Django runs a sync view
        # in a thread made for each request: the no-op both ways.
        "views": {"no-op, async": "/bench/noop-async/"},
    },
}
VIEWS = {
    "take": "/api/counters/global/increment/",
    "no-op": "/bench/noop/",
    "django-sequences": "/bench/sequences/",
    # The same statements written by hand (bench/sql_take.py): what the
    # ORM costs, measured rather than guessed.
    "take, SQL by hand": "/bench/sql/bench-sql/increment/",
}
NO_OPS = {"no-op", "no-op, async"}  # they answer 0 every time
# The counter each take view takes from: one each, so that a take still in
# flight when one view's run ends cannot land in the other's count.
TAKES = {"take": "global", "take, SQL by hand": "bench-sql"}
# Targets of #11, per kind: the take's rate over another's, at least.
TARGETS = {
    "gthread × 4 threads": {"django-sequences": 1.0},
    "gthread × 16 threads": {"django-sequences": 1.5, "no-op": 0.7, PGBENCH: 1.5},
    "gevent (the default)": {"django-sequences": 1.5, "no-op": 0.7, PGBENCH: 1.5},
    "ASGI": {"django-sequences": 1.5, "no-op": 0.9},
}


def load_view(db: Database, base_url: str, name: str, path: str, **options) -> dict:
    """Load one view with wrk and check what it answered."""
    if name in TAKES:
        db.psql(f"UPDATE counters_counter SET value = 0 WHERE name = '{TAKES[name]}'")
    elif name == "django-sequences":
        db.psql("DELETE FROM sequences_sequence")
    since = db.last_event()
    result = wrk(base_url + path, **options)
    if name in TAKES:
        return checked(db, result, counter=TAKES[name], since=since)
    return unchecked(result, constant=name in NO_OPS)


def measure_kind(db: Database, env: dict, kind: dict, log: Path, args) -> dict:
    """Serve the views with one server; load them and pgbench in turn."""
    server = serve(env, log, threads=kind["threads"], args=kind.get("args", ()))
    # A kind that silently ran as another (the configuration's default)
    # would mislabel its figures.
    booted = booted_worker(log)
    if booted != kind["args"][1]:
        server.stop()
        sys.exit(f"Error: asked gunicorn for {kind['args'][1]}, it booted {booted}.")
    views = {**VIEWS, **kind.get("views", {})}
    meters = {"app": server.process.pid, "PostgreSQL": db.pg.postmaster_pid()}
    runs: dict[str, list[dict]] = {name: [] for name in [*views, PGBENCH]}
    try:
        # Warm up (connections, caches) before measuring; a smoke run
        # measures nothing to compare.
        for path in [] if args.smoke else views.values():
            wrk(server.base_url + path, 1)
        for _ in range(args.rounds):
            for name, path in views.items():
                runs[name].append(
                    load_view(
                        db,
                        server.base_url,
                        name,
                        path,
                        seconds=args.seconds,
                        meters=meters,
                    )
                )
            rate = db.pgbench(HOT_ROW, CLIENTS, args.seconds)
            runs[PGBENCH].append({"rps": rate, "clients": CLIENTS})
        held = {str(CLIENTS): db.connections()}
        # Many more clients than any pool: the pool bounds the connections.
        crowd = {
            name: load_view(
                db,
                server.base_url,
                name,
                VIEWS[name],
                seconds=min(3, args.seconds),
                clients=MANY_CLIENTS,
            )
            for name in ("take", "django-sequences")
        }
        held[str(MANY_CLIENTS)] = db.connections()
    finally:
        server.stop()
    return {
        "worker": booted,
        "views": views,
        "runs": runs,
        "connections_held": held,
        "crowd": crowd,
    }


def visitors_file(base_url: str, path: Path, count: int) -> Path:
    """Give ``count`` visitors a session each; write their cookies for wrk."""
    lines = []
    for _ in range(count):
        visitor = Visitor(base_url)
        visitor.post("/api/me/increment/").raise_for_status()
        cookie = "; ".join(f"{k}={v}" for k, v in visitor.cookies.items())
        lines.append(f"{cookie}\t{visitor.cookies['csrftoken']}")
    path.write_text("\n".join(lines) + "\n")
    return path


def measure_visitors(env: dict, work: Path, args) -> dict:
    """Load 100 visitors' own counters, each with its session, with Redis."""
    server = serve(env, work / "visitors.log", ready="/api/me/")
    try:
        cookies = visitors_file(server.base_url, work / "visitors.tsv", CLIENTS)
        result = wrk(
            f"{server.base_url}/api/me/increment/", args.seconds, visitors=cookies
        )
        values = [
            requests.get(
                f"{server.base_url}/api/me/", headers={"Cookie": cookie}, timeout=10
            ).json()["value"]
            for cookie, _ in (
                line.split("\t") for line in cookies.read_text().splitlines()
            )
        ]
        result["worker"] = booted_worker(work / "visitors.log")
        return visitors_checked(result, values)
    finally:
        server.stop()


def measure_sqlite(work: Path, args) -> dict:
    """Load the take on the embedded default: an SQLite file, default shape."""
    env = {"DATABASE_URL": f"sqlite:///{work / 'db.sqlite3'}"}
    migrate(env["DATABASE_URL"], SECRET_KEY=SECRET)
    server = serve(env, work / "sqlite.log")
    try:
        result = wrk(f"{server.base_url}{VIEWS['take']}", args.seconds)
        stored = requests.get(f"{server.base_url}/api/counters/global/", timeout=10)
        result["worker"] = booted_worker(work / "sqlite.log")
        return accounted(result, stored.json()["value"])
    finally:
        server.stop()


def measure_statements(env: dict, args) -> dict:
    """CPU per statement of a batch, ORM and by hand (bench/statements.py)."""
    batches = "30" if args.smoke else "300"
    result = sh(
        sys.executable, str(ROOT / "bench" / "statements.py"), "--batches", batches,
        env={"SECRET_KEY": SECRET, "DEBUG": "0", **env},
    )  # fmt: skip
    return json.loads(result.stdout)


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts, for CI")
    parser.add_argument(
        "--output", default=str(ROOT / "docs" / "data" / "benchmarks.json")
    )
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    parser.add_argument("--seconds", type=float, help="of each run (5; smoke 1)")
    parser.add_argument("--rounds", type=int, help="of turns (3; smoke 1)")
    args = parser.parse_args()
    args.seconds = args.seconds or (1 if args.smoke else 5)
    args.rounds = args.rounds or (1 if args.smoke else 3)
    return args


def main() -> None:
    args = arguments()
    if shutil.which("wrk") is None:
        sys.exit(
            "Error: bench/run.py needs wrk (Debian's package: apt-get install wrk)."
        )
    work = Path(tempfile.mkdtemp(prefix="counters-bench-"))
    pg = PostgresCluster(max_connections=400, durable=True)
    redis = RedisServer()
    try:
        pg.start()
        redis.start()
        pg.create_database("bench")
        db = Database(pg, "bench")
        env = {
            "DATABASE_URL": pg.url("bench"),
            "DJANGO_SETTINGS_MODULE": "bench.settings",
        }
        migrate(env["DATABASE_URL"], SECRET_KEY=SECRET, **env)
        db.psql(
            "CREATE TABLE bench_counter (id int PRIMARY KEY, value bigint);"
            "INSERT INTO bench_counter VALUES (1, 0);"
            # The hand-written take's own counter, made as global is.
            "INSERT INTO counters_counter (name, value, public, audit_takes, "
            "created_at, updated_at) VALUES ('bench-sql', 0, true, true, now(), now())"
        )
        data = {
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "smoke": args.smoke,
            "machine": {**facts(), "postgresql": postgres_version(pg.bindir)},
            "workers": WORKERS,
            "clients": CLIENTS,
            "many_clients": MANY_CLIENTS,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "takes": TAKES,
            "targets": {kind: TARGETS[kind] for kind in args.kinds},
            "kinds": {
                name: measure_kind(db, env, KINDS[name], work / f"{index}.log", args)
                for index, name in enumerate(args.kinds)
            },
        }
        data["visitors"] = measure_visitors({**env, "REDIS_URL": redis.url}, work, args)
        data["sqlite"] = measure_sqlite(work, args)
        data["statements"] = measure_statements(env, args)
    finally:
        redis.destroy()
        pg.destroy()
    write_run(Path(args.output), data)
    print(f"Wrote {args.output}; python bench/render.py renders it.")


if __name__ == "__main__":
    main()
