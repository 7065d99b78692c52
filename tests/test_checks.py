"""The app's system checks (counters/checks.py)."""

from django.conf import settings
from django.core import checks

from counters.checks import ATOMIC_REQUESTS_ID


def warnings_of(monkeypatch, atomic: bool) -> list[str]:
    # Changed in place and put back after the test: replacing DATABASES
    # would make Django warn that connections may not follow.
    monkeypatch.setitem(settings.DATABASES["default"], "ATOMIC_REQUESTS", atomic)
    return [message.id for message in checks.run_checks(tags=["counters"])]


def test_atomic_requests_are_warned_about_since_they_stop_the_batching(monkeypatch):
    assert warnings_of(monkeypatch, atomic=True) == [ATOMIC_REQUESTS_ID]


def test_without_atomic_requests_there_is_no_warning(monkeypatch):
    assert warnings_of(monkeypatch, atomic=False) == []
