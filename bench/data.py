"""
A benchmark's runs as JSON files: one file a run, the newest without a suffix.

``docs/data/benchmarks.json`` is the newest run, ``benchmarks-2.json`` the
one before, ``benchmarks-3.json`` the one before that (as fairness.json and
fairness-2.json). Writing a run keeps the previous ones under those names;
older ones go.
"""

import json
from pathlib import Path

KEPT = 3  # runs of each benchmark kept, the newest included


def numbered(path: Path, number: int) -> Path:
    """Return the name of the ``number``-th newest run (1: ``path`` itself)."""
    return path if number == 1 else path.with_stem(f"{path.stem}-{number}")


def keep_previous(path: Path, kept: int = KEPT) -> None:
    """Move the runs at ``path`` one name down, dropping the oldest kept."""
    numbered(path, kept).unlink(missing_ok=True)
    for number in range(kept - 1, 0, -1):
        if numbered(path, number).exists():
            numbered(path, number).rename(numbered(path, number + 1))


def write_run(path: Path, data: dict) -> None:
    """Write one run's ``data`` to ``path``, keeping the previous runs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keep_previous(path)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def run_paths(path: Path) -> list[Path]:
    """Return the runs kept at ``path``, newest first."""
    paths = []
    for number in range(1, KEPT + 1):
        if numbered(path, number).exists():
            paths.append(numbered(path, number))
    return paths
