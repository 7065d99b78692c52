"""
Measure fairness: 10 clients beside a 100-connection keep-alive flood (#23).

    python bench/fairness.py            # writes docs/data/fairness.json
    python bench/fairness.py --smoke    # seconds, for a quick look

For each worker kind, one server answers 10 clients of ``GET /`` and then of
the take, first alone and then beside a flood of 100 kept-alive connections
asking for (a) GET on the take's URL (a 405), (b) a static file, (c) takes.
Each of the 10 clients is a wrk process of its own with one connection, so
that each client's answers and p99 are its own; the flood is one more wrk.
The flood's own rate is measured alone too, by turns on two servers up at
once: one as configured, one without the turnstile after each request
(``gunicorn.conf.py``'s ``post_request``) that #23 added, so the cost of
fairness to the flooder is measured, not guessed. Every number a take
answers is kept, and duplicates are counted.
Everything runs on loopback; never run it beside another load.
"""

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.serving import serve  # noqa: E402
from bench.wrk import SCRIPT  # noqa: E402
from counterproject.testing.servers import PostgresCluster, migrate  # noqa: E402

CLIENTS = 10
FLOOD = 100
SECRET = "bench-only-secret-key"
KINDS = {
    "gthread × 16 threads": {"threads": 16, "args": ["--worker-class", "gthread"]},
    "gevent (the default)": {"threads": None, "args": ["--worker-class", "gevent"]},
    "ASGI": {
        "threads": None,
        "args": ["--worker-class", "asgi", "counterproject.asgi:application"],
    },
}
TAKE = "/api/counters/global/increment/"
PROBES = {"GET /": ("GET", "/"), "take": ("POST", TAKE)}
FLOODS = {
    "405 on the take's URL": ("GET", TAKE),
    "static file": ("GET", "/static/counters/site.css"),
    "takes": ("POST", TAKE),
}
# Targets of #23 for the clients under each flood.
TARGET_P99_MS = 250
TARGET_SHARE = 0.05
TARGET_FLOOD_COST = 0.10


def start_wrk(url: str, method: str, seconds: float, connections: int):
    """Start one wrk process; return it and the file it reports to."""
    out = tempfile.NamedTemporaryFile(suffix=".txt", delete=False)
    out.close()
    threads = "2" if connections > 1 else "1"
    process = subprocess.Popen(
        ["wrk", "-t", threads, "-c", str(connections), "-d", f"{round(seconds)}s",
         "--timeout", "10s", "-s", str(SCRIPT), url],
        env={**os.environ, "WRK_OUT": out.name, "WRK_METHOD": method},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return process, Path(out.name)


# CPU seconds the wrk processes used, each read from its own rusage.
CLIENT_CPU = [0.0]
# Every number a take answered, over the loads of one server.
ANSWERED: list[int] = []


def finish_wrk(process, out: Path) -> dict:
    """Wait for wrk; return its answers, rate, p99 and statuses."""
    _, status, usage = os.wait4(process.pid, 0)  # at its -d, or on SIGINT
    process.returncode = os.waitstatus_to_exitcode(status)
    CLIENT_CPU[0] += usage.ru_utime + usage.ru_stime
    text, numbers = out.read_text().split("\nnumbers\n")
    out.unlink()
    ANSWERED.extend(int(number) for number in numbers.split())
    fields = dict(line.split() for line in text.splitlines())
    seconds = int(fields["duration_us"]) / 1e6
    answered = int(fields["requests"])
    return {
        "answered": answered,
        "rps": answered / seconds,
        "p99_ms": int(fields["p99_us"]) / 1000,
        "errors": {
            k: int(v) for k, v in fields.items() if k.startswith("socket_") and v != "0"
        },
    }


def clients(base_url: str, probe: str, seconds: float) -> dict:
    """Load ``probe`` from CLIENTS one-connection wrk processes at once."""
    method, path = PROBES[probe]
    started = [
        start_wrk(f"{base_url}{path}", method, seconds, 1) for _ in range(CLIENTS)
    ]
    each = [finish_wrk(*wrk) for wrk in started]
    return {
        "rps": sum(client["rps"] for client in each),
        "least_answered": min(client["answered"] for client in each),
        "p99_ms": max(client["p99_ms"] for client in each),
        "errors": sum(sum(client["errors"].values()) for client in each),
    }


def flood_alone(base_url: str, flood: str, seconds: float) -> float:
    method, path = FLOODS[flood]
    return finish_wrk(*start_wrk(f"{base_url}{path}", method, seconds, FLOOD))["rps"]


def measure_kind(env: dict, kind: dict, work: Path, args) -> dict:
    """
    Serve one kind as configured and without the yield, side by side, and
    measure both.

    The floods alone take turns on the two servers, round after round, after
    a warm-up of each, so that a slow moment of this shared machine slows
    both alike; the clients beside each flood load the configured server.
    """
    servers = {
        fair: serve(
            env,
            work / f"{'fair' if fair else 'unfair'}.log",
            threads=kind["threads"],
            args=[*([] if fair else ["-c", str(UNFAIR_CONFIG)]), *kind["args"]],
        )
        for fair in (True, False)
    }
    ANSWERED.clear()
    try:
        urls = {fair: server.base_url for fair, server in servers.items()}
        alone = {fair: {flood: [] for flood in FLOODS} for fair in urls}
        # Warm up before measuring; a smoke run measures nothing to compare.
        for fair, flood in [] if args.smoke else itertools.product(urls, FLOODS):
            flood_alone(urls[fair], flood, 1)
        for round_ in range(args.rounds):
            for flood in FLOODS:
                for fair in sorted(urls, reverse=round_ % 2 == 1):
                    rate = flood_alone(urls[fair], flood, args.flood_seconds)
                    alone[fair][flood].append(rate)
        result = {
            "fair": {"flood alone": medians(alone[True])},
            "before #23": {"flood alone": medians(alone[False])},
        }
        for probe in PROBES:
            row = result["fair"][probe] = {
                "alone": clients(urls[True], probe, args.seconds)
            }
            for flood in FLOODS:
                method, path = FLOODS[flood]
                flooding = start_wrk(
                    f"{urls[True]}{path}", method, args.seconds + 3, FLOOD
                )
                time.sleep(1)
                row[flood] = clients(urls[True], probe, args.seconds)
                # Its -d outlasts the clients; end it with them (wrk stops on
                # SIGINT and reports as at the end of its -d).
                flooding[0].send_signal(signal.SIGINT)
                row[flood]["flood_rps"] = finish_wrk(*flooding)["rps"]
        return counted(result)
    finally:
        for server in servers.values():
            server.stop()


def medians(rates: dict[str, list[float]]) -> dict[str, float]:
    return {flood: statistics.median(runs) for flood, runs in rates.items()}


def counted(result: dict) -> dict:
    """Add how many numbers the servers' takes answered, and how many twice."""
    result["numbers answered"] = len(ANSWERED)
    result["duplicates"] = len(ANSWERED) - len(set(ANSWERED))
    return result


# gunicorn.conf.py as it was before #23: every hook but the yield.
UNFAIR_CONFIG = ROOT / "bench" / "gunicorn_unfair.conf.py"


def verdicts(result: dict, unfair: dict) -> dict:
    """Return, per probe and flood, whether each target of #23 is met."""
    out = {}
    for probe in PROBES:
        alone = result[probe]["alone"]["rps"]
        for flood in FLOODS:
            row = result[probe][flood]
            out[f"{probe} under {flood}"] = {
                "every client answered": row["least_answered"] > 0,
                "p99 ≤ 250 ms": row["p99_ms"] <= TARGET_P99_MS,
                "≥ 5 % of alone": row["rps"] >= TARGET_SHARE * alone,
            }
    for flood in FLOODS:
        before = unfair["flood alone"][flood]
        after = result["flood alone"][flood]
        out[f"{flood}: flood's own rate"] = {
            "within 10 %": after >= (1 - TARGET_FLOOD_COST) * before
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="short runs")
    parser.add_argument("--seconds", type=float, help="of each load (5; smoke 2)")
    parser.add_argument("--rounds", type=int, help="of the floods alone (3; smoke 1)")
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    parser.add_argument(
        "--output", default=str(ROOT / "docs" / "data" / "fairness.json")
    )
    args = parser.parse_args()
    args.seconds = args.seconds or (2 if args.smoke else 5)
    args.rounds = args.rounds or (1 if args.smoke else 3)
    args.flood_seconds = min(args.seconds, 3)
    work = Path(tempfile.mkdtemp(prefix="counters-fairness-"))
    pg = PostgresCluster(max_connections=400, durable=True)
    wall = time.monotonic()
    try:
        pg.start()
        pg.create_database("bench")
        env = {"DATABASE_URL": pg.url("bench")}
        migrate(env["DATABASE_URL"], SECRET_KEY=SECRET)
        results = {}
        for index, name in enumerate(args.kinds):
            (work / str(index)).mkdir()
            result = measure_kind(env, KINDS[name], work / str(index), args)
            result["targets"] = verdicts(result["fair"], result["before #23"])
            results[name] = result
    finally:
        pg.destroy()
    # wrk's share of the machine over the whole run, servers' starts included.
    client_cpu = CLIENT_CPU[0] / ((time.monotonic() - wall) * os.cpu_count())
    data = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "flood_seconds": args.flood_seconds,
        "clients": CLIENTS,
        "flood_connections": FLOOD,
        "client_cpu_share": client_cpu,
        "kinds": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(data, indent=2, ensure_ascii=False))
    print(json.dumps(data, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
