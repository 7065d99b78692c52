"""
Rate limits for anonymous clients: how many numbers one client may take, and
how often it may change its own counter (#23).

The limits library counts each client's requests in a moving window: N a
minute means no more than N in any 60 seconds. With REDIS_URL set, the
count lives in that Redis, shared by every worker and every host, on the
cache's own connections (and so its short timeouts); without it, each worker
process counts on its own. A Redis that does not answer lets requests
through: a limit is a guard against abuse, and a take is worth more than the
guard. Signed-in users (staff) are never limited, and the admin and
``manage.py`` do not pass through here at all.
"""

import functools
import ipaddress
import logging
import math
import time

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.signals import setting_changed
from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from . import metrics
from .conf import setting

logger = logging.getLogger(__name__)

TAKE = "take"
VISITOR = "visitor"
RATE_SETTINGS = {TAKE: "COUNTERS_TAKE_RATE", VISITOR: "COUNTERS_VISITOR_RATE"}
REFUSALS = {
    TAKE: "Too many numbers were taken from your address",
    VISITOR: "Too many changes of your counter came from your address",
}
KEY_PREFIX = "counters:ratelimit"

# What /healthz reports of the limits' store.
OK, LOCAL, OFF, UNAVAILABLE = "ok", "local", "off", "unavailable"


def client_address(request) -> str:
    """
    Return the client's address: the connecting one, or the one the outermost
    of ``COUNTERS_TRUSTED_PROXIES`` proxies saw.

    Each trusted proxy appends the address it saw to ``X-Forwarded-For``, so
    only the last that many entries are theirs; what stands before them is
    the client's to write, and is ignored.
    """
    address = request.META.get("REMOTE_ADDR", "")
    proxies = setting("COUNTERS_TRUSTED_PROXIES")
    forwarded = [
        entry.strip()
        for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if entry.strip()
    ]
    if proxies and forwarded:
        # Fewer entries than proxies: the request entered behind the
        # outermost, and the first entry is still a trusted proxy's.
        address = forwarded[-min(proxies, len(forwarded))]
    return address or "unknown"


def client_key(request) -> str:
    """Return what a client's requests are counted under: its address."""
    address = client_address(request)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if ip.version == 6:
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        # One IPv6 host is handed a whole /64: count the network, or a
        # client would get a fresh limit from each of its addresses.
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@functools.cache
def _limiter() -> tuple[MovingWindowRateLimiter, str]:
    """Return this process's limiter and what kind of store it counts in."""
    cache = settings.CACHES["default"]
    if cache["BACKEND"] == "django_redis.cache.RedisCache":
        from django_redis import get_redis_connection

        storage = RedisStorage(
            "redis://",
            connection_pool=get_redis_connection("default").connection_pool,
            key_prefix=KEY_PREFIX,
            wrap_exceptions=True,
        )
        return MovingWindowRateLimiter(storage), OK
    return MovingWindowRateLimiter(MemoryStorage()), LOCAL


@functools.cache
def _rate(rate: str) -> RateLimitItem:
    return parse(rate)


def _forget_limiter(*, setting: str, **kwargs) -> None:
    # Tests change the cache and the rates between requests, and each starts
    # with no request counted; a process in production changes neither.
    if setting == "CACHES" or setting in RATE_SETTINGS.values():
        _limiter.cache_clear()


setting_changed.connect(_forget_limiter)


def is_limited(scope: str) -> bool:
    """Return whether requests of ``scope`` are limited at all."""
    return setting(RATE_SETTINGS[scope]) is not None


def rate_limit_wait(request, scope: str) -> int | None:
    """
    Count the request against its client's limit for ``scope``; return the
    seconds to wait when it is over the limit, else None.
    """
    rate = setting(RATE_SETTINGS[scope])
    user = getattr(request, "user", None)
    if rate is None or (user is not None and user.is_authenticated):
        return None
    item = _rate(rate)
    limiter, _ = _limiter()
    key = client_key(request)
    try:
        if limiter.hit(item, scope, key):
            return None
        reset, _ = limiter.get_window_stats(item, scope, key)
    except StorageError as exc:
        logger.warning(
            "Rate limits are not applied: their store failed (%s)", exc.storage_error
        )
        return None
    return max(1, math.ceil(reset - time.time()))


def rate_limit_status() -> str:
    """Return "ok", "local" (each process counts), "off" or "unavailable"."""
    if not any(is_limited(scope) for scope in RATE_SETTINGS):
        return OFF
    limiter, kind = _limiter()
    if kind == LOCAL:
        return LOCAL
    return OK if limiter.storage.check() else UNAVAILABLE


def refusal(scope: str, wait: int) -> str:
    """Return the sentence a client over its limit reads."""
    return f"{REFUSALS[scope]}; try again in {wait} s."


def counted_refusal(scope: str) -> None:
    if metrics.collecting():
        metrics.RATE_LIMITED.labels(scope).inc()


def rate_limited(scope: str, refuse):
    """
    Answer with ``refuse(request, scope, wait)``, before the view runs, a
    request whose client is over its limit for ``scope``.
    """

    def decorator(view):
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def wrapper(request, *args, **kwargs):
                if is_limited(scope):
                    # The session and the store are read synchronously.
                    wait = await sync_to_async(rate_limit_wait)(request, scope)
                    if wait is not None:
                        counted_refusal(scope)
                        return refuse(request, scope, wait)
                return await view(request, *args, **kwargs)

        else:

            @functools.wraps(view)
            def wrapper(request, *args, **kwargs):
                wait = rate_limit_wait(request, scope)
                if wait is not None:
                    counted_refusal(scope)
                    return refuse(request, scope, wait)
                return view(request, *args, **kwargs)

        return wrapper

    return decorator
