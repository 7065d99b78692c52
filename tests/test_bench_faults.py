"""
The network fault figures in docs/deployment.md come from runs of
bench/faults.py (the fault tests themselves, tests/test_partitions.py and
tests/test_failover_partitions.py, make the faults): what it collects, how
bench/render_faults.py shows it, and that the page shows the runs kept.
"""

import json
import shutil

import pytest

from bench import faults, render_faults
from bench.data import run_paths
from bench.rendering import DATA, DOCS

PAGE = """# Deploying

Written by hand.

<!-- begin generated: faults (bench/render_faults.py) -->
<!-- end generated: faults -->

Written by hand too.
"""


def reported(folder, offset: int) -> None:
    """Write what each fault test would report, every figure distinct."""
    folder.mkdir()
    for index, name in enumerate(faults.SCENARIOS):
        base = 1000 * (index + 1) + offset
        figures = {
            "answered": base + 1,
            "answered_during": base + 2,
            "refused_503_during": base + 3,
            "longest_request_during_s": index + offset / 100,
            "duplicates": base + 4,
            "gaps": base + 5,
            "realtime_violations": base + 6,
        }
        (folder / f"{name}.json").write_text(json.dumps(figures))
    link = {
        "clean": {"takes_per_s": 800.5 + offset, "takes_per_batch": 5.5},
        "slow, lossy": {"takes_per_s": 65.1 + offset, "takes_per_batch": 6.1},
    }
    (folder / f"{faults.SLOW_LINK}.json").write_text(json.dumps(link))


def run_of(folder) -> dict:
    return {
        "when": "2026-12-06 03:00 UTC",
        "machine": {
            "cores": 2,
            "postgresql": "postgres (PostgreSQL) 15.14",
            "django": "6.1.3",
            "gunicorn": "27.0.1",
        },
        "tests": faults.TESTS,
        "scenarios": faults.collect(folder),
    }


def test_collect_keeps_every_scenario_and_names_the_missing(tmp_path):
    reported(tmp_path / "run", 0)
    scenarios = faults.collect(tmp_path / "run")
    assert list(scenarios) == [*faults.SCENARIOS, faults.SLOW_LINK]
    assert scenarios["partition-primary-gevent"]["answered"] == 1001

    (tmp_path / "run" / "failover-reachable-gthread.json").unlink()
    (tmp_path / "run" / f"{faults.SLOW_LINK}.json").unlink()
    with pytest.raises(ValueError) as refused:
        faults.collect(tmp_path / "run")
    assert str(refused.value) == (
        "No figures from: failover-reachable-gthread, slow-lossy-link."
    )


def test_the_page_shows_each_figure_and_the_range_over_runs(tmp_path):
    reported(tmp_path / "newest", 0)
    reported(tmp_path / "older", 7)
    paths = []
    for name in ("newest", "older"):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(run_of(tmp_path / name)))
        paths.append(path)
    page = tmp_path / "deployment.md"
    page.write_text(PAGE)

    block = render_faults.render(paths, page)

    text = page.read_text()
    assert text.startswith("# Deploying\n\nWritten by hand.\n")
    assert text.endswith("<!-- end generated: faults -->\n\nWritten by hand too.\n")
    assert block in text and "The figures of 2 run(s) of" in block
    first = faults.SCENARIOS["partition-primary-gevent"]
    # Each cell: the two runs' figures, 7 apart, as a range.
    assert (
        f"| {first} | 1,001–1,008 | 1,002–1,009 | 1,003–1,010 | 0.00–0.07 "
        "| 1,004–1,011 | 1,005–1,012 | 1,006–1,013 |"
    ) in block
    fenced = list(faults.SCENARIOS).index(render_faults.FENCED) + 1
    assert f"answered {fenced},002–{fenced},009 takes that never" in block
    assert f"again: {fenced},004–{fenced},011 numbers were answered twice" in block
    assert "65.1–72.1 takes/s against 800.5–807.5 on the clean link" in block
    assert "6.1 takes per batch against 5.5" in block  # the runs agree

    # One run: one figure a cell, no range.
    render_faults.render(paths[:1], page)
    assert f"| {first} | 1,001 | 1,002 | 1,003 | 0.00 | 1,004 |" in page.read_text()


def test_the_deployment_page_shows_the_runs_kept(tmp_path):
    # Rendering the committed runs again changes nothing: the page is the
    # runs' (bench/faults.py was run, and bench/render_faults.py after it).
    paths = run_paths(DATA / "faults.json")
    assert len(paths) >= 2, "docs/data/ keeps fewer than two runs of bench/faults.py"
    for run in map(json.loads, (path.read_text() for path in paths)):
        assert list(run["scenarios"]) == [*faults.SCENARIOS, faults.SLOW_LINK]
    page = tmp_path / "deployment.md"
    shutil.copy(DOCS / "deployment.md", page)
    render_faults.render(paths, page)
    assert page.read_text() == (DOCS / "deployment.md").read_text()
