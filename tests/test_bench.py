"""The benchmark in smoke mode, so that it cannot rot (no timing asserted)."""

import json
import os
import re
import shutil
import subprocess
import sys

from counterproject.testing.servers import ROOT

from .support import unavailable

KINDS = {
    "gthread × 4 threads": "gthread",
    "gthread × 16 threads": "gthread",
    "gevent (the default)": "gevent",
    "ASGI": "asgi",
}
# The loads of each kind: its views at 100 clients, two at 500; ASGI's async
# no-op besides.
LOADS = {kind: 4 + 2 for kind in KINDS} | {"ASGI": 4 + 2 + 1}


def smoke_report(script: str, output) -> str:
    """Run ``bench/<script>`` in smoke mode and return the report it wrote."""
    if shutil.which("wrk") is None:
        unavailable("wrk is not installed (Debian's package wrk)")
    result = subprocess.run(
        [sys.executable, f"bench/{script}", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return output.read_text()


def test_benchmark_runs_end_to_end_in_smoke_mode(tmp_path):
    report = smoke_report("run.py", tmp_path / "benchmarks.md")
    rates, cpu, batches, targets, checks = report.split("\n\n| worker |")[1:6]
    for kind, worker in KINDS.items():
        assert f"| {kind}" in rates
        assert f"| {kind}" in targets
        # CPU per answer, app / PostgreSQL, for each view: measured, not 0.
        [row] = [line for line in cpu.splitlines() if line.startswith(f"| {kind} |")]
        for cell in row.strip("|").split("|")[1:]:
            app, database = (float(ms) for ms in cell.split(" / "))
            assert app > 0 and database >= 0, row
        # Each row was served by the worker class it names.
        assert f"{kind}: {worker}" in rates
        # Each take view's batches, counted from its audit entries: at least
        # one take a batch, and each batch took some time.
        [row] = [
            line for line in batches.splitlines() if line.startswith(f"| {kind} |")
        ]
        cells = [float(cell) for cell in row.strip("|").split("|")[1:]]
        assert len(cells) == 4 and all(cell > 0 for cell in cells), row
        assert cells[0] >= 1 and cells[2] >= 1, row
    # ASGI's async no-op: its rate, ratio and CPU, measured.
    extra = re.search(
        r"ASGI, the no-op, async view: (\d+)/s; take / it: [\d.]+; "
        r"CPU per answer \(app / PostgreSQL\): ([\d.]+) / [\d.]+ ms\.",
        rates,
    )
    assert extra and int(extra[1]) > 0 and float(extra[2]) > 0, rates
    # Each statement's CPU, through the ORM and by hand, for both batch sizes.
    statements = [
        line.strip("|").split("|")
        for line in batches.splitlines()
        if line.startswith(("| 4 |", "| 20 |"))
    ]
    assert [(c[0].strip(), c[1].strip()) for c in statements] == [
        ("4", "ORM"), ("4", "by hand"), ("20", "ORM"), ("20", "by hand"),
    ]  # fmt: skip
    for cells in statements:
        times = [int(cell) for cell in cells[2:]]
        assert all(t > 0 for t in times) and times[-1] == sum(times[1:-1]), cells
    # Every load handed out each number once, and every answer was a 200.
    rows = [line for line in checks.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == sum(LOADS.values()) + 2  # and per-user, and SQLite
    for line in rows:
        kind, load, duplicates, unanswered, errors = (
            cell.strip() for cell in line.strip("|").split("|")[:5]
        )
        assert errors == "0", line
        if "no-op" not in load and "per-user" not in load:
            assert duplicates == "0", line
        if unanswered != "–":
            # In flight when wrk stopped: at most one per connection.
            clients = 500 if "500 clients" in load else 100
            assert 0 <= int(unanswered) <= clients, line


def test_replication_benchmark_runs_end_to_end_in_smoke_mode(tmp_path):
    report = smoke_report("replication.py", tmp_path / "benchmarks-replication.md")
    rows = [
        line.strip("|").split("|")
        for line in report.splitlines()
        if line.startswith(("| asynchronous", "| synchronous"))
    ]
    # Both modes of the same run, each handing out every number once with
    # nothing but 200s.
    assert [cells[0].strip() for cells in rows] == [
        "asynchronous standby",
        "synchronous standby",
    ]
    for cells in rows:
        duplicates, unanswered, errors = (cell.strip() for cell in cells[5:8])
        assert (duplicates, errors) == ("0", "0"), cells
        assert 0 <= int(unanswered) <= 100, cells


def test_naive_benchmark_runs_end_to_end_with_few_requests():
    # The README's table of the naive alternatives (bench/naive.py), on 200
    # requests a cell: every cell is filled, and the project's own counters
    # stay exact in every one of them.
    for program in ("redis-server", "pg_ctl"):
        if shutil.which(program) is None:
            unavailable(f"{program} is not installed")
    result = subprocess.run(
        [sys.executable, "bench/naive.py"],
        cwd=ROOT,
        env={**os.environ, "NAIVE_REQUESTS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {
        cells[0].strip(): [cell.strip() for cell in cells[1:]]
        for line in result.stdout.splitlines()
        if line.startswith("| ") and not line.startswith(("| alternative", "| ---"))
        for cells in [line.strip("|").split("|")]
    }
    assert len(rows) == 8, result.stdout
    cell = re.compile(r"(\d+) / (\d+) / (\d+) · (\d+)( \((\d+) failed\))?")
    in_redis = {
        "cache.get + cache.set",
        "cache.incr (Redis INCR)",
        "session key, read-modify-write",
        "database: per-user counter",
    }
    for label, cells in rows.items():
        # The Redis restart column is only for what Redis keeps.
        *measured, restart = cells
        assert all(cell.fullmatch(c) for c in measured) and len(measured) == 5
        if label in in_redis:
            assert cell.fullmatch(restart), (label, restart)
        else:
            assert restart == "—", (label, restart)
    for label in ("database: global counter", "database: per-user counter"):
        assert all(c.startswith("0 / 0 / 0 · ") for c in rows[label] if c != "—")
        assert not any("failed" in c for c in rows[label]), rows[label]
    # Two masters hold two module-level objects, each counting from 1.
    duplicates = int(cell.fullmatch(rows["module-level object"][4])[1])
    assert duplicates > 0, rows["module-level object"]


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
