"""
Render bench/faults.py's JSON into docs/deployment.md's block ``faults``.

    python bench/render_faults.py [docs/data/faults.json ...]

Each file is one run, newest first (by default every run kept in
docs/data/). A cell shows the figure of every run, as one number where they
agree and as the range where they differ. Nothing here is typed by hand:
every figure comes from the JSON.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.data import run_paths  # noqa: E402
from bench.faults import SCENARIOS, SLOW_LINK  # noqa: E402
from bench.rendering import DATA, DOCS, fill, load, ranged, shown  # noqa: E402

SCRIPT = "bench/render_faults.py"
PAGE = DOCS / "deployment.md"
COLUMNS = {
    "answered": "answered",
    "answered_during": "answered during the fault",
    "refused_503_during": "refused (503) during",
    "longest_request_during_s": "longest request during (s)",
    "duplicates": "answered twice",
    "gaps": "gaps",
    "realtime_violations": "real-time violations",
}
FENCED = "failover-reachable-asynchronous"


def figure(runs: list[dict], scenario: str, key: str, spec: str = ",") -> str:
    """Return ``key`` of ``scenario`` over ``runs``: one figure, or their range."""
    return ranged([run["scenarios"][scenario][key] for run in runs], spec)


def spec_of(key: str) -> str:
    return ".2f" if key.endswith("_s") else ","


def table(runs: list[dict]) -> list[str]:
    lines = [
        "| scenario | " + " | ".join(COLUMNS.values()) + " |",
        "| --- |" + " ---: |" * len(COLUMNS),
    ]
    for scenario, label in SCENARIOS.items():
        cells = [figure(runs, scenario, key, spec_of(key)) for key in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def block(runs: list[dict], paths: list[Path]) -> str:
    """Return the block's markdown: where the figures come from, the table, notes."""
    newest = runs[0]
    machine = newest["machine"]
    files = ", ".join(f"`{shown(path)}`" for path in paths)

    def link(phase: str, key: str) -> str:
        return ranged([run["scenarios"][SLOW_LINK][phase][key] for run in runs], ".1f")

    lines = [
        f"The figures of {len(runs)} run(s) of `sudo python bench/faults.py`, "
        f"which runs {' and '.join(f'`{test}`' for test in newest['tests'])} "
        f"and keeps what they report ({files}; the newest {newest['when']}: "
        f"{machine['cores']} cores, {machine['postgresql']}, Django "
        f"{machine['django']}, gunicorn {machine['gunicorn']}). Where runs "
        "differ, a cell gives the range.",
        "",
        *table(runs),
        "",
        "- 2b with an asynchronous standby: after the cut the old primary "
        f"answered {figure(runs, FENCED, 'answered_during')} takes that never "
        "reached the standby, with `/healthz` at 200 throughout (asserted). "
        "Once it was stopped, the new primary, counting on from what the "
        "standby had, handed those numbers out again: "
        f"{figure(runs, FENCED, 'duplicates')} numbers were answered twice in "
        "the rest of the run, and so it would have gone on until it passed the "
        "old primary's highest. With a synchronous standby the same cut costs "
        "503s for the length of the cut, and nothing else.",
        "- 3, the slow, lossy link (2 Mbit/s, 5 % loss each way, 40 clients): "
        f"{link('slow, lossy', 'takes_per_s')} takes/s against "
        f"{link('clean', 'takes_per_s')} on the clean link, "
        f"{link('slow, lossy', 'takes_per_batch')} takes per batch against "
        f"{link('clean', 'takes_per_batch')}; every number exact and more than one "
        "take a batch (asserted).",
    ]
    return "\n".join(lines)


def render(paths: list[Path], page: Path = PAGE) -> str:
    """Fill ``page``'s block ``faults`` from the runs in ``paths``; return the block."""
    text = block(load(paths), paths)
    fill(page, "faults", text, script=SCRIPT)
    return text


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or run_paths(DATA / "faults.json")
    if not paths:
        sys.exit("No runs: sudo python bench/faults.py writes docs/data/faults.json.")
    render(paths)
    print(f"Filled {shown(PAGE)}'s block faults from {len(paths)} run(s).")


if __name__ == "__main__":
    main()
