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
