"""
Prometheus metrics of the serving side, and ``/metrics`` itself (#25).

Under gunicorn each worker process keeps its figures in files of
prometheus-client's multiprocess mode, in ``PROMETHEUS_MULTIPROC_DIR``
(gunicorn.conf.py makes one for each master and cleans it at start), and
``/metrics`` adds up those of every worker, those that have exited
included, so that a worker replaced loses nothing. Elsewhere (a test, a
development server) the figures are this process's own.

``/metrics`` answers only the addresses in ``METRICS_ALLOW`` and requests
that carry ``METRICS_TOKEN`` as a bearer token, and 404 to everyone else,
as if it were not there; with neither set it is off, and nothing is counted.
"""

import hmac
import ipaddress
import os

from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from counters.metrics import collecting

__all__ = ["collecting", "metrics_view"]

POOL_IN_USE = Gauge(
    "counters_db_pool_connections_in_use",
    "Connections of the database pools handed out to requests.",
    multiprocess_mode="livesum",
)
POOL_IDLE = Gauge(
    "counters_db_pool_connections_idle",
    "Connections of the database pools open and waiting for a request.",
    multiprocess_mode="livesum",
)
POOL_WAITS = Histogram(
    "counters_db_pool_wait_seconds",
    "Waits for a connection when every one of a pool was in use, and how long.",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
POOL_TIMEOUTS = Counter(
    "counters_db_pool_timeouts",
    "Requests that found no connection free within DATABASE_POOL_TIMEOUT.",
)
RESPONSES = Counter(
    "counters_http_responses",
    "Answers, by view (its URL name) and status code.",
    ["view", "status"],
)
DURATION = Histogram(
    "counters_http_request_duration_seconds",
    "Time from the request reaching Django to its answer, by view and status class.",
    ["view", "status_class"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def registry() -> CollectorRegistry:
    """Return the figures to expose: every worker's, or this process's."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    every_worker = CollectorRegistry()
    multiprocess.MultiProcessCollector(every_worker)
    return every_worker


def allowed(request) -> bool:
    """Return whether ``request`` may read the metrics."""
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_ALLOW)


@require_GET
def metrics_view(request):
    """Prometheus' text format, to the addresses and token configured."""
    if not allowed(request):
        raise Http404("No such page.")
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
