"""
What the counters do, as Prometheus metrics (#25; docs/operations.md).

prometheus-client keeps them in this process, or, under gunicorn, in files
that every worker writes and ``/metrics`` adds up
(``counterproject.metrics``). Labels name only what staff create (a
counter's name, once a number was taken from it) or a fixed few values: a
client cannot add series by asking for counters that do not exist. Nothing
is counted unless /metrics is served (``collecting()``).
"""

from prometheus_client import Counter, Histogram

from .conf import setting
from .exceptions import CounterError, CounterNotFound, CounterNotPublic, InvalidStep

TAKES = Counter(
    "counters_takes",
    "Numbers handed out, by counter and by interface (web: the page; api).",
    ["counter", "interface"],
)
TAKE_REFUSALS = Counter(
    "counters_take_refusals",
    "Takes refused, by interface and reason.",
    ["interface", "reason"],
)
BATCH_TAKES = Histogram(
    "counters_take_batch_size",
    "Takes per transaction on a counter's row (its _count: the batches).",
    ["counter"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
ROW_HELD = Histogram(
    "counters_take_row_held_seconds",
    "How long a batch held its counter's row: from the lock to the commit.",
    ["counter"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
RATE_LIMITED = Counter(
    "counters_rate_limited",
    "Requests refused for their client's rate, by scope (take, visitor).",
    ["scope"],
)
VISITOR_CHANGES = Counter(
    "counters_visitor_changes",
    "Changes of visitors' own counters, by action.",
    ["action"],
)
SESSION_LOADS = Counter(
    "counters_session_loads",
    "Sessions read, by where from: the cache, or the database (a miss, or the "
    "cache unavailable).",
    ["source"],
)


def collecting() -> bool:
    """Whether to count: only when the project asks (COUNTERS_METRICS)."""
    return bool(setting("COUNTERS_METRICS"))


# A refusal's reason, by the nearest class of the error.
REASONS = {
    InvalidStep: "invalid_step",
    CounterNotFound: "not_found",
    CounterNotPublic: "not_public",
}


def count_refusal(interface: str, error: Exception) -> None:
    """Count a take that ``error`` refused."""
    TAKE_REFUSALS.labels(interface, refusal_reason(error)).inc()


def refusal_reason(error: Exception) -> str:
    """Return the metric's reason for ``error``, which refused a take."""
    if isinstance(error, CounterError):
        for cls in type(error).__mro__:
            if cls in REASONS:
                return REASONS[cls]
        return "invalid"
    return "unavailable"  # the database failed
