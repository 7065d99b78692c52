"""
Measure what the metrics cost (#25): the take's rate with /metrics served
(and so every figure counted) and without, on two servers up at once.

    python bench/metrics_cost.py            # writes docs/data/metrics_cost.json
    python bench/metrics_cost.py --smoke    # seconds, for a quick look
    python bench/render_metrics_cost.py     # docs/metrics-cost.md and its plot

For each worker kind, two gunicorn servers of the same configuration run on
one PostgreSQL, one with METRICS_ALLOW set and one without, and wrk (100
connections, every number kept) loads their take by turns, round after
round, the order swapped each round, so that a slow moment of this shared
machine slows both alike. Each round checks every number: none twice.
After the last round the server with metrics is scraped: its count of takes
(the numbers it answered, and those wrk left in flight), its batches, and
the 99th percentiles of the row's hold and of the take's answer, which
docs/operations.md's alerts are set against.
Everything runs on loopback; never run it beside another load.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.database import Database  # noqa: E402
from bench.serving import SECRET, serve  # noqa: E402
from bench.wrk import CLIENTS, wrk  # noqa: E402
from counterproject.testing.servers import PostgresCluster, migrate  # noqa: E402

KINDS = {
    "gevent (the default)": {"threads": None, "args": ["--worker-class", "gevent"]},
    "gthread × 16 threads": {"threads": 16, "args": ["--worker-class", "gthread"]},
    "ASGI": {
        "threads": None,
        "args": ["--worker-class", "asgi", "counterproject.asgi:application"],
    },
}
TAKE = "/api/counters/global/increment/"
SETTINGS = {"without metrics": {}, "with metrics": {"METRICS_ALLOW": "127.0.0.1"}}
TARGET = 0.95  # the take's rate with metrics, at least this share of without


def measure_kind(db: Database, env: dict, kind: dict, work: Path, args) -> dict:
    """Serve one kind with and without metrics; load both by turns."""
    servers = {
        name: serve(
            {**env, **extra},
            work / f"{name.replace(' ', '-')}.log",
            threads=kind["threads"],
            args=kind["args"],
        )
        for name, extra in SETTINGS.items()
    }
    try:
        runs: dict[str, list[dict]] = {name: [] for name in servers}
        warm_up = {
            name: len(wrk(server.base_url + TAKE, 1)["numbers"])
            for name, server in servers.items()
        }
        for round_ in range(args.rounds):
            for name in sorted(servers, reverse=round_ % 2 == 1):
                run = wrk(servers[name].base_url + TAKE, args.seconds)
                numbers = run.pop("numbers")
                run["answered"] = len(numbers)
                runs[name].append(run)
        figures = scraped(servers["with metrics"].base_url)
    finally:
        for server in servers.values():
            server.stop()
    medians = {
        name: statistics.median(r["rps"] for r in rs) for name, rs in runs.items()
    }
    ratio = medians["with metrics"] / medians["without metrics"]
    ratios = [
        on["rps"] / off["rps"]
        for on, off in zip(runs["with metrics"], runs["without metrics"], strict=True)
    ]
    return {
        "runs": runs,
        "median_rps": medians,
        "ratio": ratio,
        "round_ratios": ratios,
        "duplicates": sum(r["duplicates"] for rs in runs.values() for r in rs),
        "takes_counted": figures.pop("takes"),
        "scraped": figures,
        # Counted: every take answered, warm-up included, and those in flight
        # when wrk stopped (at most one per connection).
        "takes_answered_with_metrics": warm_up["with metrics"]
        + sum(r["answered"] for r in runs["with metrics"]),
        "within_target": ratio >= TARGET,
    }


def scraped(base_url: str) -> dict:
    """
    Return what the server's /metrics reports of its takes: how many, in how
    many batches, and the 99th percentiles (a bucket's bound) of the row's
    hold and of the take's answer.
    """
    text = requests.get(f"{base_url}/metrics", timeout=30).text
    samples = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]

    def total(name: str, **labels: str) -> float:
        return sum(
            s.value
            for s in samples
            if s.name == name and labels.items() <= s.labels.items()
        )

    def p99(name: str, **labels: str) -> float:
        buckets: dict[float, float] = {}
        for s in samples:
            if s.name == f"{name}_bucket" and labels.items() <= s.labels.items():
                bound = float(s.labels["le"])
                buckets[bound] = buckets.get(bound, 0) + s.value
        count = max(buckets.values())
        return min(bound for bound, n in buckets.items() if n >= 0.99 * count)

    batches = total("counters_take_batch_size_count")
    take = {"view": "counters:api-take", "status_class": "2xx"}
    return {
        "takes": total("counters_takes_total"),
        "batches": batches,
        "takes_per_batch": total("counters_take_batch_size_sum") / batches,
        "row_held_p99_s": p99("counters_take_row_held_seconds"),
        "take_answer_p99_s": p99("counters_http_request_duration_seconds", **take),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="short runs")
    parser.add_argument("--seconds", type=float, help="of each load (5; smoke 1)")
    parser.add_argument("--rounds", type=int, help="per server (5; smoke 1)")
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    parser.add_argument(
        "--output", default=str(ROOT / "docs" / "data" / "metrics_cost.json")
    )
    args = parser.parse_args()
    args.seconds = args.seconds or (1 if args.smoke else 5)
    args.rounds = args.rounds or (1 if args.smoke else 5)
    work = Path(tempfile.mkdtemp(prefix="counters-metrics-cost-"))
    pg = PostgresCluster(max_connections=400, durable=True)
    try:
        pg.start()
        pg.create_database("bench")
        env = {"DATABASE_URL": pg.url("bench")}
        migrate(env["DATABASE_URL"], SECRET_KEY=SECRET)
        db = Database(pg, "bench")
        results = {}
        for index, name in enumerate(args.kinds):
            (work / str(index)).mkdir()
            results[name] = measure_kind(db, env, KINDS[name], work / str(index), args)
    finally:
        pg.destroy()
    data = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "connections": CLIENTS,
        "cpus": os.cpu_count(),
        "target_ratio": TARGET,
        "kinds": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(data, indent=2, ensure_ascii=False))
    summary = {k: {**v["median_rps"], "ratio": v["ratio"]} for k, v in results.items()}
    print(json.dumps(summary, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
