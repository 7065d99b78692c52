"""
The alternatives people suggest to a global counter, served as demonstrations.

Each endpoint is written the way people write it, in a few lines, and shows
one way of keeping a count between requests: a module-level object (#5) or
dict, the cache read and written back, the cache's atomic ``incr``, a
``multiprocessing.Manager``, and a session key (#13). ``manage.py loadtest``
shows which of them hand out a number twice or skip one, and under which
gunicorn shape; the README has the figures and says when each is the right
tool. Installed and routed with ``COUNTERS_NAIVE_DEMO=1`` only; a 404
otherwise (and each view checks the setting again). Each is an
anonymous, CSRF-exempt POST with an empty body that answers
``{"value": N}``, the value the request produced.
"""

from functools import wraps

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.dummy import DummyCache
from django.http import JsonResponse

from counters.api import api_endpoint, csrf_exempt, json_error

from . import manager as naive_manager

CACHE_KEY = "counters:naive:cache"
INCR_KEY = "counters:naive:incr"
SESSION_KEY = "counters:naive"


def demo(view=None, *, shared_cache: bool = False):
    """Serve ``view`` as a POST endpoint only when COUNTERS_NAIVE_DEMO=1."""
    if view is None:
        return lambda view: demo(view, shared_cache=shared_cache)
    endpoint = api_endpoint("POST")(view)

    @csrf_exempt
    @wraps(view)
    def wrapper(request):
        if not settings.COUNTERS_NAIVE_DEMO:
            return json_error(f"There is nothing at {request.path}.", 404)
        if shared_cache and isinstance(caches["default"], DummyCache):
            return json_error(
                f"There is nothing at {request.path} without a shared cache; "
                "set REDIS_URL.",
                404,
            )
        return endpoint(request)

    return wrapper


class NaiveCounter:
    def __init__(self) -> None:
        self.param = 0

    def increment(self) -> int:
        self.param += 1
        return self.param


counter = NaiveCounter()
counts: dict[str, int] = {}


@demo
def increment(request):
    # Every worker process has its own copy of the object, and threads of one
    # worker can interleave the read, the add and the write of += 1.
    return JsonResponse({"value": counter.increment()})


@demo
def dict_increment(request):
    # The same as the object: a dict is as private to its process.
    counts["n"] = counts.get("n", 0) + 1
    return JsonResponse({"value": counts["n"]})


@demo(shared_cache=True)
def cache_increment(request):
    # Shared by every process and host, but two requests that read the same
    # value both write back that value + 1: one increment is lost.
    value = cache.get(CACHE_KEY, 0) + 1
    cache.set(CACHE_KEY, value, timeout=None)
    return JsonResponse({"value": value})


@demo(shared_cache=True)
def cache_incr_increment(request):
    # Redis INCR is atomic: no number is handed out twice while Redis keeps
    # the key. A Redis restarted without persistence starts over from 1.
    try:
        value = cache.incr(INCR_KEY)
    except ValueError:  # no key yet; add() creates it unless a rival just did
        cache.add(INCR_KEY, 0, timeout=None)
        value = cache.incr(INCR_KEY)
    return JsonResponse({"value": value})


@demo
def manager_increment(request):
    # One server process holds the value, and its lock makes the read and the
    # write one step for every worker of this gunicorn master, but only for
    # them: another master has its own Manager and counts from 1 again.
    value, lock = naive_manager.shared()
    with lock:
        value.value += 1
        number = value.value
    return JsonResponse({"value": number})


@demo
def session_increment(request):
    # Two requests of one visitor (one session cookie) both load n, and the
    # one that saves last writes back the n + 1 it computed: a lost update.
    request.session[SESSION_KEY] = request.session.get(SESSION_KEY, 0) + 1
    return JsonResponse({"value": request.session[SESSION_KEY]})
