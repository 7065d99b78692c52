"""
Figures a test reports besides what it asserts: shown in pytest's output and
kept in test-artifacts/ (ignored by git), for the docs and the closing
notes to quote.
"""

import json

from counterproject.testing.servers import ROOT


def report(name: str, numbers: dict, capsys) -> None:
    """Show the run's figures in pytest's output and keep them in test-artifacts."""
    with capsys.disabled():
        print(f"\n{name}: {json.dumps(numbers)}")
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / f"{name}.json").write_text(json.dumps(numbers, indent=2) + "\n")
