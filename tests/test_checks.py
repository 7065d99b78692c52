"""The app's system checks (counters/checks.py)."""

from django.core import checks

from counters.checks import ATOMIC_REQUESTS_ID


def warnings_of(settings, atomic: bool) -> list[str]:
    default = {**settings.DATABASES["default"], "ATOMIC_REQUESTS": atomic}
    settings.DATABASES = {**settings.DATABASES, "default": default}
    return [message.id for message in checks.run_checks(tags=["counters"])]


def test_atomic_requests_are_warned_about_since_they_stop_the_batching(settings):
    assert warnings_of(settings, atomic=True) == [ATOMIC_REQUESTS_ID]


def test_without_atomic_requests_there_is_no_warning(settings):
    assert warnings_of(settings, atomic=False) == []
