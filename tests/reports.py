"""
Figures a test reports besides what it asserts: shown in pytest's output and
kept as JSON in test-artifacts/ (ignored by git), or in the folder
``COUNTERS_TEST_ARTIFACTS`` names: bench/faults.py collects the network
fault tests' figures from there into docs/data/faults.json.
"""

import json
import os
from pathlib import Path

from counterproject.testing.servers import ROOT


def report(name: str, numbers: dict, capsys) -> None:
    """Show the run's figures in pytest's output and keep them as ``name``.json."""
    with capsys.disabled():
        print(f"\n{name}: {json.dumps(numbers)}")
    artifacts = Path(
        os.environ.get("COUNTERS_TEST_ARTIFACTS") or ROOT / "test-artifacts"
    )
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / f"{name}.json").write_text(json.dumps(numbers, indent=2) + "\n")
