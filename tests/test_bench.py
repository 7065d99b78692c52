"""The benchmark in smoke mode, so that it cannot rot (no timing asserted)."""

import subprocess
import sys

from .servers import ROOT


def test_benchmark_runs_end_to_end_in_smoke_mode(tmp_path):
    output = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = output.read_text()
    for row in (
        "pgbench (a)",
        "pgbench (b)",
        "HTTP take (production settings)",
        "HTTP no-op view",
        "HTTP django-sequences",
        "per-user increment",
        "embedded SQLite default",
        "in-process take",
        "loadtest client ceiling",
    ):
        assert row in report
    # Every row that hands out numbers handed out each one once.
    measurements = report.split("| measurement |")[1].split("| ratio |")[0]
    counted = [
        line
        for line in measurements.splitlines()
        if line.startswith("| HTTP")
        and "no-op" not in line
        or line.startswith(("| in-process", "| loadtest client"))
    ]
    assert len(counted) == 6
    for line in counted:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[-2:] == ["0", "0"], line
