"""
Measure the take beside the framework's ceiling and its closest peer.

    python bench/run.py                 # full run; writes docs/benchmarks.md
    python bench/run.py --smoke --output /tmp/bench.md   # seconds, for CI

For each gunicorn worker kind, ONE server (the project's settings and
middleware, plus two comparison views from bench/urls.py) serves the take,
a no-op JSON view (the framework's ceiling) and django-sequences'
``get_next_value`` (the closest peer). wrk, a C client in its own process,
loads them in turn for several rounds, beside pgbench on a one-row table
(the database's own limit for one hot row), so that a slow minute on this
shared machine slows each of them alike. wrk's script keeps every number
answered, so duplicates count; its CPU share is reported. Everything runs on
loopback: a throwaway PostgreSQL with production durability (fsync and
synchronous commit on), Redis, and gunicorn. Never run it beside another
load.
"""

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter as Tally
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from counterproject.testing.servers import (  # noqa: E402
    PostgresCluster,
    RedisServer,
    gunicorn,
    migrate,
)
from counterproject.testing.visitors import Visitor  # noqa: E402

CLIENTS = 100  # concurrent clients for every comparison
MANY_CLIENTS = 500  # for the connection bound
WORKERS = 2  # one per core
SECRET = "bench-only-secret-key"
SCRIPT = ROOT / "bench" / "numbers.lua"

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
# The counter each take view takes from: one each, so that a take still in
# flight when one view's run ends cannot land in the other's count.
TAKES = {"take": "global", "take, SQL by hand": "bench-sql"}
# Targets of #11, per kind: (ratio, at least).
TARGETS = {
    "gthread × 4 threads": [("take / django-sequences", 1.0)],
    "gthread × 16 threads": [
        ("take / django-sequences", 1.5),
        ("take / no-op", 0.7),
        ("take / pgbench (a)", 1.5),
    ],
    "gevent (the default)": [
        ("take / django-sequences", 1.5),
        ("take / no-op", 0.7),
        ("take / pgbench (a)", 1.5),
    ],
    "ASGI": [("take / django-sequences", 1.5), ("take / no-op", 0.9)],
}


def sh(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=True,
        capture_output=True,
        text=True,
    )


# --- PostgreSQL ---------------------------------------------------------------


class Database:
    def __init__(self, pg: PostgresCluster, name: str) -> None:
        self.pg, self.name = pg, name

    def psql(self, sql: str) -> str:
        return sh(
            str(self.pg.bindir / "psql"), *self.pg.client_args(), "-d", self.name,
            "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql,
        ).stdout.strip()  # fmt: skip

    def pgbench(self, script: str, clients: int, seconds: float) -> float:
        """Return pgbench's transactions per second for ``script``."""
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as file:
            file.write(script)
        os.chmod(file.name, 0o644)
        try:
            result = sh(
                str(self.pg.bindir / "pgbench"), *self.pg.client_args(), "-n",
                "-c", str(clients), "-j", "2", "-T", str(max(1, round(seconds))),
                "-f", file.name, self.name,
            )  # fmt: skip
        finally:
            os.unlink(file.name)
        return float(re.search(r"tps = ([\d.]+)", result.stdout).group(1))

    def settled(self, counter: str, seconds: float = 10) -> int:
        """
        Return the counter's value once it stops moving: the server may still
        finish takes that were in flight when wrk stopped.
        """
        query = f"SELECT value FROM counters_counter WHERE name = '{counter}'"
        value, deadline = int(self.psql(query)), time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.3)
            value, before = int(self.psql(query)), value
            if value == before:
                break
        return value

    def last_event(self) -> int:
        """Return the id of the newest audit entry (0 if none)."""
        return int(self.psql("SELECT coalesce(max(id), 0) FROM counters_counterevent"))

    def batches(self, counter: str, since: int) -> int:
        """
        Return how many transactions wrote the counter's audit entries after
        entry ``since``: PostgreSQL stamps one transaction's rows with one xmin.
        """
        return int(
            self.psql(
                "SELECT count(DISTINCT xmin::text) FROM counters_counterevent "
                f"WHERE id > {since} AND counter_name = '{counter}'"
            )
        )

    def connections(self) -> int:
        """Return how many client connections the app holds to this database."""
        return int(
            self.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                f"'{self.name}' AND backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()"
            )
        )


HOT_ROW = "UPDATE bench_counter SET value = value + 1 WHERE id = 1 RETURNING value;\n"


# --- wrk ------------------------------------------------------------------------


def machine_cpu() -> list[int]:
    """Return the machine's CPU times from /proc/stat (user … steal)."""
    return [int(field) for field in Path("/proc/stat").read_text().split()[1:9]]


def tree_cpu(pid: int) -> float:
    """
    Return the CPU seconds of process ``pid`` and of its children, those that
    run (gunicorn's workers, PostgreSQL's backends) and those that ended.
    """
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile: its parent counts it
        if int(stat.parent.name) == pid:
            ticks += sum(int(field) for field in fields[11:15])  # with ended children
        elif int(fields[1]) == pid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str, seconds: float, *, clients=CLIENTS, visitors=None, meters=None
) -> dict:
    """
    Load ``url`` with wrk for ``seconds``; return its rate and checks, and the
    CPU each process of ``meters`` (name: pid) spent per answer, in ms.
    """
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "out.txt"
        env = {"WRK_OUT": str(out)}
        if visitors:
            env["WRK_VISITORS"] = str(visitors)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_before = machine_cpu()
        meters = meters or {}
        spent = {name: tree_cpu(pid) for name, pid in meters.items()}
        began = time.monotonic()
        sh(
            "wrk", "-t", "2", "-c", str(clients), "-d", f"{max(1, round(seconds))}s",
            "--timeout", "30s", "-s", str(SCRIPT), url, env=env,
        )  # fmt: skip
        wall = time.monotonic() - began
        spent = {name: tree_cpu(meters[name]) - cpu for name, cpu in spent.items()}
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = [b - a for a, b in zip(cpu_before, machine_cpu(), strict=True)]
        lines = out.read_text().split("\nnumbers\n")
    fields = dict(line.split() for line in lines[0].splitlines())
    numbers = [int(n) for n in lines[1].split()]
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    errors = {k: int(v) for k, v in fields.items() if k.startswith("status_")}
    errors.update(
        (k, int(v)) for k, v in fields.items() if k.startswith("socket_") and v != "0"
    )
    seen = Tally(numbers)
    return {
        "rps": len(numbers) / (int(fields["duration_us"]) / 1e6),
        "seconds": int(fields["duration_us"]) / 1e6,
        "numbers": numbers,
        "duplicates": sum(times - 1 for times in seen.values()),
        "errors": errors,
        "p50_ms": int(fields["p50_us"]) / 1000,
        "p99_ms": int(fields["p99_us"]) / 1000,
        "client_cpu": used / (wall * os.cpu_count()),
        "steal": cpu[7] / max(1, sum(cpu)),
        "idle": (cpu[3] + cpu[4]) / max(1, sum(cpu)),
        "cpu_ms": {
            name: 1000 * seconds / max(1, len(numbers))
            for name, seconds in spent.items()
        },
    }


def checked(db: Database, name: str, result: dict, since: int) -> dict:
    """
    Add what the view's numbers say to ``result``, and for a take how many
    batches took them (audit entries after ``since``); drop the numbers.
    """
    # wrk stops with up to one request in flight per connection: those
    # numbers were taken, not answered. More missing than connections would
    # be a gap.
    numbers = result.pop("numbers")
    if name.startswith("no-op"):
        result["duplicates"] = None  # it answers 0 every time
    if name in TAKES:
        stored = db.settled(TAKES[name])
        result["missing"] = stored - len(set(numbers))
        result["takes"] = stored
        result["batches"] = db.batches(TAKES[name], since)
    return result


# --- One worker kind ------------------------------------------------------------


def serve(env: dict, log: Path, *, threads=16, args=(), ready="/api/counters/global/"):
    server = gunicorn(
        {
            "DEBUG": "0",
            "SECRET_KEY": SECRET,
            "ALLOWED_HOSTS": "127.0.0.1",
            # A load from one address is what the rate limits refuse (#23).
            "COUNTERS_TAKE_RATE": "off",
            "COUNTERS_VISITOR_RATE": "off",
            **env,
        },
        log=log,
        workers=WORKERS,
        threads=threads,
        args=args,
        ready_path=ready,
    )
    server.start()
    return server


def measure_kind(db: Database, env: dict, kind: dict, log: Path, args) -> dict:
    """Serve the three views with one server; load them and pgbench in turn."""
    server = serve(env, log, threads=kind["threads"], args=kind.get("args", ()))
    # The worker class gunicorn booted, from its log: a kind that silently
    # ran as another (the configuration's default) would mislabel a row.
    booted = re.search(r"Using worker: (\S+)", log.read_text()).group(1)
    if booted != kind["args"][1]:
        server.stop()
        sys.exit(f"Error: asked gunicorn for {kind['args'][1]}, it booted {booted}.")
    views = {**VIEWS, **kind.get("views", {})}
    meters = {"app": server.process.pid, "PostgreSQL": db.pg.postmaster_pid()}
    resets = {
        **{
            name: f"UPDATE counters_counter SET value = 0 WHERE name = '{counter}'"
            for name, counter in TAKES.items()
        },
        "django-sequences": "DELETE FROM sequences_sequence",
    }
    runs: dict[str, list[dict]] = {name: [] for name in [*views, "pgbench (a)"]}
    try:
        for path in views.values():
            wrk(server.base_url + path, 1)  # warm up: connections, caches
        for _ in range(args.rounds):
            for name, path in views.items():
                if name in resets:
                    db.psql(resets[name])
                since = db.last_event()
                result = wrk(server.base_url + path, args.seconds, meters=meters)
                checked(db, name, result, since)
                runs[name].append(result)
            rate = db.pgbench(HOT_ROW, CLIENTS, args.seconds)
            runs["pgbench (a)"].append({"rps": rate})
        held = {CLIENTS: db.connections()}
        # Many more clients than any pool: pages and takes at once.
        db.psql(resets["take"])
        crowd = {}
        for name in ("take", "django-sequences"):
            seconds = min(3, args.seconds)
            since = db.last_event()
            result = wrk(server.base_url + VIEWS[name], seconds, clients=MANY_CLIENTS)
            crowd[name] = checked(db, name, result, since)
        held[MANY_CLIENTS] = db.connections()
    finally:
        server.stop()
    return {"runs": runs, "held": held, "crowd": crowd, "worker": booted}


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
        # No lost update: the visitors' counters add up to every increment
        # answered, plus the one each visitor started with (and those in
        # flight when wrk stopped, at most one per connection).
        total = 0
        for line in cookies.read_text().splitlines():
            cookie, _ = line.split("\t")
            answer = requests.get(
                f"{server.base_url}/api/me/", headers={"Cookie": cookie}, timeout=10
            )
            total += answer.json()["value"]
        result["missing"] = total - CLIENTS - len(result.pop("numbers"))
        result["duplicates"] = None  # each visitor counts on its own
    finally:
        server.stop()
    return result


# --- The report -------------------------------------------------------------------


def machine() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    import django
    import gunicorn as gunicorn_package

    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return [
        f"CPU: {cpu}, {os.cpu_count()} cores",
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}",
        f"Django {django.get_version()}, gunicorn {gunicorn_package.__version__}, "
        + wrk_version.stdout.split(" [")[0].strip(),
    ]


def median(runs: list[dict], key: str = "rps") -> float:
    return statistics.median(run[key] for run in runs)


def median_cpu(runs: list[dict], meter: str) -> float:
    return statistics.median(run["cpu_ms"][meter] for run in runs)


def ratios(runs: dict[str, list[dict]]) -> dict[str, list[float]]:
    """Return each comparison's ratio round by round."""
    take = [run["rps"] for run in runs["take"]]
    return {
        f"take / {other}": [
            t / run["rps"] for t, run in zip(take, runs[other], strict=True)
        ]
        for other in runs
        if other != "take"
    }


def report(
    results: dict, visitors: dict, sqlite: dict, statements: dict, version: str, args
) -> str:
    smoke = " --smoke (tiny counts: not figures to quote)" if args.smoke else ""
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `python bench/run.py`{smoke} on {time.strftime('%Y-%m-%d')}. "
        "Do not edit by hand; run the script again (`make bench`).",
        "",
        *(f"- {line}" for line in machine()),
        f"- {version}, fsync and synchronous_commit on (production durability)",
        f"- {WORKERS} gunicorn workers; wrk -t2 -c{CLIENTS}, {args.seconds} s a run, "
        f"{args.rounds} round(s): take, no-op, django-sequences, the take with "
        "its SQL written by hand (bench/sql_take.py) and pgbench (a) in turn; "
        "medians",
        "",
        "| worker | take/s | take, SQL by hand/s | no-op/s | django-sequences/s "
        "| pgbench (a)/s | take / no-op | take / django-sequences "
        "| take / pgbench (a) | take / take, SQL by hand "
        f"| connections held after {CLIENTS} / {MANY_CLIENTS} clients "
        "| wrk CPU share | steal |",
        "| --- |" + " ---: |" * 12,
    ]
    rates = ["take", "take, SQL by hand", "no-op", "django-sequences", "pgbench (a)"]
    compared = ["no-op", "django-sequences", "pgbench (a)", "take, SQL by hand"]
    for kind, result in results.items():
        runs = result["runs"]
        every = ratios(runs)
        cells = [
            *(f"{median(runs[name]):.0f}" for name in rates),
            *(f"{statistics.median(every[f'take / {name}']):.2f}" for name in compared),
            f"{result['held'][CLIENTS]} / {result['held'][MANY_CLIENTS]}",
            f"{median(runs['take'], 'client_cpu'):.0%}",
            f"{median(runs['take'], 'steal'):.0%}",
        ]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    booted = ", ".join(f"{kind}: {each['worker']}" for kind, each in results.items())
    lines += ["", f"The worker class each server's log names: {booted}."]
    for kind, result in results.items():
        runs, every = result["runs"], ratios(result["runs"])
        for name in KINDS[kind].get("views", {}):
            cpu = " / ".join(
                f"{median_cpu(runs[name], meter):.2f}"
                for meter in ("app", "PostgreSQL")
            )
            lines += [
                "",
                f"{kind}, the {name} view: {median(runs[name]):.0f}/s; take / it: "
                f"{statistics.median(every[f'take / {name}']):.2f}; CPU per answer "
                f"(app / PostgreSQL): {cpu} ms.",
            ]
    lines += [
        "",
        "CPU per answer, in ms (medians): the app's gunicorn processes, then "
        "PostgreSQL's. Unlike a rate, it does not depend on how the workers "
        "shared the connections:",
        "",
        "| worker | " + " | ".join(VIEWS) + " |",
        "| --- |" + " ---: |" * len(VIEWS),
    ]
    for kind, result in results.items():
        cells = [
            " / ".join(
                f"{median_cpu(result['runs'][name], meter):.2f}"
                for meter in ("app", "PostgreSQL")
            )
            for name in VIEWS
        ]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Batches (medians): how many takes one transaction served, and the run's "
        "time divided by its transactions. One batch at a time holds the "
        "counter's row, and under this load the row is never free for long: "
        "that is about how long each held it, the hand-over to the next "
        "included. Counted from the audit entries, one xmin a transaction:",
        "",
        "| worker | "
        + " | ".join(f"{name}: takes a batch | ms a batch" for name in TAKES)
        + " |",
        "| --- |" + " ---: | ---: |" * len(TAKES),
    ]
    for kind, result in results.items():
        cells = [cell for name in TAKES for cell in batch_cells(result["runs"][name])]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += statement_table(statements)
    lines += [
        "",
        "Targets (#11), on the medians:",
        "",
        "| worker | ratio | target | measured | rounds |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for kind, targets in TARGETS.items():
        if kind not in results:
            continue  # not measured in this run (--kinds)
        every = ratios(results[kind]["runs"])
        for name, target in targets:
            value = statistics.median(every[name])
            mark = "✓" if value >= target else "✗"
            rounds = ", ".join(f"{v:.2f}" for v in every[name])
            lines.append(
                f"| {kind} | {name} | ≥ {target} | {value:.2f} {mark} | {rounds} |"
            )
    lines += [
        "",
        "Correctness of every run (duplicates among the numbers wrk received; "
        "numbers taken but never answered, at most one per connection in "
        "flight when wrk stopped; answers other than 200):",
        "",
        "| worker | load | duplicates | unanswered (≤ clients) | errors "
        "| p50 ms | p99 ms |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for kind, result in results.items():
        for name, views in result["runs"].items():
            if name == "pgbench (a)":
                continue
            for run in views:
                lines.append(row(kind, f"{name}, {CLIENTS} clients", run))
        for name, run in result["crowd"].items():
            lines.append(row(kind, f"{name}, {MANY_CLIENTS} clients", run))
    lines.append(row("default (gevent), Redis", "per-user, 100 visitors", visitors))
    lines.append(row("default on SQLite (gthread × 16)", "take", sqlite))
    lines += [
        "",
        f"Per-user increments (100 visitors, each its own session, Redis): "
        f"{visitors['rps']:.0f}/s. The embedded SQLite default's take: "
        f"{sqlite['rps']:.0f}/s.",
    ]
    return "\n".join(lines) + "\n"


def batch_cells(runs: list[dict]) -> list[str]:
    """A take view's takes per batch and milliseconds per batch, medians."""
    takes = statistics.median(run["takes"] / run["batches"] for run in runs)
    ms = statistics.median(1000 * run["seconds"] / run["batches"] for run in runs)
    return [f"{takes:.1f}", f"{ms:.2f}"]


def statement_table(statements: dict) -> list[str]:
    """The CPU of each statement of a batch, ORM and by hand."""
    steps = list(next(iter(next(iter(statements.values())).values())))
    lines = [
        "",
        "CPU of this process per statement of a batch, in µs (bench/statements.py: "
        "one connection, no other load, medians). A batch holds the row from "
        "its SELECT's answer to its COMMIT; the last column is that part:",
        "",
        "| takes in the batch | statements | "
        + " | ".join(steps)
        + " | holding the row |",
        "| ---: | --- |" + " ---: |" * (len(steps) + 1),
    ]
    for takes, ways in statements.items():
        for way, times in ways.items():
            held = sum(list(times.values())[1:])
            cells = [str(times[step]) for step in steps] + [str(held)]
            lines.append(f"| {takes} | {way} | " + " | ".join(cells) + " |")
    return lines


def row(kind: str, load: str, run: dict) -> str:
    errors = ", ".join(f"{k}: {v}" for k, v in run["errors"].items()) or "0"
    unanswered = run.get("missing", "–")
    duplicates = "–" if run["duplicates"] is None else run["duplicates"]
    return (
        f"| {kind} | {load} | {duplicates} | {unanswered} | {errors} "
        f"| {run['p50_ms']:.1f} | {run['p99_ms']:.1f} |"
    )


# --- The run ------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts, for CI")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    parser.add_argument("--seconds", type=float, help="of each run (5; smoke 1)")
    parser.add_argument("--rounds", type=int, help="of turns (3; smoke 1)")
    args = parser.parse_args()
    args.seconds = args.seconds or (1 if args.smoke else 5)
    args.rounds = args.rounds or (1 if args.smoke else 3)
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
        version = sh(str(pg.bindir / "postgres"), "--version").stdout.strip()
        results = {
            name: measure_kind(db, env, KINDS[name], work / f"{index}.log", args)
            for index, name in enumerate(args.kinds)
        }
        visitors = measure_visitors({**env, "REDIS_URL": redis.url}, work, args)
        sqlite = measure_sqlite(work, args)
        statements = measure_statements(env, args)
        text = report(results, visitors, sqlite, statements, version, args)
    finally:
        redis.destroy()
        pg.destroy()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(text)


def measure_statements(env: dict, args) -> dict:
    """CPU per statement of a batch, ORM and by hand (bench/statements.py)."""
    batches = "30" if args.smoke else "300"
    result = sh(
        sys.executable, str(ROOT / "bench" / "statements.py"), "--batches", batches,
        env={"SECRET_KEY": SECRET, "DEBUG": "0", **env},
    )  # fmt: skip
    return json.loads(result.stdout)


def measure_sqlite(work: Path, args) -> dict:
    """Load the take on the embedded default: an SQLite file, default shape."""
    env = {"DATABASE_URL": f"sqlite:///{work / 'db.sqlite3'}"}
    migrate(env["DATABASE_URL"], SECRET_KEY=SECRET)
    server = serve(env, work / "sqlite.log")
    try:
        result = wrk(f"{server.base_url}{VIEWS['take']}", args.seconds)
        stored = requests.get(f"{server.base_url}/api/counters/global/", timeout=10)
        numbers = result.pop("numbers")
        result["missing"] = stored.json()["value"] - len(set(numbers))
    finally:
        server.stop()
    return result


if __name__ == "__main__":
    main()
