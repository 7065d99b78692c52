"""
The settings a project may give the app, each with the app's default.

With none of them set the app works on the project's own database and
cache: no rate limit, no proxy trusted, nothing counted for metrics.
"""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # The numbers one anonymous client may take, and the changes of its own
    # counter it may make, in limits' notation ("60/minute"); None: no limit.
    "COUNTERS_TAKE_RATE": None,
    "COUNTERS_VISITOR_RATE": None,
    # How many proxies in front append the address they saw to
    # X-Forwarded-For: the client's address is the one before theirs.
    "COUNTERS_TRUSTED_PROXIES": 0,
    # Count takes, refusals and batches for Prometheus (counters.metrics).
    "COUNTERS_METRICS": False,
}


def setting(name: str) -> Any:
    """Return the project's value of the app setting ``name``, or its default."""
    return getattr(settings, name, DEFAULTS[name])
