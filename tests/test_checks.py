"""The app's system checks (counters/checks.py)."""

from django.conf import settings
from django.core import checks

from counters.checks import (
    ATOMIC_REQUESTS_ID,
    LOCAL_CACHE_ID,
    SESSION_ENGINE_ID,
    SQLITE_DEFERRED_ID,
)


def warnings_of(monkeypatch, atomic: bool) -> list[str]:
    # Changed in place and put back after the test: replacing DATABASES
    # would make Django warn that connections may not follow.
    monkeypatch.setitem(settings.DATABASES["default"], "ATOMIC_REQUESTS", atomic)
    return [message.id for message in checks.run_checks(tags=["counters"])]


def test_atomic_requests_are_warned_about_since_they_stop_the_batching(monkeypatch):
    assert warnings_of(monkeypatch, atomic=True) == [ATOMIC_REQUESTS_ID]


def test_without_atomic_requests_there_is_no_warning(monkeypatch):
    assert warnings_of(monkeypatch, atomic=False) == []


def messages_of() -> list[checks.CheckMessage]:
    return checks.run_checks(tags=["counters"])


def test_the_visitor_counter_without_the_app_session_engine_is_an_error(settings):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    [error] = messages_of()
    assert (error.id, error.level) == (SESSION_ENGINE_ID, checks.ERROR)
    assert error.msg == (
        "The URLconf routes the visitor's own counter, whose changes need the "
        "app's session engine: SESSION_ENGINE is "
        "'django.contrib.sessions.backends.db'."
    )


def test_routing_only_the_pieces_without_sessions_needs_no_engine(settings):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    settings.ROOT_URLCONF = "tests.host_urls"
    assert messages_of() == []


def test_sessions_cached_per_process_are_warned_about(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }
    [warning] = messages_of()
    assert (warning.id, warning.level) == (LOCAL_CACHE_ID, checks.WARNING)
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}
    }
    assert messages_of() == []


def test_sqlite_without_immediate_transactions_is_warned_about(monkeypatch):
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": "x.sqlite3"}
    monkeypatch.setitem(settings.DATABASES, "other", sqlite)
    [warning] = messages_of()
    assert (warning.id, warning.level) == (SQLITE_DEFERRED_ID, checks.WARNING)
    assert warning.msg.startswith("DATABASES['other'] is SQLite without")
    monkeypatch.setitem(
        settings.DATABASES,
        "other",
        {**sqlite, "OPTIONS": {"transaction_mode": "IMMEDIATE"}},
    )
    assert messages_of() == []
