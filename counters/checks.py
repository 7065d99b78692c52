"""The app's system checks: settings that would quietly weaken the take."""

from django.conf import settings
from django.core import checks

ATOMIC_REQUESTS_ID = "counters.W001"


@checks.register("counters")
def check_atomic_requests(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Warn when a database wraps each request in one transaction."""
    return [
        checks.Warning(
            f"DATABASES[{alias!r}] has ATOMIC_REQUESTS on: each take then runs "
            "in its request's transaction, is not batched with other "
            "requests' takes, and holds the counter's row until the request "
            "ends.",
            hint="Turn ATOMIC_REQUESTS off, or wrap only the views that need "
            "it in transaction.atomic().",
            id=ATOMIC_REQUESTS_ID,
        )
        for alias, database in settings.DATABASES.items()
        if database.get("ATOMIC_REQUESTS")
    ]


SESSION_ENGINE_ID = "counters.E001"
LOCAL_CACHE_ID = "counters.W002"
ENGINE = "counters.sessions"


def _routed(patterns) -> set:
    """Return the views the URL patterns route, included ones too."""
    views = set()
    for pattern in patterns:
        if hasattr(pattern, "url_patterns"):
            views |= _routed(pattern.url_patterns)
        else:
            views.add(pattern.callback)
    return views


@checks.register("counters", checks.Tags.urls)
def check_visitor_counter_sessions(app_configs=None, **kwargs):
    """Refuse the visitor's own counter without the app's session engine."""
    from django.urls import get_resolver

    from .urls import visitor_api, visitor_pages

    visitor_views = {pattern.callback for pattern in visitor_pages + visitor_api}
    if settings.SESSION_ENGINE == ENGINE or not (
        visitor_views & _routed(get_resolver().url_patterns)
    ):
        return []
    return [
        checks.Error(
            "The URLconf routes the visitor's own counter, whose changes need "
            f"the app's session engine: SESSION_ENGINE is "
            f"{settings.SESSION_ENGINE!r}.",
            hint=f'Set SESSION_ENGINE = "{ENGINE}", or route only the pieces '
            "of counters.urls that need no session (pages, api).",
            id=SESSION_ENGINE_ID,
        )
    ]


@checks.register("counters")
def check_shared_cache(app_configs=None, **kwargs):
    """Warn when the app's sessions are cached in each process of its own."""
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if settings.SESSION_ENGINE != ENGINE or not backend.endswith(".LocMemCache"):
        return []
    return [
        checks.Warning(
            "Sessions are cached in a per-process cache (LocMemCache): with "
            "several worker processes, each keeps its own copy of a visitor's "
            "session, and one may show a value another has changed since.",
            hint="Cache in Redis (django-redis), shared by every process, or "
            "use DummyCache to read every session from the database.",
            id=LOCAL_CACHE_ID,
        )
    ]


SQLITE_DEFERRED_ID = "counters.W003"


@checks.register("counters")
def check_sqlite_transaction_mode(app_configs=None, **kwargs):
    """Warn when SQLite begins transactions without taking its write lock."""
    return [
        checks.Warning(
            f"DATABASES[{alias!r}] is SQLite without transaction_mode "
            "IMMEDIATE: select_for_update() does nothing there, and concurrent "
            "takes then fail with 'database is locked' instead of waiting.",
            hint='Set DATABASES[...]["OPTIONS"]["transaction_mode"] = '
            '"IMMEDIATE" (and a "timeout" to wait); see docs/reuse.md.',
            id=SQLITE_DEFERRED_ID,
        )
        for alias, database in settings.DATABASES.items()
        if database.get("ENGINE") == "django.db.backends.sqlite3"
        and database.get("OPTIONS", {}).get("transaction_mode") != "IMMEDIATE"
    ]
