"""
What the renderers share: loading runs, ranges over them, plots, and the
generated blocks of hand-written pages.

bench/render.py, bench/render_fairness.py, bench/render_metrics_cost.py and
bench/render_replication.py turn a benchmark's JSON runs into a page and its
plots. Nothing they write is typed by hand: every figure comes from the JSON.
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("svg")
# The SVG's element ids come from this salt rather than at random: the same
# data renders to the same file, and a re-render shows no diff.
matplotlib.rcParams["svg.hashsalt"] = "counterproject"
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DATA = DOCS / "data"

__all__ = [
    "DATA",
    "DOCS",
    "ROOT",
    "bars_with_whiskers",
    "fill",
    "load",
    "plt",
    "ranged",
    "save",
    "shown",
    "span",
]


def load(paths: list[Path]) -> list[dict]:
    """Return the runs in ``paths``, one JSON file each, in that order."""
    return [json.loads(Path(path).read_text()) for path in paths]


def shown(path: Path) -> str:
    """Return ``path`` as a page names it: from the project's root if inside it."""
    path = Path(path)
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def span(values, spec: str = "") -> str:
    """Return the range of ``values`` as ``low–high``, each formatted by ``spec``."""
    values = list(values)
    return f"{min(values):{spec}}–{max(values):{spec}}"


def ranged(values: list[float], spec: str) -> str:
    """Return one figure, or the range of several that differ once formatted."""
    if len({f"{value:{spec}}" for value in values}) == 1:
        return f"{values[0]:{spec}}"
    return span(values, spec)


def save(figure, path: Path) -> None:
    """Write ``figure`` to ``path`` as SVG, without a date: same data, same file."""
    figure.tight_layout()
    figure.savefig(path, metadata={"Date": None})
    plt.close(figure)


def begin_marker(name: str, script: str = "bench/render.py") -> str:
    return f"<!-- begin generated: {name} ({script}) -->"


def end_marker(name: str) -> str:
    return f"<!-- end generated: {name} -->"


def fill(path: Path, name: str, text: str, script: str = "bench/render.py") -> bool:
    """
    Replace what lies between the marker lines of block ``name`` in ``path``
    with ``text``; return whether it did.

    A page without both markers, in that order, is left as it is, with a
    note on stdout: someone writes the page, the markers say where the
    generated part goes.
    """
    path = Path(path)
    begin, end = begin_marker(name, script), end_marker(name)
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    stripped = [line.strip() for line in lines]
    if begin not in stripped or end not in stripped[stripped.index(begin) :]:
        print(f"Note: {shown(path)} has no {begin} … {end} block; left unchanged.")
        return False
    first = stripped.index(begin)
    last = stripped.index(end, first)
    block = ["\n", text.strip("\n") + "\n", "\n"]
    new = "".join([*lines[: first + 1], *block, *lines[last:]])
    if new != "".join(lines):
        path.write_text(new)
    return True


def bars_with_whiskers(
    axis, groups: list[str], series: list[str], rates, *, capsize: int = 2
) -> None:
    """
    Draw a bar for each series in each group: ``rates(group, name)`` returns
    the height (the newest run's median) and every round's rate, which the
    whiskers span.
    """
    width = 0.8 / len(series)
    for index, name in enumerate(series):
        heights, low, high = [], [], []
        for group in groups:
            height, every = rates(group, name)
            heights.append(height)
            low.append(height - min(every))
            high.append(max(every) - height)
        axis.bar(
            [n + index * width for n in range(len(groups))],
            heights,
            width,
            yerr=[low, high],
            capsize=capsize,
            label=name,
        )
    axis.set_xticks([n + width * (len(series) - 1) / 2 for n in range(len(groups))])
