"""
The benchmarks in smoke mode, so that they cannot rot (no timing asserted).

The benchmarks write JSON: the tests check what it holds (every number
accounted for, nothing handed out twice), then render it with bench/render.py
or the benchmark's own renderer and check that the page's figures are the
JSON's.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys

import pytest

from bench import render
from counterproject.testing.servers import ROOT

from .support import unavailable

# The smoke run's kinds: every worker class (gthread × 4 threads, the
# docs' fourth, differs from × 16 only in a number).
KINDS = {
    "gthread × 16 threads": "gthread",
    "gevent (the default)": "gevent",
    "ASGI": "asgi",
}
VIEWS = {"take", "no-op", "django-sequences", "take, SQL by hand"}
TAKES = {"take", "take, SQL by hand"}
# Requests a cell of bench/naive.py's table in its smoke run (2,000 for the
# docs): every cell filled and checked, in seconds.
NAIVE_REQUESTS = 100
# gunicorn's workers, and the connections each may hold to PostgreSQL: the
# pool's default size (counterproject/database_url.py).
WORKERS, POOL = 2, 16


def smoke_report(script: str, output, *args: str) -> str:
    """Run ``bench/<script>`` in smoke mode and return the report it wrote."""
    if shutil.which("wrk") is None:
        unavailable("wrk is not installed (Debian's package wrk)")
    result = subprocess.run(
        [sys.executable, f"bench/{script}", "--smoke", "--output", str(output), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return output.read_text()


@pytest.fixture(scope="module")
def benchmarks(tmp_path_factory) -> tuple:
    """Run bench/run.py in smoke mode once; return its JSON file and data."""
    output = tmp_path_factory.mktemp("bench") / "benchmarks.json"
    return output, json.loads(smoke_report("run.py", output, "--kinds", *KINDS))


def check_take(run: dict) -> None:
    """Assert that a take load handed out each number once, all accounted for."""
    assert run["duplicates"] == 0 and run["out_of_range"] == 0, run
    # In flight when wrk stopped: taken, not answered; one per connection.
    assert 0 <= run["missing"] <= run["clients"], run
    assert run["answered"] + run["missing"] == run["takes"], run
    # Each take left its audit entry, written by at least one transaction
    # and at most one a take.
    assert run["audited"] == run["takes"], run
    assert 1 <= run["batches"] <= run["takes"], run


def test_benchmark_writes_every_figure_as_json(benchmarks):
    _, data = benchmarks
    assert data["smoke"] is True and data["rounds"] == 1
    assert data["machine"]["cores"] == os.cpu_count()
    assert data["machine"]["postgresql"].startswith("postgres (PostgreSQL)")
    assert list(data["kinds"]) == list(KINDS)
    for kind, worker in KINDS.items():
        result = data["kinds"][kind]
        # Each kind was served by the worker class it names.
        assert result["worker"] == worker
        extra = {"no-op, async"} if kind == "ASGI" else set()
        assert set(result["runs"]) == VIEWS | extra | {"pgbench (a)"}
        for name, runs in result["runs"].items():
            [run] = runs
            assert run["rps"] > 0, (kind, name)
            if name == "pgbench (a)":
                continue
            assert run["errors"] == {}, (kind, name, run)
            assert run["rps"] == pytest.approx(run["answered"] / run["seconds"])
            assert 0 < run["client_cpu"] < 1 and 0 <= run["steal"] <= 1, run
            # The app's CPU per answer, measured for every view.
            assert run["cpu_ms"]["app"] > 0, (kind, name, run)
            if name in TAKES:
                check_take(run)
            elif name == "django-sequences":
                assert run["duplicates"] == 0, run
            else:
                assert run["duplicates"] is None  # a no-op answers 0 each time
        # PostgreSQL works for every take and never for the no-ops, which
        # touch no database.
        cpu = {n: runs[0]["cpu_ms"]["PostgreSQL"] for n, runs in result["runs"].items()
               if n != "pgbench (a)"}  # fmt: skip
        for name in TAKES | {"django-sequences"}:
            assert cpu[name] > max(cpu["no-op"], cpu.get("no-op, async", 0)), cpu
        # 500 clients: the pool bounds the connections the app holds.
        for clients, held in result["connections_held"].items():
            assert 0 < held <= WORKERS * POOL, (kind, clients, held)
        assert set(result["crowd"]) == {"take", "django-sequences"}
        check_take(result["crowd"]["take"])
        assert result["crowd"]["take"]["clients"] == data["many_clients"]
    # The per-user counters lost no increment; SQLite's take no number.
    visitors = data["visitors"]
    assert visitors["errors"] == {} and visitors["answered"] > 0
    assert 0 <= visitors["missing"] <= visitors["clients"], visitors
    sqlite = data["sqlite"]
    assert sqlite["errors"] == {} and sqlite["duplicates"] == 0
    assert sqlite["out_of_range"] == 0 and 0 <= sqlite["missing"] <= 100, sqlite
    # Each statement's CPU, through the ORM and by hand, for both batch sizes.
    assert list(data["statements"]) == ["4", "20"]
    for ways in data["statements"].values():
        assert list(ways) == ["ORM", "by hand"]
        for steps in ways.values():
            assert len(steps) == 4 and all(us > 0 for us in steps.values()), steps


def test_benchmark_renders_its_json_into_the_page_and_plots(benchmarks, tmp_path):
    output, data = benchmarks
    reuse = tmp_path / "reuse.md"
    reuse.write_text(
        "Beside django-sequences:\n\n"
        "<!-- begin generated: sequences (bench/render.py) -->\n"
        "<!-- end generated: sequences -->\n"
    )
    page = render.render_benchmarks([output, output], tmp_path, reuse=reuse)
    assert (tmp_path / "benchmarks.md").read_text() == page
    beside = reuse.read_text()
    assert beside.startswith("Beside django-sequences:\n")
    for plot in (render.TAKE_PLOT, render.BATCH_PLOT):
        assert (tmp_path / plot).read_text().startswith("<?xml"), plot
        assert f"]({plot})" in page
    assert f"The newest run, {data['when']} (--smoke" in page
    for kind, result in data["kinds"].items():
        runs = result["runs"]
        take = statistics.median(r["rps"] for r in runs["take"])
        noop = statistics.median(r["rps"] for r in runs["no-op"])
        # The rates' row starts with the JSON's take/s; the ranges over the
        # two (identical) runs are single figures.
        assert f"| {kind} | {take:,.0f} | " in page
        assert f"| {kind} | 2 | {take:,.0f} | " in page
        assert f"| {noop:,.0f} | " in page
        # docs/reuse.md's block: the take and get_next_value, and their ratio.
        sequences = statistics.median(r["rps"] for r in runs["django-sequences"])
        ratio = statistics.median(
            t["rps"] / d["rps"]
            for t, d in zip(runs["take"], runs["django-sequences"], strict=True)
        )
        assert f"| {kind} | {take:,.0f} | {sequences:,.0f} | {ratio:.2f} |" in beside
        # Each target's row: the take's rate over the other's, and the verdict.
        for other, target in data["targets"][kind].items():
            ratio = take / statistics.median(r["rps"] for r in runs[other])
            verdict = f"{ratio:.2f} {'✓' if ratio >= target else '✗'}"
            assert f"| {kind} | take / {other} | ≥ {target} | {verdict} |" in page
        for name, each in runs.items():
            if name != "pgbench (a)":
                [run] = each
                answered = f"| {kind} | {name}, 100 clients | {run['answered']:,} |"
                assert answered in page, answered
    ways = data["statements"]["20"]["ORM"]
    row = "| 20 | ORM | " + " | ".join(str(us) for us in ways.values())
    assert f"{row} | {sum(list(ways.values())[1:])} |" in page
    loads = 2 + sum(
        len(r["runs"]) - 1 + len(r["crowd"]) for r in data["kinds"].values()
    )
    assert f"Over the 2 run(s), {2 * loads} loads: 0 duplicates, 0 numbers out" in page


def test_replication_benchmark_writes_json_and_renders_it(tmp_path):
    # bench/replication.py, one short round of each mode on a real primary
    # and standby: the standby was in the mode named, every take's number
    # was answered once or in flight and audited; the renderer turns the
    # JSON into the page and the plot.
    output = tmp_path / "replication.json"
    data = json.loads(smoke_report("replication.py", output))
    assert data["smoke"] is True and data["rounds"] == 1 and data["clients"] == 100
    assert data["machine"]["postgresql"].startswith("postgres (PostgreSQL)")
    assert data["worker"] == "gevent"  # the default on PostgreSQL
    states = {"asynchronous standby": "async", "synchronous standby": "sync"}
    assert list(data["modes"]) == list(states)
    for mode, state in states.items():
        [take] = data["modes"][mode]["take"]
        [pgbench] = data["modes"][mode]["pgbench"]
        assert take["sync_state"] == state
        assert take["errors"] == {} and take["answered"] > 0, take
        check_take(take)
        assert take["cpu_ms"]["app"] > 0 and take["cpu_ms"]["PostgreSQL"] > 0, take
        assert pgbench["rps"] > 0

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from render_replication import PAGE, PLOT, render
    finally:
        sys.path.remove(str(ROOT / "bench"))
    page = render([output, output], tmp_path)
    assert (tmp_path / PAGE).read_text() == page
    assert (tmp_path / PLOT).read_text().startswith("<?xml")
    assert f"]({PLOT})" in page
    assert f"The newest run, {data['when']} (--smoke" in page
    for mode, result in data["modes"].items():
        [take], [pgbench] = result["take"], result["pgbench"]
        assert f"| {mode} | {take['rps']:,.0f} | " in page
        assert page.count(f"| {pgbench['rps']:,.0f} |") >= 2  # newest; range
        row = f"| {mode} | 1 | {take['takes']:,} | {take['answered']:,} | 0 | 0 |"
        assert row in page
    [asynchronous], [synchronous] = (m["take"] for m in data["modes"].values())
    ratio = synchronous["rps"] / asynchronous["rps"]
    assert f"round by round: take {ratio:.2f} (median {ratio:.2f})" in page
    assert "Over the 2 run(s), 4 loads of the take: 0 duplicates, 0 numbers" in page


IN_REDIS = {
    "cache.get + cache.set",
    "cache.incr (Redis INCR)",
    "session key, read-modify-write",
    "database: per-user counter",
}
PAGE = """# The alternatives

Written by hand.

<!-- begin generated: alternatives-full (bench/render.py) -->
Run `make bench` to generate this table.
<!-- end generated: alternatives-full -->

Written by hand too.
"""


def test_naive_benchmark_runs_end_to_end_with_few_requests(tmp_path):
    # The alternatives (bench/naive.py), on 100 requests a cell: every cell
    # is filled, and the project's own counters stay exact in every one of
    # them; the renderer fills the pages' generated blocks from the JSON.
    for program in ("redis-server", "pg_ctl"):
        if shutil.which(program) is None:
            unavailable(f"{program} is not installed")
    output = tmp_path / "alternatives.json"
    result = subprocess.run(
        [sys.executable, "bench/naive.py", "--output", str(output)],
        cwd=ROOT,
        env={**os.environ, "NAIVE_REQUESTS": str(NAIVE_REQUESTS)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(output.read_text())
    assert data["requests"] == NAIVE_REQUESTS and data["clients"] == 50
    alternatives = data["alternatives"]
    assert len(alternatives) == 8
    for label, alternative in alternatives.items():
        cells = alternative["cells"]
        # The Redis restart column is only for what Redis keeps.
        restart = {"Redis restart"} if label in IN_REDIS else set()
        assert alternative["in_redis"] == (label in IN_REDIS)
        assert set(cells) == set(data["shapes"][:5]) | restart, label
        for cell in cells.values():
            assert cell["requests"] == NAIVE_REQUESTS
            assert cell["ok"] + cell["failed"] == NAIVE_REQUESTS
            assert cell["rps"] > 0 and 0 <= cell["duplicates"] < NAIVE_REQUESTS, cell
    for label in ("database: global counter", "database: per-user counter"):
        for shape, cell in alternatives[label]["cells"].items():
            checks = ("duplicates", "gaps", "realtime_violations", "failed")
            assert [cell[check] for check in checks] == [0] * 4, (label, shape)
    # Two masters hold two module-level objects, each counting from 1.
    assert alternatives["module-level object"]["cells"]["2 masters"]["duplicates"] > 0

    readme = tmp_path / "README.md"
    readme.write_text("# A page without the markers\n")
    page = tmp_path / "alternatives.md"
    page.write_text(PAGE)
    short, full = render.render_alternatives(
        [output], tmp_path, readme=readme, page=page
    )
    assert readme.read_text() == "# A page without the markers\n"
    filled = page.read_text()
    assert filled.startswith(PAGE.split("<!--")[0]) and filled.endswith(
        "<!-- end generated: alternatives-full -->\n\nWritten by hand too.\n"
    )
    assert full in filled and "Run `make bench`" not in filled
    assert (tmp_path / render.ALTERNATIVES_PLOT).read_text().startswith("<?xml")
    # Each row holds the JSON's figures: the full table's cells, the short
    # table's duplicates and rate.
    database = alternatives["database: global counter"]["cells"]
    cells = [
        f"0 / 0 / 0 · {database[shape]['rps']:.0f}" for shape in data["shapes"][:5]
    ]
    assert f"| database: global counter | {' | '.join(cells)} | — |" in full
    manager = alternatives["multiprocessing.Manager"]["cells"]
    row = " | ".join(str(manager[s]["duplicates"]) for s in ("1 × 8", "4 × 8"))
    assert f"| multiprocessing.Manager | {row} | " in short
    # Rendering again changes nothing: the block is replaced, not added to.
    render.render_alternatives([output], tmp_path, readme=readme, page=page)
    assert page.read_text() == filled


def test_fairness_benchmark_runs_end_to_end_and_renders(tmp_path):
    # bench/fairness.py for one worker kind, short loads: every cell of its
    # JSON is filled, no number was answered twice, and the renderer turns
    # it into the page and the plot.
    if shutil.which("wrk") is None:
        unavailable("wrk is not installed (Debian's package wrk)")
    output = tmp_path / "fairness.json"
    result = subprocess.run(
        [sys.executable, "bench/fairness.py", "--smoke", "--seconds", "1",
         "--kinds", "gevent (the default)", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(output.read_text())
    [(kind, measured)] = data["kinds"].items()
    assert kind == "gevent (the default)"
    fair, before = measured["fair"], measured["before #23"]
    for run in (fair, before):
        floods = {"405 on the take's URL", "static file", "takes"}
        assert set(run["flood alone"]) == floods
        assert all(rate > 0 for rate in run["flood alone"].values())
    assert measured["duplicates"] == 0 and measured["numbers answered"] > 0
    for probe in ("GET /", "take"):
        assert set(fair[probe]) == {"alone", *fair["flood alone"]}
        assert fair[probe]["alone"]["least_answered"] > 0
        for row in fair[probe].values():
            # Whether every client is answered under a flood is
            # tests/test_fairness.py's to say, over seconds, not one.
            assert row["rps"] > 0 and row["p99_ms"] > 0 and row["errors"] == 0
    assert len(measured["targets"]) == 2 * 3 + 3
    assert 0 < data["client_cpu_share"] < 1

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from render_fairness import render
    finally:
        sys.path.remove(str(ROOT / "bench"))
    page = render([output], tmp_path)
    assert (tmp_path / "fairness.svg").read_text().startswith("<?xml")
    assert "| gevent (the default) | take |" in page
    assert "- gevent (the default): 0 of" in page


def test_metrics_cost_benchmark_runs_end_to_end_and_renders(tmp_path):
    # bench/metrics_cost.py for one worker kind, one short round: both
    # servers answered, none twice, the server with metrics counted every
    # take it answered (and at most one in flight per connection more), and
    # the renderer turns it into the page and the plot.
    if shutil.which("wrk") is None:
        unavailable("wrk is not installed (Debian's package wrk)")
    output = tmp_path / "metrics_cost.json"
    result = subprocess.run(
        [sys.executable, "bench/metrics_cost.py", "--smoke",
         "--kinds", "gthread × 16 threads", "--output", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(output.read_text())
    [(kind, measured)] = data["kinds"].items()
    assert kind == "gthread × 16 threads"
    assert set(measured["median_rps"]) == {"without metrics", "with metrics"}
    assert all(rate > 0 for rate in measured["median_rps"].values())
    assert measured["duplicates"] == 0
    answered = measured["takes_answered_with_metrics"]
    assert answered <= measured["takes_counted"] <= answered + 2 * data["connections"]

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from render_metrics_cost import render
    finally:
        sys.path.remove(str(ROOT / "bench"))
    page = render([output], tmp_path)
    assert (tmp_path / "metrics-cost.svg").read_text().startswith("<?xml")
    assert "| gthread × 16 threads |" in page
