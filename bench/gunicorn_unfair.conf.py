"""
gunicorn.conf.py without the yield after each request: the configuration
before #23, the baseline of bench/fairness.py. Never serve with it.
"""

import runpy
from pathlib import Path

_project = runpy.run_path(str(Path(__file__).resolve().parents[1] / "gunicorn.conf.py"))
globals().update(
    (name, value) for name, value in _project.items() if not name.startswith("__")
)
del post_request  # noqa: F821 - defined by gunicorn.conf.py, above
