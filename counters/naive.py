"""
The naive global counter, served only as a demonstration (#5).

This is the pattern people write first: a module-level object bumped on each
request. Every gunicorn worker process has its own copy, and threads of one
worker interleave ``self.param += 1`` (a read, an add and a write), so once
there is more than one worker or thread, clients get the same number twice
and numbers are skipped. ``manage.py loadtest`` shows it; the README has the
figures. Served at ``POST /api/naive/increment/`` with
``COUNTERS_NAIVE_DEMO=1``; a 404 otherwise.
"""

from django.conf import settings
from django.http import JsonResponse

from .api import api_endpoint, csrf_exempt, json_error


class NaiveCounter:
    def __init__(self) -> None:
        self.param = 0

    def increment(self) -> int:
        self.param += 1
        return self.param


counter = NaiveCounter()


@csrf_exempt
@api_endpoint("POST")
def increment(request):
    if not settings.COUNTERS_NAIVE_DEMO:
        return json_error(f"There is nothing at {request.path}.", 404)
    return JsonResponse({"value": counter.increment()})
